//! Generates the kubelet pod-resources client (and the server half, which the tests use to
//! answer like a kubelet) from `proto/podresources/v1/api.proto`. The proto is compiled by
//! protox, in Rust, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/podresources/v1/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
