//! Flags shared by every `durable` command, and the parsers for values that need more than
//! `FromStr`: dates, runtime status lists, and JSON given inline or as `@file`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::{Args, ValueEnum};
use serde_json::Value;

use super::error::CliError;
use crate::model::{InstanceId, RuntimeStatus};

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: tables, lists and sentences.
    #[default]
    Text,
    /// For scripts: one JSON document on stdout.
    Json,
}

/// Where the task hub lives and how to print; every `durable` command takes these.
///
/// The two storage flags are `Option`s rather than clap defaults so that the configuration file
/// and `TASKHUB_…` variables can sit between the built-in default and the flag.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct HubArgs {
    /// (Optional) Name of the setting (environment variable) containing the storage connection
    /// string to use. Default: AzureWebJobsStorage; when that is unset, the embedded SQLite
    /// database ./taskhub-data/taskhub.db.
    #[arg(long, value_name = "SETTING")]
    pub connection_string_setting: Option<String>,

    /// (Optional) Name of the durable task hub to use. Default: DurableFunctionsHub, or
    /// `task_hub` in config/taskhub.toml.
    #[arg(long, value_name = "NAME")]
    pub task_hub_name: Option<String>,

    /// (Optional) Configuration file to read instead of config/taskhub.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// (Optional) Print results as text for people or as JSON for scripts.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// The creation-time and status filters of `get-instances` and `purge-history`.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct FilterArgs {
    /// (Optional) Only instances created at or after this date/time (UTC). ISO 8601, e.g.
    /// 2018-03-10T13:57:31Z, 2018-03-10T13:57 or 2018-03-10.
    #[arg(long, value_name = "DATETIME", value_parser = parse_utc)]
    pub created_after: Option<DateTime<Utc>>,

    /// (Optional) Only instances created at or before this date/time (UTC). ISO 8601.
    #[arg(long, value_name = "DATETIME", value_parser = parse_utc)]
    pub created_before: Option<DateTime<Utc>>,

    /// (Optional) Only instances whose status matches one of these ('running', 'completed',
    /// 'failed', 'terminated', 'pending', 'suspended', 'continuedasnew', 'canceled').
    /// Several statuses are separated by spaces; case does not matter.
    #[arg(long, value_name = "STATUS", num_args = 1.., value_parser = parse_status_list)]
    pub runtime_status: Vec<StatusList>,
}

