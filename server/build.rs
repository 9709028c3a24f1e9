// Generates the Pyroscope push types from proto/push.proto with protox (pure
// Rust), so no system `protoc` is needed to build.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/push.proto");
    let fds = protox::compile(["proto/push.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
