//! Embedding taskhub in a Rust service: register your own orchestrators and activities (here
//! next to the built-in samples), then hand control to taskhub's command line. The binary you
//! get is `taskhub` with your code in it: `serve` runs your orchestrators behind the Durable
//! Functions HTTP API, and `start-new` and the other `func durable` commands know their names.
//!
//! README's "Embed taskhub in your Rust service" shows this file.
//!
//! ```text
//! cargo run --example embed -- serve
//! curl -X POST 'http://127.0.0.1:7071/api/orchestrators/GreetAll/wait?timeout=5'
//! ["Hi Ada","Hi Grace"]
//! ```

use clap::Parser;
use serde_json::{json, Value};
use taskhub::cli::{self, Cli};
use taskhub::engine::{ActivityContext, OrchestrationContext};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut registry = taskhub::samples::registry(); // or Registry::new() without the samples
    registry
        .activity("Greet", |ctx: ActivityContext| async move {
            let name: String = ctx.input()?;
            Ok(json!(format!("Hi {name}")))
        })
        .orchestrator("GreetAll", |ctx: OrchestrationContext| async move {
            let mut greetings = Vec::new();
            for name in ["Ada", "Grace"] {
                greetings.push(ctx.call_activity("Greet", name).await?);
            }
            Ok(Value::Array(greetings))
        });
    let cli = Cli::parse();
    cli::init_logging(&cli);
    match cli::run(cli, registry).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
