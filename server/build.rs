// Generates the Pyroscope push types from proto/push.proto with protox (pure
// Rust), so no system `protoc` is needed to build, and rebuilds the server
// when the embedded web UI changes.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The web UI is embedded by `src/web.rs`; watching the folder makes a
    // file added to it (not only a changed one) rebuild the server.
    println!("cargo:rerun-if-changed=../web");
    println!("cargo:rerun-if-changed=proto/push.proto");
    let fds = protox::compile(["proto/push.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
