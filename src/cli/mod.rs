//! The command line: `taskhub serve`, and the `func durable` commands of Azure Functions Core
//! Tools, which act on a task hub directly in storage whether or not a server is running.
//!
//! The durable commands are reachable two ways, `taskhub durable start-new …` (Core Tools'
//! spelling) and `taskhub start-new …`: one clap enum, mounted under `durable` and flattened at
//! the top level. Each action is a small function in [`commands`] over [`crate::client::Client`];
//! [`output`] renders results; [`CliError`] maps every failure to one line and an exit code.
//!
//! An application that embeds taskhub gets all of it with its own orchestrators: it parses a
//! [`Cli`], calls [`init_logging`] and hands both to [`run`] with its [`Registry`]
//! (`examples/embed.rs`).

pub mod args;
pub mod commands;
pub mod error;
mod logging;
pub mod output;
mod serve;

use std::sync::Arc;

use clap::{Parser, Subcommand};

pub use error::CliError;
pub use logging::init_logging;
pub use serve::ServeArgs;

use crate::engine::Registry;
use commands::*;

const AFTER_HELP: &str = "\
The durable commands are also available as `taskhub durable <COMMAND>`, as in Core Tools.
Storage is named by --connection-string-setting: an environment variable holding 'sqlite:PATH',
'UseDevelopmentStorage=true' or an Azure Storage connection string. When AzureWebJobsStorage is
unset, the embedded SQLite database ./taskhub-data/taskhub.db is used.

Exit status: 0 success, 1 storage or configuration failure, 2 invalid arguments or input,
3 no such instance, 4 the instance's state does not allow the operation.";

#[derive(Parser, Debug)]
#[command(
    name = "taskhub",
    version,
    about = "Durable orchestrations with the Azure Durable Functions management API, \
             and the `func durable` commands to manage them from the terminal.",
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP management API and the orchestration executor.
    Serve(ServeArgs),
    /// Manage orchestration instances and task hubs directly in storage (Core Tools' `func
    /// durable` commands).
    Durable {
        #[command(subcommand)]
        command: DurableCommand,
    },
    #[command(flatten)]
    Direct(DurableCommand),
}

impl Command {
    pub fn is_serve(&self) -> bool {
        matches!(self, Command::Serve(_))
    }
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum DurableCommand {
    /// Start a new instance of the specified orchestrator function.
    StartNew(StartNewArgs),
    /// Retrieve the status of the specified orchestration instance.
    GetRuntimeStatus(GetRuntimeStatusArgs),
    /// Retrieve the history of the specified orchestration instance.
    ///
    /// Text lists the events one per line, without the OrchestratorStarted/OrchestratorCompleted
    /// markers of each episode; --output json prints every stored event with DTFx's field names.
    GetHistory(GetHistoryArgs),
    /// Retrieve the status of all orchestration instances. Supports paging via 'top' and
    /// filtering by creation time and runtime status.
    GetInstances(GetInstancesArgs),
    /// Terminate the specified orchestration instance.
    Terminate(InstanceReasonArgs),
    /// Raise an event to the specified orchestration instance.
    RaiseEvent(RaiseEventArgs),
    /// Rewind the specified failed orchestration instance, so that it runs its failed steps again.
    Rewind(InstanceReasonArgs),
    /// Purge orchestration instance state and history for instances created in a time range,
    /// optionally only those in the given runtime statuses.
    PurgeHistory(PurgeHistoryArgs),
    /// Delete all storage artifacts of the durable task hub: its instances, history and queues.
    DeleteTaskHub(DeleteTaskHubArgs),
}

/// Runs a parsed command line with the orchestrators and activities of `registry`: the
/// registry the binary was built with, whose `serve` runs them and whose `start-new` accepts
/// only their names. An application that embeds taskhub calls this from its `main`. Output goes
/// to stdout; the caller reports errors.
pub async fn run(cli: Cli, registry: Registry) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::serve(args, registry).await,
        Command::Durable { command } | Command::Direct(command) => {
            let text = run_durable(command, &Arc::new(registry)).await?;
            println!("{text}");
            Ok(())
        }
    }
}

