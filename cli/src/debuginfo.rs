//! `firewatch debuginfo upload FILE...`: sends debug files to the server
//! so it can name the frames of stripped binaries, skipping those it
//! already holds (by build id).

use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;

use crate::client::Client;
use crate::error::{Error, Result};

/// Bytes of the server's answer read at most.
const MAX_ANSWER_BYTES: u64 = 64 << 10;

#[derive(Debug, Deserialize)]
struct Held {
    size: u64,
    #[serde(default)]
    stored: Option<bool>,
}

/// Uploads each file, in order; stops at the first that fails.
pub(crate) fn upload(client: &Client, files: &[PathBuf]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for file in files {
        let (build_id, size) = debug_file_build_id(file).map_err(|message| Error::Invalid {
            what: file.display().to_string(),
            message: format!("{message} (upload a debug file or an unstripped binary)"),
        })?;
        let path = format!("/api/debuginfo/{build_id}");
        let held = match client.get(&path, &[], MAX_ANSWER_BYTES) {
            Ok(_) => true,
            Err(Error::Status { status, .. }) if status.starts_with("404") => false,
            Err(e) => return Err(e),
        };
        if held {
            writeln!(
                out,
                "{}: build id {build_id}: already on the server",
                file.display()
            )
            .map_err(Error::Output)?;
            continue;
        }
        let answer = client.put_file(&path, file, MAX_ANSWER_BYTES)?;
        let held: Held = serde_json::from_slice(&answer).map_err(|e| Error::Invalid {
            what: format!("{}{path}", client.base()),
            message: format!("unexpected answer: {e}"),
        })?;
        let verb = if held.stored == Some(false) {
            "already on the server"
        } else {
            "uploaded"
        };
        writeln!(
            out,
            "{}: build id {build_id}: {verb} ({} bytes)",
            file.display(),
            held.size.max(size)
        )
        .map_err(Error::Output)?;
    }
    Ok(())
}

/// The build id and size of a debug file, or why it is none.
fn debug_file_build_id(path: &std::path::Path) -> std::result::Result<(String, u64), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    let id = firewatch_profile::debug_file::build_id(file).map_err(|e| e.to_string())?;
    Ok((id, size))
}
