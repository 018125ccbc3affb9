//! Reading JSON files with errors that say where: file, line and column.

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Read a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Parse `bytes` as `T`; a failure names `source`, the line and column, and says so plainly when
/// the culprit is a non-finite number (`NaN`, `Infinity`), which JSON cannot hold.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8], source: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| describe(e, bytes, source))
}

fn describe(e: serde_json::Error, bytes: &[u8], source: &str) -> anyhow::Error {
    let (line, column) = (e.line(), e.column());
    if line > 0 {
        if let Some(tok) = token_at(bytes, line, column) {
            let t = tok.trim_start_matches('-');
            if t.starts_with("NaN") || t.starts_with("Infinity") || t.starts_with("inf") {
                return anyhow!(
                    "{source}: line {line}, column {column}: non-finite number `{tok}`; JSON \
                     numbers must be finite"
                );
            }
        }
    }
    let kind = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
        serde_json::error::Category::Data => "unexpected content",
        serde_json::error::Category::Io => "read error",
    };
    anyhow!("{source}: {kind}: {e}")
}

/// The word around (1-based) `line`, `column`, where serde_json stopped.
fn token_at(bytes: &[u8], line: usize, column: usize) -> Option<String> {
    let start_of_line = if line == 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)?
    };
    // serde_json's column points at (or just past) the offending byte.
    let at = (start_of_line + column.saturating_sub(1)).min(bytes.len());
    let mut begin = at;
    while begin > start_of_line && is_word(bytes[begin - 1]) {
        begin -= 1;
    }
    let mut end = at;
    while end < bytes.len() && is_word(bytes[end]) {
        end += 1;
    }
    (end > begin).then(|| String::from_utf8_lossy(&bytes[begin..end]).into_owned())
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'+' || b == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_nan_are_named() {
        let e = parse::<Vec<f64>>(b"[1.0,\n 2.0,\n NaN]", "x.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.json: line 3, column 2: non-finite number `NaN`"),
            "{e}"
        );
        let e = parse::<Vec<f64>>(b"[1.0, -Infinity]", "x.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-finite number `-Infinity`"), "{e}");
        let e = parse::<Vec<f64>>(b"[1.0,\n 2.0 3]", "y.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("y.json: malformed JSON") && e.contains("line 2 column"),
            "{e}"
        );
        let e = parse::<Vec<f64>>(b"[1e999]", "z.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("z.json") && e.contains("line 1"), "{e}");
    }
}