async fn run_durable(
    command: DurableCommand,
    registry: &Arc<Registry>,
) -> Result<String, CliError> {
    match command {
        DurableCommand::StartNew(a) => start_new(a, registry).await,
        DurableCommand::GetRuntimeStatus(a) => get_runtime_status(a, registry).await,
        DurableCommand::GetHistory(a) => get_history(a, registry).await,
        DurableCommand::GetInstances(a) => get_instances(a, registry).await,
        DurableCommand::Terminate(a) => terminate(a, registry).await,
        DurableCommand::RaiseEvent(a) => raise_event(a, registry).await,
        DurableCommand::Rewind(a) => rewind(a, registry).await,
        DurableCommand::PurgeHistory(a) => purge_history(a, registry).await,
        DurableCommand::DeleteTaskHub(a) => delete_task_hub(a, registry).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::OutputFormat;
    use crate::model::RuntimeStatus;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("taskhub").chain(line.split_whitespace()))
    }

    fn durable(line: &str) -> DurableCommand {
        match parse(line).unwrap().command {
            Command::Durable { command } | Command::Direct(command) => command,
            Command::Serve(_) => panic!("not a durable command"),
        }
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn both_spellings_parse_to_the_same_command() {
        let a = durable("durable start-new --function-name HelloSequence --id x1");
        let b = durable("start-new --function-name HelloSequence --id x1");
        assert_eq!(a, b);
        assert!(matches!(
            parse("durable start-new --function-name X")
                .unwrap()
                .command,
            Command::Durable { .. }
        ));
    }

    #[test]
    fn start_new_flags_and_defaults() {
        let DurableCommand::StartNew(a) =
            durable("start-new --function-name HelloWorld --input @counter-data.json --task-hub-name TestTaskHub")
        else {
            panic!()
        };
        assert_eq!(a.function_name, "HelloWorld");
        assert_eq!(a.input.as_deref(), Some("@counter-data.json"));
        assert_eq!(a.id, None);
        assert_eq!(a.hub.task_hub_name.as_deref(), Some("TestTaskHub"));
        assert_eq!(a.hub.connection_string_setting, None);
        assert_eq!(a.hub.output, OutputFormat::Text);
        assert!(parse("start-new").is_err(), "--function-name is required");
        assert!(parse("start-new --function-name X --id a/b").is_err());
    }

    #[test]
    fn show_input_and_output_take_an_optional_bool() {
        let flags = |line: &str| match durable(line) {
            DurableCommand::GetRuntimeStatus(a) => (a.show_input, a.show_output),
            _ => panic!(),
        };
        assert_eq!(flags("get-runtime-status --id x"), (false, false));
        assert_eq!(
            flags("get-runtime-status --id x --show-input --show-output"),
            (true, true)
        );
        // Core Tools' documented form.
        assert_eq!(
            flags("get-runtime-status --id x --show-input true --show-output false"),
            (true, false)
        );
        assert!(parse("get-runtime-status").is_err(), "--id is required");
    }

    #[test]
    fn get_instances_flags() {
        let DurableCommand::GetInstances(a) = durable(
            "get-instances --created-after 2018-03-10T13:57:31Z --created-before 2018-03-10T23:59Z --top 15 --runtime-status running COMPLETED --output json",
        ) else {
            panic!()
        };
        assert_eq!(a.top, 15);
        assert_eq!(
            a.filter.statuses(),
            vec![RuntimeStatus::Running, RuntimeStatus::Completed]
        );
        assert_eq!(
            a.filter.created_before,
            Some("2018-03-10T23:59:00Z".parse().unwrap())
        );
        assert_eq!(a.hub.output, OutputFormat::Json);

        let DurableCommand::GetInstances(d) = durable("get-instances") else {
            panic!()
        };
        assert_eq!(d.top, 10);
        assert_eq!(d.continuation_token, None);
        assert!(d.filter.statuses().is_empty());

        assert!(parse("get-instances --top 0").is_err());
        assert!(parse("get-instances --runtime-status sleeping").is_err());
        assert!(parse("get-instances --created-after yesterday").is_err());
        assert!(parse("get-instances --output yaml").is_err());
    }

    #[test]
    fn status_list_given_as_one_quoted_argument() {
        let cli = Cli::try_parse_from([
            "taskhub",
            "purge-history",
            "--runtime-status",
            "failed terminated",
        ])
        .unwrap();
        let Command::Direct(DurableCommand::PurgeHistory(a)) = cli.command else {
            panic!()
        };
        assert_eq!(
            a.filter.statuses(),
            vec![RuntimeStatus::Failed, RuntimeStatus::Terminated]
        );
    }

    #[test]
    fn other_commands_parse() {
        let cli = Cli::try_parse_from([
            "taskhub",
            "terminate",
            "--id",
            "abc",
            "--reason",
            "It was time to be done.",
        ])
        .unwrap();
        let Command::Direct(DurableCommand::Terminate(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.reason.as_deref(), Some("It was time to be done."));

        let DurableCommand::RaiseEvent(e) =
            durable("raise-event --id 1234567 --event-name MyOtherEvent --event-data 3")
        else {
            panic!()
        };
        assert_eq!(e.event_name.as_deref(), Some("MyOtherEvent"));
        assert_eq!(e.event_data.as_deref(), Some("3"));

        assert!(matches!(
            durable("rewind --id a --reason r"),
            DurableCommand::Rewind(_)
        ));
        assert!(matches!(
            durable("get-history --id a --connection-string-setting MyStorage"),
            DurableCommand::GetHistory(_)
        ));
        let DurableCommand::DeleteTaskHub(d) =
            durable("delete-task-hub --task-hub-name UserTest --yes")
        else {
            panic!()
        };
        assert!(d.yes);
    }

    #[test]
    fn serve_flags() {
        let Command::Serve(s) = parse("serve --listen 0.0.0.0:8080 --config c.toml")
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(s.listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(s.config.as_deref(), Some(std::path::Path::new("c.toml")));
        assert!(parse("serve --listen nowhere").is_err());
    }
}
