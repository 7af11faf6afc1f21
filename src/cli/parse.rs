//! Parsing the command line. `--admin` and `-o` belong to the client commands: they are added to
//! each client command and to no local one (`run`, `validate`, `ca`), so a `weft run --admin X`
//! is refused instead of silently ignored and the flags stay out of `weft run --help`.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::{Cli, Format};

/// Commands that work locally instead of calling a node's admin API: `--admin` and `-o` are not
/// theirs (a `weft run --admin X` that silently ignored the flag misled users).
const LOCAL_COMMANDS: [&str; 3] = ["run", "validate", "ca"];

/// The client commands' own flags, added to each client command (global within it, so they may
/// follow any of its subcommands: `weft service list -o json`) and to no local command, so they
/// stay out of `weft run --help`. Before the command they are the top-level `Cli` fields.
fn with_client_flags(cmd: clap::Command) -> clap::Command {
    use clap::{Arg, value_parser};
    cmd.arg(
        Arg::new("admin")
            .long("admin")
            .global(true)
            .env("WEFT_ADMIN")
            .value_name("ADDR")
            .value_parser(value_parser!(SocketAddr))
            .help("Admin API address of the node to talk to (default: [admin] listen of the config, else 127.0.0.1:9901)"),
    )
    .arg(
        Arg::new("token_file")
            .long("token-file")
            .global(true)
            .env("WEFT_ADMIN_TOKEN_FILE")
            .value_name("FILE")
            .value_parser(value_parser!(std::path::PathBuf))
            .help("The admin API's bearer token, for a node reached beyond loopback (default: [admin] token_file of the config)"),
    )
    .arg(Arg::new("output").short('o').long("output").global(true).value_name("OUTPUT").value_parser(value_parser!(Format)).help("Output format [default: table]"))
}

/// The whole command line: `Cli` with the client flags added where they belong.
pub fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let clients: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).filter(|n| !LOCAL_COMMANDS.contains(&n.as_str())).collect();
    for name in clients {
        cmd = cmd.mut_subcommand(name, with_client_flags);
    }
    cmd
}

/// Parses the command line: client flags may come before or after the command (before a local
/// command they are refused).
pub(super) fn parse() -> Result<Cli, ExitCode> {
    use clap::FromArgMatches;
    use clap::parser::ValueSource;
    let matches = command().try_get_matches().map_err(clap_error)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| clap_error(e.format(&mut command())))?;
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let (name, mut leaf) = matches.subcommand().ok_or(ExitCode::from(2))?;
    if LOCAL_COMMANDS.contains(&name) {
        if given("admin") || given("output") || given("token_file") {
            eprintln!("error: --admin, --token-file and -o/--output are for the client commands (status, service, endpoint, ...), not `weft {name}`");
            eprintln!("{}", client_flags_note(name));
            return Err(ExitCode::from(2));
        }
        return Ok(cli);
    }
    while let Some((_, m)) = leaf.subcommand() {
        leaf = m;
    }
    // The last on the line wins; WEFT_ADMIN only when neither place gave --admin.
    let after = |id: &str| leaf.value_source(id) == Some(ValueSource::CommandLine);
    if after("admin") || !given("admin") {
        cli.admin = leaf.get_one::<SocketAddr>("admin").copied();
    }
    if after("token_file") || !given("token_file") {
        cli.token_file = leaf.get_one::<std::path::PathBuf>("token_file").cloned();
    }
    if after("output") {
        cli.output = leaf.get_one::<Format>("output").copied().unwrap_or(cli.output);
    }
    Ok(cli)
}

fn client_flags_note(command: &str) -> &'static str {
    match command {
        "run" => "note: a node's admin API listens where --listen-admin or [admin] listen say",
        _ => "note: the client commands find a node with --admin ADDR, WEFT_ADMIN or -c CONFIG",
    }
}

/// Prints a command-line error; a client flag given to a local command gets a note saying whose it is.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let _ = e.print();
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) if e.kind() == ErrorKind::UnknownArgument => a.clone(),
        _ => String::new(),
    };
    let client_flag = flag.starts_with("--admin") || flag.starts_with("--token-file") || flag.starts_with("--output") || (flag.starts_with("-o") && !flag.starts_with("--"));
    if client_flag {
        let command = std::env::args().skip(1).find(|a| LOCAL_COMMANDS.contains(&a.as_str())).unwrap_or_default();
        eprintln!("\n{flag} is an option of the client commands (status, service, endpoint, ...), not of `weft {command}`");
        eprintln!("{}", client_flags_note(&command));
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_flags_only_on_client_commands() {
        let cmd = super::command();
        cmd.clone().debug_assert();
        for sub in cmd.get_subcommands() {
            let has = sub.get_arguments().any(|a| a.get_id() == "admin");
            assert_eq!(has, !super::LOCAL_COMMANDS.contains(&sub.get_name()), "`{}`", sub.get_name());
        }
    }
}
