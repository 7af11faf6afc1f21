//! `weft import`: configuration users already have, turned into weft TOML. One source today:
//! ECS Service Connect ([`ecs`]), CloudFormation templates among its inputs ([`cloudformation`]). The output is a config `weft validate` accepts; whatever has no
//! weft equivalent is reported as a warning naming the file and the JSON path, never dropped
//! silently.

pub mod cloudformation;
pub mod ecs;

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Not JSON: where it broke, as file:line:col.
    #[error("{}:{line}:{column}: not valid JSON: {message}", .path.display())]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    /// Not YAML: where it broke, as file:line:col.
    #[error("{}:{line}:{column}: not valid YAML: {message}", .path.display())]
    Yaml { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{}: {path_in_file}: {message}", .file.display())]
    Invalid { file: PathBuf, path_in_file: String, message: String },
    #[error("{}: not a shape `weft import ecs` knows (a service-connect configuration, a task definition, describe-services output or a CloudFormation template)", .0.display())]
    Unknown(PathBuf),
    #[error("nothing to import: no service-connect configuration in the files given")]
    Nothing,
}

/// Something of the input that weft does not carry over, or carries over differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    /// JSON path in the file, e.g. `$.services[0].tls`.
    pub at: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.at, self.message)
    }
}

/// Reads a file as JSON, or as YAML when it does not start like JSON (CloudFormation templates
/// are often YAML), with file:line:col on a syntax error.
pub fn read_document(path: &Path) -> Result<serde_json::Value, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read { path: path.to_path_buf(), source })?;
    let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) || !text.trim_start().starts_with(['{', '[']);
    if yaml {
        return cloudformation::parse_yaml(path, &text);
    }
    serde_json::from_str(&text).map_err(|e| ImportError::Json { path: path.to_path_buf(), line: e.line(), column: e.column(), message: e.to_string() })
}

/// A TOML string literal (basic string, escaped).
pub(crate) fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
