//! The management API's query strings, parsed by the extension's own rules (spec §2.2, §17):
//! names match case-insensitively, `+` is a space, values are trimmed, a repeated key reads as
//! its values joined by commas. Booleans and integers that do not parse count as absent (the
//! real API's leniency); timestamps, durations and statuses that do not parse are errors, because
//! silently dropping a filter could widen a purge.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use percent_encoding::percent_decode_str;

use crate::model::RuntimeStatus;

/// A query value that is present but unusable; the message names the parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryString {
    pairs: Vec<(String, String)>,
}

/// The longest wait or interval a query may ask for, in seconds: one day. Longer waits belong
/// to a client that polls, and this keeps every deadline far from the clock's limits.
pub const MAX_SECONDS: f64 = 86_400.0;

impl QueryString {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Self { pairs }
    }

    /// Every value of `name`, in order.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_string();
        self.pairs
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }

    /// The single-value lookup: repeated values joined by commas.
    pub fn get(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self.values(name).collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The first non-blank value (how `taskHub` and `connection` are read).
    pub fn first_non_blank(&self, name: &str) -> Option<&str> {
        self.values(name).find(|v| !v.is_empty())
    }

    /// `true`/`false` in any case; anything else is absent, so the default applies.
    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        match self.get(name) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => default,
        }
    }

    /// A plain integer; anything unparseable is absent.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name)?.parse().ok()
    }

    /// A non-negative number of seconds such as `0.5`. Blank is absent.
    pub fn seconds(&self, name: &str) -> Result<Option<Duration>, QueryError> {
        let Some(v) = self.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= MAX_SECONDS)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(Some)
            .ok_or_else(|| {
                QueryError(format!(
                    "The '{name}' parameter must be a number of seconds from 0 to {MAX_SECONDS}, such as 0.5; got '{v}'."
                ))
            })
    }

    /// A timestamp (see [`parse_time`]). Blank is absent.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, QueryError> {
        let Some(v) = self.get(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        parse_time(&v).map(Some).ok_or_else(|| {
            QueryError(format!(
                "The '{name}' parameter is not a valid timestamp: '{v}'. Use ISO 8601, such as 2024-01-31T12:00:00Z."
            ))
        })
    }

    /// A comma-separated list of runtime statuses, possibly over repeated keys. Names match
    /// case-insensitively; an unknown name is an error rather than silently dropped.
    pub fn statuses(&self, name: &str) -> Result<Vec<RuntimeStatus>, QueryError> {
        let mut out = Vec::new();
        for token in self.values(name).flat_map(|v| v.split(',')) {
            let token = token.trim();
            if token.is_empty() {
                continue;
            }
            let status = RuntimeStatus::from_name(token)
                .or_else(|| RuntimeStatus::from_name_ignore_case(token))
                .ok_or_else(|| {
                    let known: Vec<&str> = RuntimeStatus::ALL.iter().map(|s| s.as_str()).collect();
                    QueryError(format!(
                        "'{token}' is not a runtime status; expected one of {}.",
                        known.join(", ")
                    ))
                })?;
            if !out.contains(&status) {
                out.push(status);
            }
        }
        Ok(out)
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s)
        .decode_utf8_lossy()
        .trim()
        .to_string()
}

