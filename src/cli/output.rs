//! Tables for people, JSON for scripts.

use serde_json::Value;

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
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// A JSON value as a short cell: strings bare, null as '-', the rest compact.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Object(m) if m.is_empty() => "-".into(),
        Value::Object(m) => m.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `key: value` lines for one object.
pub fn describe(v: &Value) {
    match v {
        Value::Object(m) => {
            let w = m.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in m {
                println!("{k:<w$}  {}", cell(v));
            }
        }
        other => println!("{}", cell(other)),
    }
}

pub fn rows(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| a.iter().map(|item| fields.iter().map(|f| cell(item.pointer(f).unwrap_or(&Value::Null))).collect()).collect())
        .unwrap_or_default()
}
