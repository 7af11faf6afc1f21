//! The TOML config loader: the operator's files as `weft run` and `weft validate` load them
//! (parse, merge, check across entries), from memory. Up to three files (split at NUL bytes,
//! which a TOML file cannot hold) exercise the merge. Loading must never panic, and every
//! problem it reports must point into a file it read, at a line that file has.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use weft::fuzzing::{ConfigError, load_config};

/// `[admin] token_file` is the one setting the loader reads a file for. A fuzzed path could
/// name anything on this machine (`/dev/zero` never ends), so such inputs are left out; the
/// setting's own check is covered by the unit tests.
fn names_a_file(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else { return false };
    table.get("admin").and_then(|a| a.as_table()).is_some_and(|a| a.contains_key("token_file"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let files: Vec<(PathBuf, String)> = text.split('\0').take(3).enumerate().map(|(i, t)| (PathBuf::from(format!("/etc/weft/{i}.toml")), t.to_string())).collect();
    if files.iter().any(|(_, t)| names_a_file(t)) {
        return;
    }
    match load_config(files.clone()) {
        Ok(config) => assert_eq!(config.files.len(), files.len()),
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            for p in &problems {
                let (_, text) = files.iter().find(|(path, _)| **path == *p.at.path).unwrap_or_else(|| panic!("{p} points into no file"));
                let lines = text.split('\n').count();
                assert!(p.at.line >= 1 && p.at.line <= lines, "{p}: the file has {lines} lines");
                assert!(p.at.col >= 1, "{p}");
                let _ = p.to_string();
            }
        }
        Err(e) => panic!("loading from memory failed with {e}"),
    }
});
