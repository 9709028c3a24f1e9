//! The binary's security settings: HTTPS with a certificate generated here,
//! tokens from a tokens file (digests only, also in `--print-config`),
//! refusing to serve every tenant unauthenticated beyond loopback unless
//! told to, and JSON logs.

use std::sync::Arc;

use crate::binary::{agent, launch, server, start_with};
use crate::harness::{base_ms, cpu_profile};

const TOKEN: &str = "s3cret-ingest-and-query";

/// A tokens file with an admin token given as its digest.
fn tokens_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    let sha = firewatch_server::auth::to_hex(&firewatch_server::auth::digest(TOKEN));
    std::fs::write(
        &path,
        format!("[[tokens]]\nname = \"ops\"\ntoken_sha256 = \"{sha}\"\nscope = \"admin\"\n"),
    )
    .unwrap();
    path
}

fn sqlite(dir: &std::path::Path) -> String {
    format!("sqlite://{}/data/firewatch.db", dir.display())
}

#[test]
fn https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let tokens = tokens_file(dir.path());

    let running = start_with(
        &sqlite(dir.path()),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tokens-file",
            tokens.to_str().unwrap(),
        ],
    );
    assert!(
        running.log().contains("listening on https://"),
        "{}",
        running.log()
    );
    let root = ureq::tls::Certificate::from_der(generated.cert.der()).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
        .build();
    let client: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .into();
    let base = format!("https://{}", running.addr);

    let r = client.get(&format!("{base}/healthz")).call().unwrap();
    assert_eq!(r.status(), 200);
    let body = cpu_profile(&[("main;over_tls", 4)], base_ms()).to_pprof_bytes();
    let r = client
        .post(&format!("{base}/api/v1/ingest?service_name=tls"))
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status(), 401, "a token is needed over HTTPS too");
    let r = client
        .post(&format!("{base}/api/v1/ingest?service_name=tls"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut r = client
        .get(&format!(
            "{base}/render?query=tls.samples&from={}&until={}&format=folded",
            base_ms() - 60_000,
            base_ms() + 60_000
        ))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "main;over_tls 4\n");

    // Plain HTTP to the HTTPS port gets no answer; a client that does not
    // trust the certificate refuses the server.
    assert!(
        agent()
            .get(&format!("http://{}/healthz", running.addr))
            .call()
            .is_err()
    );
    assert!(agent().get(&format!("{base}/healthz")).call().is_err());
    drop(running);

    // A key that does not fit the certificate stops the start, naming it.
    let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).unwrap();
    std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
    let out = server()
        .args(["--listen", "127.0.0.1:0", "--storage", &sqlite(dir.path())])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls.key") && err.contains("TLS"), "{err}");
}

#[test]
fn refuses_to_serve_every_tenant_unauthenticated_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(dir.path());
    let out = server()
        .args(["--listen", "0.0.0.0:0", "--storage", &db])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && err.contains("--insecure-no-auth")
            && err.contains("--tokens-file"),
        "{err}"
    );

    // Told to, it serves, and says so.
    let mut cmd = server();
    cmd.args(["--listen", "0.0.0.0:0", "--storage", &db])
        .env("FIREWATCH_INSECURE_NO_AUTH", "true");
    let running = launch(cmd);
    let port = running.addr.rsplit(':').next().unwrap().to_owned();
    assert!(
        running
            .log()
            .contains("authentication is off: anyone who can reach 0.0.0.0:"),
        "{}",
        running.log()
    );
    let r = agent()
        .get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(running);

    // With tokens, no flag is needed.
    let mut cmd = server();
    cmd.args(["--listen", "0.0.0.0:0", "--storage", &db])
        .arg("--tokens-file")
        .arg(tokens_file(dir.path()));
    let running = launch(cmd);
    assert!(
        running.log().contains("authentication is on"),
        "{}",
        running.log()
    );
}

#[test]
fn tokens_are_kept_as_digests() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("firewatch.toml");
    std::fs::write(
        &config,
        "[[tokens]]\ntoken = \"plain-dev-token\"\nscope = \"query\"\ntenant = \"team-a\"\n",
    )
    .unwrap();
    let out = server()
        .arg("--config")
        .arg(&config)
        .arg("--tokens-file")
        .arg(tokens_file(dir.path()))
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let plain = firewatch_server::auth::to_hex(&firewatch_server::auth::digest("plain-dev-token"));
    assert!(
        text.contains(&format!("token_sha256 = \"{plain}\"")),
        "{text}"
    );
    assert!(text.contains("name = \"ops\""), "{text}");
    assert!(
        !text.contains("plain-dev-token") && !text.contains(TOKEN),
        "{text}"
    );

    std::fs::write(&config, "[[tokens]]\ntoken = \"x\"\nscope = \"read\"\n").unwrap();
    let out = server().arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("firewatch.toml") && err.contains("unknown scope"),
        "{err}"
    );
}

#[test]
fn json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(&sqlite(dir.path()), &["--log-format", "json"]);
    let log = running.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let listening = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening on http://"))
        })
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(listening["level"], "INFO");
    assert!(listening["storage"].as_str().is_some(), "{listening}");
    assert!(lines.iter().any(|l| l["level"] == "WARN"), "{log}");
}