/// A lenient timestamp: RFC 3339 with 0–9 fraction digits, `T` or a space between date and
/// time, no offset meaning UTC, a bare date, and years of fewer than four digits. A `+` offset
/// that arrived unencoded (and so decoded to a space) is repaired.
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let mut s = raw.trim().to_string();
    // "2024-01-01T00:00:00 01:00" was "…+01:00" before form decoding.
    if s.len() > 19 {
        if let Some(pos) = s.rfind(' ') {
            if pos > 10 {
                s.replace_range(pos..=pos, "+");
            }
        }
    }
    // Years such as "1-01-01" → "0001-01-01".
    if let Some(dash) = s.find('-') {
        if (1..4).contains(&dash) && s[..dash].bytes().all(|b| b.is_ascii_digit()) {
            s = format!("{:0>4}{}", &s[..dash], &s[dash..]);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(&s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&s, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(&s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> QueryString {
        QueryString::parse(Some(s))
    }

    #[test]
    fn names_are_case_insensitive_values_decoded_and_trimmed() {
        let q = q("TaskHub=My+Hub&x=%20a%2Cb%20&flag");
        assert_eq!(q.get("taskhub").as_deref(), Some("My Hub"));
        assert_eq!(q.get("X").as_deref(), Some("a,b"));
        assert_eq!(q.get("flag").as_deref(), Some(""));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn repeated_keys_join_and_first_non_blank_wins() {
        let q = q("taskHub=&taskHub=A&taskHub=B&showHistory=true&showHistory=true");
        assert_eq!(q.get("taskHub").as_deref(), Some(",A,B"));
        assert_eq!(q.first_non_blank("taskHub"), Some("A"));
        // A repeated boolean does not parse, so the default applies.
        assert!(!q.bool_or("showHistory", false));
    }

    #[test]
    fn booleans_and_integers_fall_back_to_defaults() {
        let q = q("a=True&b=FALSE&c=yes&top=12&bad=1x");
        assert!(q.bool_or("a", false));
        assert!(!q.bool_or("b", true));
        assert!(q.bool_or("c", true));
        assert_eq!(q.int("top"), Some(12));
        assert_eq!(q.int("bad"), None);
    }

    #[test]
    fn seconds() {
        let q = q("t=0.5&n=-1&x=abc&e=");
        assert_eq!(q.seconds("t").unwrap(), Some(Duration::from_millis(500)));
        assert!(q.seconds("n").is_err());
        assert!(q.seconds("x").is_err());
        assert_eq!(q.seconds("e").unwrap(), None);
        assert_eq!(q.seconds("absent").unwrap(), None);
        assert!(QueryString::parse(Some("t=1e300")).seconds("t").is_err());
        // Past a day is refused before anything acts on it (a huge wait once overflowed the
        // clock and panicked after the instance had started).
        assert!(QueryString::parse(Some("t=86400")).seconds("t").is_ok());
        let huge = QueryString::parse(Some("timeout=9300000000000000000"))
            .seconds("timeout")
            .unwrap_err();
        assert!(huge.0.contains("'timeout'"), "{}", huge.0);
    }

    #[test]
    fn timestamps_are_lenient() {
        let want: DateTime<Utc> = "2024-01-31T12:00:00Z".parse().unwrap();
        for s in [
            "2024-01-31T12:00:00Z",
            "2024-01-31T12:00:00.0000000Z",
            "2024-01-31T12:00:00",
            "2024-01-31 12:00:00",
            "2024-01-31T13:00:00+01:00",
            "2024-01-31T13:00:00 01:00",
            "2024-01-31T12:00",
        ] {
            assert_eq!(parse_time(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_time("2024-01-31"),
            Some("2024-01-31T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            parse_time("1-01-01T00:00:00"),
            Some("0001-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(parse_time("yesterday"), None);
        assert!(q("createdTimeFrom=nope").time("createdTimeFrom").is_err());
        assert_eq!(q("createdTimeFrom=").time("createdTimeFrom").unwrap(), None);
    }

    #[test]
    fn statuses_split_on_commas_across_keys() {
        let q1 = q("runtimeStatus=Running,Completed&runtimeStatus=failed,&runtimeStatus=Running");
        assert_eq!(
            q1.statuses("runtimeStatus").unwrap(),
            vec![
                RuntimeStatus::Running,
                RuntimeStatus::Completed,
                RuntimeStatus::Failed
            ]
        );
        assert!(q("runtimeStatus=Bogus").statuses("runtimeStatus").is_err());
        assert!(q("").statuses("runtimeStatus").unwrap().is_empty());
    }
}
