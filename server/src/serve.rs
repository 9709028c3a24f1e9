//! Serving the application: plain HTTP, or HTTPS with rustls (ring
//! provider) from PEM files, until a shutdown signal; in-flight requests
//! finish first.
//!
//! The certificate and key are reread when either file changes (checked
//! every [`TLS_RELOAD_INTERVAL`]), so a rotated certificate (cert-manager,
//! certbot) is picked up without a restart; a pair that fails to load is
//! logged and the previous one kept.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// How often the certificate files are checked for changes.
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// The PEM files of an HTTPS server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the server could not serve.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A certificate or key file could not be read or used.
    #[error("TLS: {path}: {message}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The listener or a connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn tls_error(path: &Path, message: impl ToString) -> ServeError {
    ServeError::Tls {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Reads the certificate chain and key into a rustls configuration
/// (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN).
pub fn load_tls(files: &TlsFiles) -> Result<Arc<ServerConfig>, ServeError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(&files.cert, e))?;
    if chain.is_empty() {
        return Err(tls_error(&files.cert, "no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls_error(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&files.cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_error(&files.key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` (HTTPS with `tls`) until `shutdown`
/// resolves, then waits for in-flight requests.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    let Some(files) = tls else {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        return Ok(());
    };
    let config = RustlsConfig::from_config(load_tls(&files)?);
    let reloader = tokio::spawn(reload_on_change(files, config.clone()));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(None);
    });
    let served = axum_server::from_tcp_rustls(listener, config)?
        .handle(handle)
        .serve(app.into_make_service())
        .await;
    reloader.abort();
    Ok(served?)
}

fn modified(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&files.cert)?, m(&files.key)?))
}

/// Reloads the certificate and key whenever either file changes.
async fn reload_on_change(files: TlsFiles, config: RustlsConfig) {
    let mut seen = modified(&files);
    let mut tick = tokio::time::interval(TLS_RELOAD_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = modified(&files);
        if now.is_none() || now == seen {
            continue;
        }
        match load_tls(&files) {
            Ok(c) => {
                config.reload_from_config(c);
                seen = now;
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; keeping the previous one")
            }
        }
    }
}
