//! The `taskhub` binary: the library's command line with the built-in samples registered.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use taskhub::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.command.is_serve());
    match cli::run(cli, taskhub::samples::registry()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

/// Logs go to stderr so that stdout stays the command's result. A server logs its requests;
/// a management command only warns. `RUST_LOG` overrides both.
fn init_tracing(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