impl FilterArgs {
    /// The statuses given, in order, without duplicates.
    pub fn statuses(&self) -> Vec<RuntimeStatus> {
        let mut out = Vec::new();
        for s in self.runtime_status.iter().flat_map(|l| l.0.iter().copied()) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

/// One `--runtime-status` value, which may itself hold several statuses: Core Tools takes
/// `--runtime-status "running completed"` as one argument, and shells also pass them apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusList(pub Vec<RuntimeStatus>);

pub fn parse_status_list(raw: &str) -> Result<StatusList, String> {
    let statuses = raw
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            RuntimeStatus::from_name_ignore_case(s).ok_or_else(|| {
                let known: Vec<&str> = RuntimeStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown runtime status '{s}' (expected one of: {})",
                    known.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if statuses.is_empty() {
        return Err("a runtime status is required".into());
    }
    Ok(StatusList(statuses))
}

/// Parses an ISO 8601 date/time as UTC. A value without an offset is taken as UTC (the flags
/// say "UTC"); one with an offset is converted. Seconds and the time of day may be left out,
/// as in the documentation's own example `2018-03-10T23:59Z`.
pub fn parse_utc(raw: &str) -> Result<DateTime<Utc>, String> {
    let s = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%d %H:%M%:z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    let naive = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        return Ok(d.and_time(Default::default()).and_utc());
    }
    Err(format!(
        "'{raw}' is not an ISO 8601 date/time (e.g. 2018-03-10T13:57:31Z)"
    ))
}

/// Parses an instance id given on the command line, with Durable Functions' rules.
pub fn parse_instance_id(raw: &str) -> Result<InstanceId, String> {
    InstanceId::parse(raw).map_err(|e| e.to_string())
}

/// Reads a JSON value given inline or, with a leading `@`, from a file (Core Tools' convention).
/// `flag` names the option in error messages.
pub fn read_json_arg(flag: &str, raw: &str) -> Result<Value, CliError> {
    match raw.strip_prefix('@') {
        Some(path) => read_json_file(flag, Path::new(path)),
        None => serde_json::from_str(raw).map_err(|e| {
            CliError::Usage(format!(
                "{flag} is not valid JSON ({e}); to pass text, quote it as a JSON string, e.g. '\"text\"', or pass @FILE"
            ))
        }),
    }
}

fn read_json_file(flag: &str, path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the {flag} file '{}': {e}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::Usage(format!(
            "the {flag} file '{}' does not contain valid JSON: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn dates_in_the_forms_the_documentation_uses() {
        assert_eq!(
            parse_utc("2018-03-10T13:57:31Z"),
            Ok(utc("2018-03-10T13:57:31Z"))
        );
        assert_eq!(
            parse_utc("2018-03-10T23:59Z"),
            Ok(utc("2018-03-10T23:59:00Z"))
        );
        assert_eq!(
            parse_utc("2018-11-14T19:35:00.0000000Z"),
            Ok(utc("2018-11-14T19:35:00Z"))
        );
        assert_eq!(parse_utc("2018-03-10"), Ok(utc("2018-03-10T00:00:00Z")));
    }

    #[test]
    fn dates_without_offset_are_utc_and_offsets_are_converted() {
        assert_eq!(
            parse_utc("2018-03-10T13:57:31"),
            Ok(utc("2018-03-10T13:57:31Z"))
        );
        assert_eq!(
            parse_utc("2018-03-10 13:57"),
            Ok(utc("2018-03-10T13:57:00Z"))
        );
        assert_eq!(
            parse_utc("2018-03-10T22:57:31+09:00"),
            Ok(utc("2018-03-10T13:57:31Z"))
        );
        assert_eq!(
            parse_utc("2018-03-10T22:57+09:00"),
            Ok(utc("2018-03-10T13:57:00Z"))
        );
    }

    #[test]
    fn bad_dates_are_rejected_with_the_value() {
        for bad in [
            "",
            "yesterday",
            "2018-13-01",
            "10/03/2018",
            "2018-03-10T25:00Z",
        ] {
            let err = parse_utc(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn status_lists_are_case_insensitive_and_split_on_spaces() {
        assert_eq!(
            parse_status_list("running Completed"),
            Ok(StatusList(vec![
                RuntimeStatus::Running,
                RuntimeStatus::Completed
            ]))
        );
        assert_eq!(
            parse_status_list("FAILED,terminated"),
            Ok(StatusList(vec![
                RuntimeStatus::Failed,
                RuntimeStatus::Terminated
            ]))
        );
        assert_eq!(
            parse_status_list("continuedasnew"),
            Ok(StatusList(vec![RuntimeStatus::ContinuedAsNew]))
        );
        let err = parse_status_list("running done").unwrap_err();
        assert!(err.contains("'done'") && err.contains("Running"), "{err}");
        assert!(parse_status_list("  ").is_err());
    }

    #[test]
    fn statuses_are_merged_without_duplicates() {
        let f = FilterArgs {
            runtime_status: vec![
                parse_status_list("running completed").unwrap(),
                parse_status_list("RUNNING failed").unwrap(),
            ],
            ..Default::default()
        };
        assert_eq!(
            f.statuses(),
            vec![
                RuntimeStatus::Running,
                RuntimeStatus::Completed,
                RuntimeStatus::Failed
            ]
        );
    }

    #[test]
    fn inline_json() {
        assert_eq!(read_json_arg("--input", "3").unwrap(), json!(3));
        assert_eq!(
            read_json_arg("--input", r#"{"a":[1,"x"]}"#).unwrap(),
            json!({"a":[1,"x"]})
        );
        assert_eq!(read_json_arg("--input", "\"text\"").unwrap(), json!("text"));
        assert_eq!(read_json_arg("--input", "null").unwrap(), Value::Null);
    }

    #[test]
    fn inline_text_that_is_not_json_is_an_error_that_says_how_to_quote() {
        let err = read_json_arg("--event-data", "hello").unwrap_err();
        assert!(matches!(err, CliError::Usage(_)));
        let msg = err.to_string();
        assert!(msg.starts_with("--event-data is not valid JSON"), "{msg}");
        assert!(msg.contains("quote"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn json_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("input.json");
        std::fs::write(&good, "{\"count\": 5}\n").unwrap();
        let arg = format!("@{}", good.display());
        assert_eq!(read_json_arg("--input", &arg).unwrap(), json!({"count": 5}));

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let msg = read_json_arg("--input", &format!("@{}", bad.display()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("does not contain valid JSON") && msg.contains("bad.json"),
            "{msg}"
        );

        let missing = dir.path().join("missing.json");
        let msg = read_json_arg("--input", &format!("@{}", missing.display()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cannot read the --input file") && msg.contains("missing.json"),
            "{msg}"
        );
    }

    #[test]
    fn instance_ids_follow_durable_functions_rules() {
        assert_eq!(parse_instance_id("abc").unwrap().as_str(), "abc");
        assert!(parse_instance_id("a/b").is_err());
        assert!(parse_instance_id("").is_err());
    }
}
