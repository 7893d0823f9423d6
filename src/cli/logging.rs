//! Where a command line's logs go, shared by the `taskhub` binary and every application that
//! embeds its command line, so that `serve` logs the same way in both.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::Cli;

/// Logs go to stderr so that stdout stays the command's result. A server logs its requests
/// (and, first, the address it listens on); a management command only warns. `RUST_LOG`
/// overrides both. Call once, before [`run`](super::run).
pub fn init_logging(cli: &Cli) {
    let default = if cli.command.is_serve() {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
