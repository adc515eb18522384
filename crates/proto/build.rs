//! Compiles `proto/**/*.proto` with the pure-Rust `protox`, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../proto";
    let files = [
        "yurt/v1/types.proto",
        "yurt/v1/api.proto",
        "yurt/internal/v1/internal.proto",
    ];
    let fds = protox::compile(files, [root])?;
    // For gRPC server reflection: the descriptors, encoded.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("yurt_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .btree_map(".")
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .type_attribute(".yurt.v1.Value.kind", "#[serde(untagged)]")
        // Untagged: a map (`{"fields": ...}`) must not read as an empty list.
        .message_attribute(".yurt.v1.ValueList", "#[serde(deny_unknown_fields)]")
        .message_attribute(".yurt.v1.ValueMap", "#[serde(deny_unknown_fields)]")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={root}");
    Ok(())
}
