//! Two `firewatch-server` processes on one PostgreSQL database, on
//! loopback: what one ingests the other answers (render, labels, values,
//! services); one killed with SIGKILL while a client sends loses nothing
//! the client saw acknowledged; compaction running on both builds each
//! rollup once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::binary::{Running, agent, start_with};
use crate::harness::{base_ms, cpu_profile, enc};

/// Sends one profile of `stack` (1 sample) to the server at `addr`.
fn post_profile(
    agent: &ureq::Agent,
    addr: &str,
    service: &str,
    host: &str,
    stack: &str,
    t: i64,
) -> Result<u16, String> {
    let body = cpu_profile(&[(stack, 1)], t).to_pprof_bytes();
    let body = firewatch_profile::zstd(&body, 3).map_err(|e| e.to_string())?;
    agent
        .post(&format!(
            "http://{addr}/api/v1/ingest?service_name={service}&host={host}"
        ))
        .header("Content-Encoding", "zstd")
        .send(&body[..])
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn get(agent: &ureq::Agent, server: &Running, target: &str) -> String {
    let mut r = agent
        .get(&format!("http://{}{target}", server.addr))
        .call()
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    assert_eq!(r.status(), 200, "GET {target}");
    r.body_mut().read_to_string().unwrap()
}

/// `{stack: value}` of a service's samples over the last six hours.
fn folded(
    agent: &ureq::Agent,
    server: &Running,
    service: &str,
) -> std::collections::BTreeMap<String, i64> {
    let now = firewatch_server::time::now_ms();
    let text = get(
        agent,
        server,
        &format!(
            "/render?query={}&from={}&until={now}&format=folded",
            enc(&format!("{service}.samples")),
            now - 6 * 3_600_000
        ),
    );
    crate::harness::folded_map(&text)
}

/// Polls `f` until it holds, for at most `limit`.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (dirty windows ready to build, windows holding more than one rollup) in
/// the database.
fn rollup_state(runtime: &tokio::runtime::Runtime, url: &str) -> (i64, i64) {
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        // Windows ready to build (ended over a minute ago): the day
        // window of today stays dirty until the day is over.
        let dirty: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dirty WHERE start_ms + CASE tier WHEN 1 THEN 600000 \
             WHEN 2 THEN 3600000 ELSE 86400000 END + 60000 <= $1",
        )
        .bind(firewatch_server::time::now_ms())
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let duplicates: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT series_id, tier, start_ms FROM blocks WHERE tier > 0 \
             GROUP BY series_id, tier, start_ms HAVING count(*) > 1) d",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        (dirty, duplicates)
    })
}

#[test]
fn two_servers_on_one_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(crate::pg::fresh_database());
    let mut a = start_with(&url, &[]);
    let b = start_with(&url, &[]);
    let http = agent();
    let t = base_ms();

    // Through `a`, several services and hosts over two hours (many rollup
    // windows, which both compactors race for); read through `b`.
    for i in 0..24i64 {
        let service = ["checkout", "search"][i as usize % 2];
        let host = format!("web-{}", i % 3);
        let stack = format!("main;{service}_{}", i % 4);
        let status =
            post_profile(&http, &a.addr, service, &host, &stack, t - i * 5 * 60_000).unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(
        get(&http, &b, "/label-values?label=service_name"),
        r#"["checkout","search"]"#
    );
    assert_eq!(
        get(&http, &b, "/label-values?label=host"),
        r#"["web-0","web-1","web-2"]"#
    );
    assert!(get(&http, &b, "/labels").contains("host"));
    let services = get(&http, &b, "/api/v1/services");
    assert!(
        services.contains("checkout") && services.contains("search"),
        "{services}"
    );
    let checkout = folded(&http, &b, "checkout");
    assert_eq!(checkout.values().sum::<i64>(), 12, "{checkout:?}");
    assert_eq!(checkout, folded(&http, &a, "checkout"));

    // A client sends to `a` until `a` dies; everything it saw acknowledged
    // is readable through `b`.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let acked = Arc::clone(&acked);
        let addr = a.addr.clone();
        std::thread::spawn(move || {
            let http = agent();
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..100_000i64 {
                if Instant::now() > deadline {
                    break;
                }
                let stack = format!("main;acked_{i}");
                match post_profile(&http, &addr, "durable", "web-9", &stack, base_ms() + i) {
                    Ok(200) => acked.lock().unwrap().push(i),
                    Ok(status) => panic!("ingest answered {status}"),
                    Err(_) => break,
                }
            }
        })
    };
    eventually(Duration::from_secs(60), "20 acknowledged profiles", || {
        acked.lock().unwrap().len() >= 20
    });
    a.child.kill().unwrap(); // SIGKILL, mid-stream
    a.child.wait().unwrap();
    client.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let durable = folded(&http, &b, "durable");
    for i in &acked {
        assert_eq!(
            durable.get(&format!("main;acked_{i}")),
            Some(&1),
            "profile {i} was acknowledged by the killed server but is not readable through the other"
        );
    }
    // At most the one in flight when `a` died may have landed unacknowledged.
    assert!(
        durable.len() <= acked.len() + 1,
        "{} > {}",
        durable.len(),
        acked.len()
    );

    // A new server joins; both compact the same windows; each rollup once.
    let c = start_with(&url, &[]);
    for i in 0..24i64 {
        let server = if i % 2 == 0 { &b } else { &c };
        let stack = format!("main;late_{}", i % 5);
        let status = post_profile(
            &http,
            &server.addr,
            "late",
            "web-0",
            &stack,
            t - i * 7 * 60_000,
        )
        .unwrap();
        assert_eq!(status, 200);
    }
    eventually(Duration::from_secs(90), "compaction to finish", || {
        rollup_state(&runtime, &url).0 == 0
    });
    assert_eq!(
        rollup_state(&runtime, &url).1,
        0,
        "windows with more than one rollup"
    );
    let late = folded(&http, &b, "late");
    assert_eq!(late.values().sum::<i64>(), 24, "{late:?}");
    assert_eq!(late, folded(&http, &c, "late"));
    assert_eq!(folded(&http, &c, "checkout"), checkout);
}
