//! Unit tests of the configuration.

use super::*;

fn file(text: &str) -> FileConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn defaults() {
    let c = Config::resolve(&Cli::default(), FileConfig::default()).unwrap();
    assert_eq!(c.listen, DEFAULT_LISTEN);
    assert_eq!(c.storage, DEFAULT_STORAGE);
    assert_eq!(c.retention, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(c.compact_interval, Duration::from_secs(10));
    assert_eq!(c.limits, IngestLimits::default());
}

#[test]
fn flags_win_over_the_file() {
    let f = file(
        r#"
        listen = "0.0.0.0:9"
        storage = "postgres://u@h/db"
        retention = "forever"
        [limits]
        max_body_bytes = "1MiB"
        max_samples = 5
        "#,
    );
    let cli = Cli::try_parse_from([
        "firewatch-server",
        "--listen",
        "127.0.0.1:1",
        "--max-samples",
        "7",
    ])
    .unwrap();
    let c = Config::resolve(&cli, f).unwrap();
    assert_eq!(c.listen, "127.0.0.1:1");
    assert_eq!(c.storage, "postgres://u@h/db");
    assert_eq!(c.retention, None);
    assert_eq!(c.limits.max_body_bytes, 1 << 20);
    assert_eq!(c.limits.max_samples, 7);
}

#[test]
fn bad_values_are_named() {
    let e = toml::from_str::<FileConfig>("listne = 1").unwrap_err();
    assert!(e.to_string().contains("listne"), "{e}");
    let cli = Cli {
        retention: Some("30 parsecs".into()),
        ..Cli::default()
    };
    let e = Config::resolve(&cli, FileConfig::default()).unwrap_err();
    assert!(e.to_string().starts_with("invalid retention"), "{e}");
    let e = Config::resolve(&Cli::default(), file("[limits]\nmax_samples = 0")).unwrap_err();
    assert!(e.to_string().contains("max_samples"), "{e}");
}

#[test]
fn sizes_and_paths() {
    assert_eq!(parse_size("16MiB"), Ok(16 << 20));
    assert_eq!(parse_size("100"), Ok(100));
    assert_eq!(parse_size("2 KB"), Ok(2000));
    assert_eq!(
        parse_size("16M"),
        Ok(16_000_000),
        "M is 10^6 in every binary"
    );
    assert!(parse_size("MiB").is_err());
    assert_eq!(
        sqlite_path("sqlite://./data/fw.db?mode=rwc"),
        Some(PathBuf::from("./data/fw.db"))
    );
    assert_eq!(sqlite_path("sqlite::memory:"), None);
    assert_eq!(sqlite_path("postgres://x"), None);
}

#[test]
fn prepares_the_sqlite_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a/b/fw.db");
    let cli = Cli {
        storage: Some(format!("sqlite://{}", db.display())),
        ..Cli::default()
    };
    let c = Config::resolve(&cli, FileConfig::default()).unwrap();
    c.prepare_storage().unwrap();
    assert!(dir.path().join("a/b").is_dir());
    assert!(
        c.to_toml().contains("max_samples = 100000"),
        "{}",
        c.to_toml()
    );
}
