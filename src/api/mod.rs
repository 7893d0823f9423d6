//! The JSON shapes of the Durable Functions HTTP management API (`spec/http-api.md`), and the
//! wire-level parsing of its query strings. Pure functions over model types and store records:
//! nothing here knows about axum or a backend, so the rules can be unit-tested on their own.
//!
//! - [`status`]: the status object (`StatusResponsePayload`) with its exact key order.
//! - [`history`]: Durable Functions' post-processing of raw history (spec §6.1).
//! - [`payload`]: check-status and management payloads, purge result (spec §7, §11).
//! - [`urls`]: the nine management URLs of one instance.
//! - [`query`]: the extension's lenient query-string rules (spec §2.2).
//! - [`error`]: error bodies (`{"Message","ExceptionMessage"}`).

pub mod error;
pub mod history;
pub mod payload;
pub mod query;
pub mod status;
pub mod urls;

use serde_json::Value;

/// Stored JSON text back into JSON, as Durable Functions does it: text that is not valid JSON is
/// returned as a string, whitespace-only text as `""`, absent as `null`.
pub fn parse_stored_json(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(t) if t.trim().is_empty() => Value::String(String::new()),
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_text_becomes_json() {
        assert_eq!(parse_stored_json(None), Value::Null);
        assert_eq!(parse_stored_json(Some("  ")), json!(""));
        assert_eq!(parse_stored_json(Some("[1,2]")), json!([1, 2]));
        assert_eq!(parse_stored_json(Some("\"x\"")), json!("x"));
        assert_eq!(parse_stored_json(Some("not json")), json!("not json"));
    }
}
