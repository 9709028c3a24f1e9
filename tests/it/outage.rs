//! The server goes away for 30 s while the agent keeps profiling: nothing
//! within the agent's buffer is lost, every profile lands, in order of
//! time, once a server is back on the same port and database.

use std::process::{Command, Stdio};
use std::time::Duration;

use firewatch_agent::{Agent, Config};

use crate::support::{Server, wait_until};

#[test]
fn a_thirty_second_server_outage_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("firewatch.db");
    let first = Server::start(&db, 0);
    let port = first.port();

    // A process that is always on CPU, so every upload interval has a profile.
    let mut busy = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start a busy shell");
    let config = Config {
        server: first.base.clone(),
        upload_interval: Duration::from_secs(1),
        retry_min: Duration::from_millis(200),
        retry_max: Duration::from_secs(2),
        targets: firewatch_agent::config::Targets {
            pids: vec![busy.id()],
            ..Default::default()
        },
        ..Config::default()
    };
    let agent = Agent::start(config).expect("agent starts (run the tests as root)");
    let metrics = agent.metrics();
    assert!(
        wait_until(Duration::from_secs(20), || metrics
            .snapshot()
            .profiles_delivered
            >= 2),
        "no profile delivered before the outage: {:?}",
        metrics.snapshot()
    );

    first.stop();
    let before = metrics.snapshot();
    std::thread::sleep(Duration::from_secs(30));
    let during = metrics.snapshot();
    assert_eq!(
        during.profiles_delivered, before.profiles_delivered,
        "nothing can land while the server is down"
    );
    assert!(
        during.profiles_built >= before.profiles_built + 20,
        "the agent kept profiling: {before:?} -> {during:?}"
    );

    let second = Server::start(&db, port);
    let settled = wait_until(Duration::from_secs(60), || {
        let m = metrics.snapshot();
        m.profiles_delivered + m.profiles_rejected + m.profiles_dropped >= during.profiles_built
    });
    let _ = busy.kill();
    let _ = busy.wait();
    let last = agent.stop(Duration::from_secs(20));
    assert!(settled, "the backlog was not delivered: {last:?}");
    assert_eq!(
        (last.profiles_dropped, last.profiles_rejected),
        (0, 0),
        "{last:?}"
    );
    assert_eq!(last.profiles_delivered, last.profiles_built, "{last:?}");

    // Every delivered profile is stored, as one block each.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stats = runtime.block_on(second.store.stats()).expect("stats");
    assert_eq!(stats.blocks, last.profiles_delivered, "{last:?}");
    second.stop();
}
