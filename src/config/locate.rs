//! Turning byte offsets and keys into `line:col`, so every message points into the file.

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// The key being assigned where a value error points: the identifier before the last `=` on that
/// line up to the offset (works for `port = "x"` and inline tables `{ dns_name = "a", port = "x" }`).
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let prefix = &text[line_start..offset];
    let eq = prefix.rfind('=')?;
    let key: String = prefix[..eq]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.' || *c == '"')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let key = key.trim_matches('"').to_string();
    (!key.is_empty()).then_some(key)
}

/// Offset of the first `needle` inside `text[span]`, for pointing at one value within an entry.
pub fn find_in(text: &str, span: std::ops::Range<usize>, needle: &str) -> Option<usize> {
    let end = span.end.min(text.len());
    let start = span.start.min(end);
    text.get(start..end)?.find(needle).map(|i| start + i)
}

/// Offset of `key = ...` inside the `[section]` table of a file, for section-level errors.
pub fn find_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_section = t.trim_end().trim_start_matches('[').trim_end_matches(']').trim() == section;
        } else if in_section && t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(offset + (line.len() - t.len()));
        }
        offset += line.len();
    }
    None
}

/// Offset of a `[section]` header in a file.
pub fn find_section(text: &str, section: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[[") && t.trim_start_matches('[').trim_end_matches(']').trim() == section {
            return Some(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_and_keys() {
        let t = "[dns]\nttl = \"x\"\n[[service]]\naliases = [{ dns_name = \"a\", port = \"p\" }]\n";
        assert_eq!(line_col(t, 0), (1, 1));
        let at = t.find("\"x\"").unwrap();
        assert_eq!(line_col(t, at), (2, 7));
        assert_eq!(key_at(t, at).as_deref(), Some("ttl"));
        let at = t.find("\"p\"").unwrap();
        assert_eq!(key_at(t, at).as_deref(), Some("port"));
        assert_eq!(find_key(t, "dns", "ttl"), Some(6));
        assert_eq!(find_key(t, "node", "ttl"), None);
    }
}
