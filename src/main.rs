//! The `taskhub` binary: the library's command line with the built-in samples registered. An
//! application with its own orchestrators does the same with its own registry
//! (`examples/embed.rs`).

use std::process::ExitCode;

use clap::Parser;
use taskhub::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli);
    match cli::run(cli, taskhub::samples::registry()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
