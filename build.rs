//! Generates the Durable Task gRPC types and service from `proto/` at build time.
//!
//! `protox` parses the .proto file in Rust (well-known types included), so building taskhub needs
//! no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/durabletask_sidecar.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // Tests drive the server with the generated client, so both sides are built.
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
