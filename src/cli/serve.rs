//! `taskhub serve`: flags and configuration file in, server out. Starting the server is
//! [`crate::server`]'s.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::error::CliError;
use crate::config::Config;
use crate::engine::Registry;

#[derive(Args, Debug, Clone, PartialEq)]
pub struct ServeArgs {
    /// (Optional) Address to listen on. Default: 127.0.0.1:7071, or `listen` in the config file.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// (Optional) Address of the Durable Task gRPC endpoint, or `off`. Default: 127.0.0.1:4001,
    /// or `grpc_listen` in the config file.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_grpc_listen)]
    pub grpc_listen: Option<GrpcListen>,
    /// (Optional) Configuration file to read instead of config/taskhub.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--grpc-listen`: an address, or `None` for `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcListen(pub Option<SocketAddr>);

fn parse_grpc_listen(value: &str) -> Result<GrpcListen, String> {
    crate::config::parse_listen_or_off(value).map(GrpcListen)
}

/// Serves `registry`'s orchestrators and activities: the binary's, not only the samples.
pub async fn serve(args: ServeArgs, registry: Registry) -> Result<(), CliError> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(GrpcListen(grpc)) = args.grpc_listen {
        config.grpc_listen = grpc;
    }
    Ok(crate::server::serve(config, registry).await?)
}
