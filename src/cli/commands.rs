//! One small function per `func durable` action. Each opens the task hub, calls the management
//! [`Client`], and returns the text to print on stdout.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use super::args::{parse_instance_id, read_json_arg, FilterArgs, HubArgs, OutputFormat};
use super::error::CliError;
use super::output::{render_history, render_instances, render_json, render_status};
use crate::client::Client;
use crate::config::Config;
use crate::engine::Registry;
use crate::model::{format_status_time, new_guid_n, InstanceId};
use crate::storage::Storage;
use crate::store::{InstanceFilter, InstanceQuery};

/// Opens the hub the flags name. Flags win over `config/taskhub.toml` and `TASKHUB_…`, which win
/// over the built-in defaults. `registry` is the binary's: the client checks orchestrator names
/// against it (start-new); the command line never runs orchestrations itself.
fn open(hub: &HubArgs, registry: &Arc<Registry>) -> Result<Client, CliError> {
    let config = Config::load(hub.config.as_deref())?;
    let name = hub.task_hub_name.as_deref().unwrap_or(&config.task_hub);
    let storage = Storage::new(&config.connection_setting, &config.sqlite_path);
    let store = storage.open(hub.connection_string_setting.as_deref(), name)?;
    Ok(Client::new(store, Some(registry.clone())))
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct StartNewArgs {
    /// Name of the orchestrator function to start.
    #[arg(long, value_name = "NAME")]
    pub function_name: String,
    /// (Optional) Input of the orchestrator function: inline JSON, or @path/to/file.json to read
    /// it from a file.
    #[arg(long, value_name = "JSON|@FILE")]
    pub input: Option<String>,
    /// (Optional) ID of the new orchestration instance. Default: a new GUID.
    #[arg(long, value_name = "ID", value_parser = parse_instance_id)]
    pub id: Option<InstanceId>,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn start_new(args: StartNewArgs, registry: &Arc<Registry>) -> Result<String, CliError> {
    let input = match &args.input {
        Some(raw) => read_json_arg("--input", raw)?,
        None => serde_json::Value::Null,
    };
    let client = open(&args.hub, registry)?;
    let id = client.start(&args.function_name, args.id, input).await?;
    Ok(match args.hub.output {
        OutputFormat::Json => render_json(
            &json!({"name": args.function_name, "instanceId": id}),
            OutputFormat::Json,
        ),
        OutputFormat::Text => format!("Started '{}'. Instance ID: '{id}'.", args.function_name),
    })
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct GetRuntimeStatusArgs {
    /// ID of the orchestration instance.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// (Optional) Include the input of the orchestration in the status.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub show_input: bool,
    /// (Optional) Include the output of the orchestration in the status.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub show_output: bool,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn get_runtime_status(
    args: GetRuntimeStatusArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let client = open(&args.hub, registry)?;
    let status = client.status(&args.id).await?;
    Ok(render_status(
        &status,
        args.show_input,
        args.show_output,
        args.hub.output,
    ))
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct GetHistoryArgs {
    /// ID of the orchestration instance.
    #[arg(long, value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn get_history(
    args: GetHistoryArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let client = open(&args.hub, registry)?;
    // An unknown instance has an empty history; say so instead of printing nothing.
    client.status(&args.id).await?;
    let history = client.history(&args.id).await?;
    Ok(render_history(&history, args.hub.output))
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct GetInstancesArgs {
    /// (Optional) Number of instances to retrieve per request (page size).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    /// (Optional) Token printed by the previous get-instances, to retrieve the next page.
    #[arg(long, value_name = "TOKEN")]
    pub continuation_token: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn get_instances(
    args: GetInstancesArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let filter = instance_filter(&args.filter)?;
    let client = open(&args.hub, registry)?;
    let page = client
        .query(&InstanceQuery {
            filter,
            page_size: args.top as usize,
            continuation: args.continuation_token.filter(|t| !t.is_empty()),
            include_input: false,
            max_bytes: None,
        })
        .await?;
    Ok(render_instances(&page, args.hub.output))
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct InstanceReasonArgs {
    /// ID of the orchestration instance.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// (Optional) Reason, recorded in the instance's history.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn terminate(
    args: InstanceReasonArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let client = open(&args.hub, registry)?;
    client.terminate(&args.id, args.reason).await?;
    Ok(sent(&args.id, "terminate", args.hub.output))
}

pub async fn rewind(
    args: InstanceReasonArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let client = open(&args.hub, registry)?;
    client.rewind(&args.id, args.reason).await?;
    Ok(sent(&args.id, "rewind", args.hub.output))
}

/// Terminate and rewind are requests the instance acts on when a server runs it (a rewound
/// instance reads Pending from the moment the request is accepted).
fn sent(id: &str, operation: &str, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => render_json(
            &json!({"instanceId": id, "operation": operation, "sent": true}),
            format,
        ),
        OutputFormat::Text => format!("Sent a {operation} request to instance '{id}'."),
    }
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RaiseEventArgs {
    /// ID of the orchestration instance.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// (Optional) Name of the event to raise. Default: Event_{random GUID}.
    #[arg(long, value_name = "NAME")]
    pub event_name: Option<String>,
    /// (Optional) Data to send with the event: inline JSON, or @path/to/file.json.
    #[arg(long, value_name = "JSON|@FILE")]
    pub event_data: Option<String>,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn raise_event(
    args: RaiseEventArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let data = match &args.event_data {
        Some(raw) => read_json_arg("--event-data", raw)?,
        None => serde_json::Value::Null,
    };
    let name = args
        .event_name
        .unwrap_or_else(|| format!("Event_{}", new_guid_n()));
    let client = open(&args.hub, registry)?;
    client.raise_event(&args.id, &name, data).await?;
    Ok(match args.hub.output {
        OutputFormat::Json => render_json(
            &json!({"instanceId": args.id, "eventName": name}),
            OutputFormat::Json,
        ),
        OutputFormat::Text => format!("Raised event '{name}' to instance '{}'.", args.id),
    })
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct PurgeHistoryArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn purge_history(
    args: PurgeHistoryArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let filter = instance_filter(&args.filter)?;
    let client = open(&args.hub, registry)?;
    let deleted = client.purge_by_filter(&filter).await?;
    Ok(match args.hub.output {
        OutputFormat::Json => {
            render_json(&json!({"instancesDeleted": deleted}), OutputFormat::Json)
        }
        OutputFormat::Text => format!(
            "Purged the history of {deleted} instance{} {}.",
            plural(deleted),
            describe_filter(&filter)
        ),
    })
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct DeleteTaskHubArgs {
    /// (Optional) Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn delete_task_hub(
    args: DeleteTaskHubArgs,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    let client = open(&args.hub, registry)?;
    let hub = client.hub().to_string();
    let count = client.count_instances(&InstanceFilter::default()).await?;
    // Only a person can answer; scripts (stdin not a terminal) pass --yes or get no prompt,
    // as with Core Tools, which never asks.
    if !args.yes && std::io::stdin().is_terminal() && !confirm(&hub, count)? {
        return Err(CliError::Declined(format!(
            "task hub '{hub}' was not deleted"
        )));
    }
    client.delete_hub().await?;
    Ok(match args.hub.output {
        OutputFormat::Json => render_json(
            &json!({"taskHub": hub, "instancesDeleted": count}),
            OutputFormat::Json,
        ),
        OutputFormat::Text => format!(
            "Task hub '{hub}' deleted: {count} instance{} with their history removed.",
            plural(count)
        ),
    })
}

fn confirm(hub: &str, count: u64) -> Result<bool, CliError> {
    let question = format!(
        "Delete task hub '{hub}' with its {count} instance{} and their history? [y/N] ",
        plural(count)
    );
    ask(
        &question,
        &mut std::io::stdin().lock(),
        &mut std::io::stderr(),
    )
    .map_err(|e| CliError::Other(e.into()))
}

/// Asks a yes/no question; anything but "y" or "yes" is no.
fn ask(question: &str, input: &mut impl BufRead, out: &mut impl Write) -> std::io::Result<bool> {
    write!(out, "{question}")?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Flags → store filter, rejecting an empty time range up front.
fn instance_filter(args: &FilterArgs) -> Result<InstanceFilter, CliError> {
    if let (Some(after), Some(before)) = (args.created_after, args.created_before) {
        if after > before {
            return Err(CliError::Usage(format!(
                "--created-after ({}) is later than --created-before ({})",
                format_status_time(after),
                format_status_time(before)
            )));
        }
    }
    Ok(InstanceFilter {
        created_from: args.created_after,
        created_to: args.created_before,
        statuses: args.statuses(),
        ..InstanceFilter::default()
    })
}

fn describe_filter(f: &InstanceFilter) -> String {
    let mut parts = Vec::new();
    match (f.created_from, f.created_to) {
        (Some(a), Some(b)) => parts.push(format!(
            "created between {} and {}",
            format_status_time(a),
            format_status_time(b)
        )),
        (Some(a), None) => parts.push(format!("created after {}", format_status_time(a))),
        (None, Some(b)) => parts.push(format!("created before {}", format_status_time(b))),
        (None, None) => parts.push("created at any time".to_string()),
    }
    if f.statuses.is_empty() {
        parts.push("in any status".to_string());
    } else {
        let names: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        parts.push(format!("with status {}", names.join(" or ")));
    }
    parts.join(", ")
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::parse_status_list;
    use crate::model::RuntimeStatus;

    fn filter_args(after: Option<&str>, before: Option<&str>, statuses: &str) -> FilterArgs {
        FilterArgs {
            created_after: after.map(|s| s.parse().unwrap()),
            created_before: before.map(|s| s.parse().unwrap()),
            runtime_status: if statuses.is_empty() {
                vec![]
            } else {
                vec![parse_status_list(statuses).unwrap()]
            },
        }
    }

    #[test]
    fn only_yes_confirms() {
        for (answer, expected) in [
            ("y\n", true),
            ("YES\n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
        ] {
            let mut out = Vec::new();
            let yes = ask("Sure? ", &mut answer.as_bytes(), &mut out).unwrap();
            assert_eq!(yes, expected, "{answer:?}");
            assert_eq!(out, b"Sure? ");
        }
    }

    #[test]
    fn filters_carry_over_and_empty_ranges_are_rejected() {
        let f = instance_filter(&filter_args(
            Some("2018-03-10T13:57:31Z"),
            Some("2018-03-10T23:59:00Z"),
            "failed",
        ))
        .unwrap();
        assert_eq!(f.statuses, vec![RuntimeStatus::Failed]);
        assert!(f.created_from.is_some() && f.created_to.is_some());
        assert_eq!(
            describe_filter(&f),
            "created between 2018-03-10T13:57:31Z and 2018-03-10T23:59:00Z, with status Failed"
        );

        let err = instance_filter(&filter_args(
            Some("2018-03-11T00:00:00Z"),
            Some("2018-03-10T00:00:00Z"),
            "",
        ))
        .unwrap_err();
        assert!(matches!(err, CliError::Usage(_)));
        assert_eq!(
            describe_filter(&InstanceFilter::default()),
            "created at any time, in any status"
        );
    }
}
