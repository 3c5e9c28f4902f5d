//! Compiles the steward gRPC contract with protox (pure Rust, no protoc) and
//! generates the tonic client and server code, plus the encoded file
//! descriptor set that the agent serves through gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/steward/agent/v1/agent.proto";
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("steward_agent_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Snapshot chunks pass through without a copy into a Vec.
        .bytes(".steward.agent.v1.DownloadSnapshotResponse.chunk")
        .bytes(".steward.agent.v1.TakeAndSendSnapshotResponse.chunk")
        .bytes(".steward.agent.v1.UploadSnapshotRequest.chunk")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
