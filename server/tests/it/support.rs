//! What the storage and HTTP tests share: the backend under test, a fresh
//! store URL per test (a SQLite file in a temporary directory, or a new
//! database on the PostgreSQL of [`crate::pg`]), and `both_backends!`,
//! which runs a test on each backend.

use firewatch_server::store::{Store, StoreOptions};

/// The database behind a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store URL, and the temporary directory that must outlive it
/// (SQLite only).
pub async fn fresh_url(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}/firewatch.db", dir.path().display());
            (url, Some(dir))
        }
        Backend::Postgres => (crate::pg::fresh_database().await, None),
    }
}

/// An open store on a fresh database.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Opens a store with default options on a fresh database.
pub async fn open(backend: Backend) -> TestStore {
    let (url, dir) = fresh_url(backend).await;
    let store = Store::open(&url, StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    TestStore {
        store,
        url,
        _dir: dir,
    }
}

/// `both_backends! { name => super::function; ... }` makes a test `name`
/// in the modules `sqlite` and `postgres`, each calling
/// `function(Backend::...)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident => $case:path;)*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $case($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $case($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}
