//! The dependency invariants ARCHITECTURE.md states, checked against what
//! cargo resolves, so that a change that breaks one fails here rather than
//! holding by habit.

use std::process::Command;

/// The packages `package` links (normal dependencies, with `features`).
fn linked(package: &str, features: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .args(features)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn never_links(package: &str, features: &[&str], banned: &[&str]) {
    let linked = linked(package, features);
    assert!(
        linked.iter().any(|p| p == package),
        "{package} is not in its own tree: {linked:?}"
    );
    let found: Vec<&&str> = banned
        .iter()
        .filter(|b| linked.iter().any(|p| p == *b))
        .collect();
    assert!(found.is_empty(), "{package} {features:?} links {found:?}");
}

#[test]
fn the_model_links_no_runtime_database_or_renderer() {
    never_links(
        "firewatch-profile",
        &[],
        &["tokio", "sqlx", "inferno", "axum"],
    );
}

#[test]
fn the_syntax_crate_links_only_its_parsers() {
    never_links(
        "firewatch-syntax",
        &[],
        &[
            "tokio",
            "sqlx",
            "inferno",
            "axum",
            "firewatch-profile",
            "serde",
        ],
    );
}

#[test]
fn the_agent_links_no_server_parts() {
    never_links(
        "firewatch-agent",
        &[],
        &["axum", "sqlx", "inferno", "tokio", "firewatch-server"],
    );
}

#[test]
fn the_renderer_links_no_runtime_or_database() {
    never_links("firewatch-render", &[], &["tokio", "sqlx", "axum"]);
}

#[test]
fn the_cli_links_server_and_agent_only_for_up() {
    never_links(
        "firewatch",
        &["--no-default-features"],
        &[
            "firewatch-server",
            "firewatch-agent",
            "axum",
            "sqlx",
            "tokio",
        ],
    );
    let with_up = linked("firewatch", &[]);
    assert!(
        with_up.iter().any(|p| p == "firewatch-server"),
        "`up` is the default"
    );
}

#[test]
fn the_embedded_profiler_links_no_command_line_parts() {
    // A service embeds the agent's library with default features off.
    // (anyhow is not banned: prost's derive macro uses it at build time.)
    never_links(
        "firewatch-agent",
        &["--no-default-features"],
        &["clap", "tracing-subscriber"],
    );
}

/// The agent's calls into the C library sit in `sys.rs`, or beside the
/// memory they touch (the `bpf(2)` calls and their mapped ring, perf's
/// rings, another process's stack read into the agent's buffers), or at
/// the binary's edge (its stop signals): a call anywhere else fails here.
#[test]
fn the_agent_calls_the_c_library_from_sys_and_a_few_owners_only() {
    let allowed = [
        "sys.rs",
        "bpf/mod.rs",
        "sample/events.rs",
        "unwind/live.rs",
        "main.rs",
    ];
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/src"));
    let mut stray = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("agent/src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(root).expect("under src");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if allowed.contains(&rel.as_str()) || !rel.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for (n, line) in text.lines().enumerate() {
                // A call: `libc::name(`; constants and types are fine.
                let calls = line.match_indices("libc::").any(|(at, _)| {
                    let rest = &line[at + 6..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && rest[name.len()..].starts_with('(')
                });
                if calls {
                    stray.push(format!("agent/src/{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        stray.is_empty(),
        "C library calls outside sys.rs:\n{}",
        stray.join("\n")
    );
}
