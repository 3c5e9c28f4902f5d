//! Text a caller controls (a request path, a certificate subject, a
//! request's arguments), cut to a fixed length before it goes into a log or
//! the audit log, so that no caller decides how much the agent writes.

/// The longest caller text kept in a log line, in characters.
pub const LOG_TEXT: usize = 256;

/// What marks text that was cut.
const MARK: &str = "…(cut)";

/// `text`, or its first `max` characters and a marker when it is longer.
#[must_use]
pub fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}{MARK}", &text[..end]),
    }
}

/// `value` with every string in it cut as [`bounded`] cuts it (the field
/// names are the agent's own, and stay).
#[must_use]
pub fn bounded_value(value: serde_json::Value, max: usize) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(bounded(&text, max)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| bounded_value(v, max)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, v)| (name, bounded_value(v, max)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_a_marker_and_short_text_kept() {
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("abcd", 3), "abc…(cut)");
        assert_eq!(bounded("ééé", 2), "éé…(cut)");
        let long = "x".repeat(100_000);
        assert_eq!(
            bounded(&long, LOG_TEXT).chars().count(),
            LOG_TEXT + MARK.chars().count()
        );
        let value = serde_json::json!({"initial_cluster": long, "n": 3, "list": ["yy"]});
        let cut = bounded_value(value, 1);
        assert_eq!(cut["initial_cluster"], "x…(cut)");
        assert_eq!(cut["n"], 3);
        assert_eq!(cut["list"][0], "y…(cut)");
    }
}
