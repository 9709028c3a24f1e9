//! `PUT` and `GET /api/debuginfo/{build_id}`: debug files a tenant uploads
//! so the server can name the frames of stripped files (see
//! [`crate::symbols`]). Both sit behind the `ingest` scope: whoever may
//! write a tenant's profiles may supply what names them.
//!
//! The body is the ELF debug file itself (`objcopy --only-keep-debug`
//! output, a `-dbgsym` package's `.debug` file, or the unstripped binary),
//! streamed to disk within `--max-debuginfo-bytes`, then checked (ELF, this
//! build id, a symbol table or DWARF) before it is kept.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::put;
use firewatch_profile::ObjectAddress;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::symbols::{Stored, SymbolsError, count_within, write_failed};

/// The routes, with no body limit of the server's own: the upload counts
/// its bytes against the debug-file limit as they arrive.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/debuginfo/{build_id}", put(upload).get(describe))
        .layer(DefaultBodyLimit::disable())
}

/// What the server holds for a build id.
#[derive(Debug, Serialize)]
struct Held {
    build_id: String,
    size: u64,
    /// `true` when this request stored the file; `false` when a file with
    /// this build id was already held (the upload was dropped).
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<bool>,
}

fn check_build_id(build_id: &str) -> Result<(), ApiError> {
    if ObjectAddress::is_build_id(build_id) {
        Ok(())
    } else {
        Err(error(SymbolsError::BadBuildId(build_id.to_owned())))
    }
}

fn error(e: SymbolsError) -> ApiError {
    match e {
        SymbolsError::NoDirectory => ApiError::Unavailable(e.to_string()),
        SymbolsError::TooLarge { .. } | SymbolsError::Quota { .. } => {
            ApiError::TooLarge(e.to_string())
        }
        SymbolsError::DebugFile(_)
        | SymbolsError::BuildIdMismatch { .. }
        | SymbolsError::BadBuildId(_) => ApiError::BadRequest(e.to_string()),
        SymbolsError::Debuginfod { .. } | SymbolsError::Io { .. } => {
            tracing::error!(error = %e, "debug file not kept");
            ApiError::Internal("the debug file could not be kept".into())
        }
    }
}

/// `PUT /api/debuginfo/{build_id}`: keeps the debug file in the body.
async fn upload(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(build_id): Path<String>,
    body: Body,
) -> Result<Json<Held>, ApiError> {
    check_build_id(&build_id)?;
    let files = state.symbols.files();
    let (tmp, file) = files.temporary().map_err(error)?;
    // Written asynchronously: a large upload must not hold a runtime thread.
    let mut file = tokio::fs::File::from_std(file);
    let limit = files.max_file_bytes;
    let mut written = 0u64;
    let mut stream = body.into_data_stream();
    let received = async {
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("the upload ended early: {e}")))?;
            count_within(&mut written, chunk.len(), limit).map_err(error)?;
            file.write_all(&chunk)
                .await
                .map_err(|e| error(write_failed(e)))?;
        }
        file.flush().await.map_err(|e| error(write_failed(e)))?;
        Ok::<(), ApiError>(())
    }
    .await;
    drop(file);
    if let Err(e) = received {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let symbols = std::sync::Arc::clone(&state.symbols);
    let id = build_id.clone();
    let (stored, size) =
        tokio::task::spawn_blocking(move || symbols.files().keep_upload(&tenant, &id, &tmp))
            .await?
            .map_err(error)?;
    tracing::info!(
        build_id,
        size,
        new = stored == Stored::New,
        "debug file uploaded"
    );
    Ok(Json(Held {
        build_id,
        size,
        stored: Some(stored == Stored::New),
    }))
}

/// `GET /api/debuginfo/{build_id}`: whether the tenant uploaded it.
async fn describe(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(build_id): Path<String>,
) -> Result<Json<Held>, ApiError> {
    check_build_id(&build_id)?;
    let path = state
        .symbols
        .files()
        .uploaded(&tenant, &build_id)
        .ok_or_else(|| ApiError::NotFound(format!("no debug file with build id {build_id}")))?;
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    Ok(Json(Held {
        build_id,
        size,
        stored: None,
    }))
}
