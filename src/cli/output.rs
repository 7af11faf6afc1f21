//! Tables for people, JSON for scripts.

use std::io::Write;

use serde_json::Value;

/// Prints one line to stdout. A reader that went away (`weft status | head -1`) ends the command
/// quietly, as for any Unix tool, instead of a panic.
pub fn say(text: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        say(parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// A JSON value as a short cell: strings bare, null as '-', objects as `k=v,...`, lists of them
/// separated by `; `.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Object(m) if m.is_empty() => "-".into(),
        Value::Object(m) => m.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(","),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

/// `key  value` lines for one object; nested objects become dotted keys.
pub fn describe(v: &Value) {
    fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), cell(other))),
        }
    }
    let mut lines = Vec::new();
    flatten("", v, &mut lines);
    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in lines {
        say(format!("{k:<w$}  {v}").trim_end());
    }
}

pub fn rows(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| a.iter().map(|item| fields.iter().map(|f| cell(item.pointer(f).unwrap_or(&Value::Null))).collect()).collect())
        .unwrap_or_default()
}

/// A duration given in µs, for people: three significant figures in µs, ms or s; '-' for none.
pub fn duration_us(v: &Value) -> String {
    let Some(us) = v.as_f64() else { return "-".into() };
    let three = |x: f64, unit: &str| match x {
        x if x < 10.0 => format!("{x:.2} {unit}"),
        x if x < 100.0 => format!("{x:.1} {unit}"),
        x => format!("{x:.0} {unit}"),
    };
    match us {
        us if us < 1_000.0 => format!("{us:.0} µs"),
        us if us < 1_000_000.0 => three(us / 1_000.0, "ms"),
        us => three(us / 1_000_000.0, "s"),
    }
}

/// How a column of a figures table turns its JSON value into a cell.
#[derive(Clone, Copy)]
enum Shape {
    Plain,
    Duration,
}

const SERVICE_FIGURES: &[(&str, &str, Shape)] = &[
    ("SERVICE", "/name", Shape::Plain),
    ("REQUESTS", "/requests", Shape::Plain),
    ("2XX", "/responses/2xx", Shape::Plain),
    ("4XX", "/responses/4xx", Shape::Plain),
    ("5XX", "/responses/5xx", Shape::Plain),
    ("CONNS", "/active_connections", Shape::Plain),
    ("RETRIES", "/retries", Shape::Plain),
    ("EJECTIONS", "/ejections", Shape::Plain),
    ("CONNECT_FAILS", "/connect_failures", Shape::Plain),
    ("RELAYED", "/relayed_streams", Shape::Plain),
    ("P50", "/latency_p50_us", Shape::Duration),
    ("P99", "/latency_p99_us", Shape::Duration),
];

const ENDPOINT_FIGURES: &[(&str, &str, Shape)] = &[
    ("SERVICE", "/service", Shape::Plain),
    ("ENDPOINT", "/id", Shape::Plain),
    ("NODE", "/node", Shape::Plain),
    ("REQUESTS", "/requests", Shape::Plain),
    ("CONNECTIONS", "/connections", Shape::Plain),
    ("FAILURES", "/failures", Shape::Plain),
    ("EJECTIONS", "/ejections", Shape::Plain),
    ("EJECTED", "/ejected", Shape::Plain),
    ("IN_FLIGHT", "/in_flight", Shape::Plain),
    ("RELAYED", "/relayed_streams", Shape::Plain),
    ("P50", "/response_time_p50_us", Shape::Duration),
    ("P99", "/response_time_p99_us", Shape::Duration),
];

fn figures_table(list: &[Value], cols: &[(&str, &str, Shape)]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|item| {
            cols.iter()
                .map(|(_, ptr, shape)| {
                    let v = item.pointer(ptr).unwrap_or(&Value::Null);
                    match (shape, v) {
                        (Shape::Duration, v) => duration_us(v),
                        (Shape::Plain, Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
                        (Shape::Plain, Value::Null) if ptr.starts_with("/responses/") => "0".into(),
                        (Shape::Plain, Value::String(s)) if s.is_empty() => "-".into(),
                        (Shape::Plain, v) => cell(v),
                    }
                })
                .collect()
        })
        .collect();
    table(&cols.iter().map(|c| c.0).collect::<Vec<_>>(), &rows);
}

/// `weft stats` for people: one row per service, then one per endpoint (the figures this node
/// keeps for it: as a caller, and as the host that relays other nodes' streams to it). `stats` is
/// GET /v1/stats, an object keyed by `namespace/service`.
pub fn stats_tables(stats: &Value) {
    let mut services = Vec::new();
    let mut endpoints = Vec::new();
    for (name, s) in stats.as_object().into_iter().flatten() {
        let mut row = s.clone();
        row["name"] = Value::String(name.clone());
        services.push(row);
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let mut row = e.clone();
            row["service"] = Value::String(name.clone());
            endpoints.push(row);
        }
    }
    figures_table(&services, SERVICE_FIGURES);
    if !endpoints.is_empty() {
        say("");
        figures_table(&endpoints, ENDPOINT_FIGURES);
    }
}

/// `weft man`: the manual page, generated from the command line's own definition.
pub fn man() -> std::process::ExitCode {
    use clap::CommandFactory;
    let mut out = Vec::new();
    match clap_mangen::Man::new(super::Cli::command()).render(&mut out) {
        Ok(()) => {
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `weft completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> std::process::ExitCode {
    use clap::CommandFactory;
    // Into a buffer first: clap_complete panics when its writer fails (`| head` closes the pipe).
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "weft", &mut out);
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &out);
    std::process::ExitCode::SUCCESS
}
