//! `weft import ecs`: prints the TOML, or writes it and checks it like `weft validate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::output::say;
use crate::config::{self, EXIT_CONFIG};

pub fn ecs(files: &[PathBuf], out_dir: Option<&Path>) -> ExitCode {
    let imported = match crate::import::ecs::import(files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    let Some(dir) = out_dir else {
        print!("{}", imported.toml);
        return ExitCode::SUCCESS;
    };
    let path = dir.join("weft.toml");
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &imported.toml)) {
        eprintln!("error: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    match config::check(&path) {
        Ok(c) => {
            say(format!("wrote {} ({} services; {} warnings above)", path.display(), c.config.services.len(), imported.warnings.len()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
