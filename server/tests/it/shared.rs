//! Several stores on one PostgreSQL database, as several servers run: what
//! one writes, the others read (series, labels, services, stacks); sample
//! type columns agree whoever added them; compaction on all of them at once
//! builds each rollup once; retention on one never deletes what another
//! still references.

use std::collections::BTreeMap;

use firewatch_profile::{Profile, SampleType};
use firewatch_server::selector::{Labels, Matcher, ProfileType};
use firewatch_server::store::{NewProfile, Selection, Store, StoreOptions};
use sqlx::Connection;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// A fixed day, so windows are aligned the same way in every run.
const T0: i64 = 1_700_000_000_000 / (24 * HOUR) * (24 * HOUR);

/// Two stores over one new database, and its URL.
async fn two() -> (Store, Store, String) {
    let url = crate::pg::fresh_database().await;
    let a = Store::open(&url, StoreOptions::default()).await.unwrap();
    let b = Store::open(&url, StoreOptions::default()).await.unwrap();
    (a, b, url)
}

fn labels(service: &str, host: &str) -> Labels {
    [
        ("service_name", service),
        ("host", host),
        ("__name__", "process_cpu"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A profile of `types` with one sample per stack, the value of column `i`
/// being `(i + 1) * n`.
fn profile(types: &[&str], stacks: &[(&str, i64)], ms: i64) -> Profile {
    let mut p = Profile::new(types.iter().map(|t| SampleType::new(*t, "count")).collect());
    p.time_nanos = ms * 1_000_000;
    p.duration_nanos = 10_000_000_000;
    for (stack, n) in stacks {
        let frames: Vec<&str> = stack.split(';').collect();
        let values: Vec<i64> = (0..types.len() as i64).map(|i| (i + 1) * n).collect();
        p.add_named_sample(&frames, &values);
    }
    p
}

fn new(tenant: &str, labels: Labels, profile: Profile) -> NewProfile {
    NewProfile {
        tenant: tenant.into(),
        labels,
        profile,
    }
}

/// `{stack: value}` of the `kind` column of a service over `[from, until)`.
async fn read(
    store: &Store,
    tenant: &str,
    service: &str,
    kind: &str,
    from: i64,
    until: i64,
) -> BTreeMap<String, i64> {
    let merged = store
        .select(
            &Selection {
                tenant: tenant.into(),
                matchers: vec![Matcher::eq("service_name", service)],
                profile_type: ProfileType::parse(kind).unwrap(),
                from_ms: from,
                until_ms: until,
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("select {kind}: {e}"));
    let p = merged.profile;
    let mut out = BTreeMap::new();
    for id in 0..p.stack_count() as u32 {
        let v = p.values(id)[0];
        if v != 0 {
            *out.entry(p.stack_names(id).collect::<Vec<_>>().join(";"))
                .or_insert(0) += v;
        }
    }
    out
}

fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_server_writes_the_other_reads() {
    let (a, b, _) = two().await;
    // `b` has read the (empty) database; everything below is written through `a`.
    a.ingest(vec![
        new(
            "t",
            labels("checkout", "web-1"),
            profile(&["cpu"], &[("main;pay", 3)], T0),
        ),
        new(
            "t",
            labels("search", "web-2"),
            profile(&["cpu"], &[("main;find", 4)], T0),
        ),
        new(
            "u",
            labels("other", "web-3"),
            profile(&["cpu"], &[("main;x", 5)], T0),
        ),
    ])
    .await
    .unwrap();

    assert_eq!(
        b.label_names("t", &[]).await.unwrap(),
        ["__name__", "host", "service_name"]
    );
    assert_eq!(
        b.label_values("t", "service_name", &[]).await.unwrap(),
        ["checkout", "search"]
    );
    let services = b.services("t").await.unwrap();
    assert_eq!(
        services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["checkout", "search"]
    );
    assert_eq!(
        read(&b, "t", "checkout", "cpu", T0, T0 + HOUR).await,
        map(&[("main;pay", 3)])
    );
    assert_eq!(
        b.label_values("u", "service_name", &[]).await.unwrap(),
        ["other"]
    );
    assert!(b.label_names("nobody", &[]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_type_columns_agree_whoever_adds_them() {
    let (a, b, url) = two().await;
    let l = labels("checkout", "web-1");
    // `b` learns the series as [samples, cpu].
    b.ingest(vec![new(
        "",
        l.clone(),
        profile(&["samples", "cpu"], &[("m;a", 1)], T0),
    )])
    .await
    .unwrap();
    // `a` appends `wall` (column 2), which `b` does not know of.
    a.ingest(vec![new(
        "",
        l.clone(),
        profile(&["wall"], &[("m;w", 7)], T0 + MIN),
    )])
    .await
    .unwrap();
    // `b` sends the known types in the other order, then a type of its own:
    // it must neither swap columns nor put `alloc` over `wall`.
    b.ingest(vec![new(
        "",
        l.clone(),
        profile(&["cpu", "samples"], &[("m;b", 10)], T0 + 2 * MIN),
    )])
    .await
    .unwrap();
    b.ingest(vec![new(
        "",
        l.clone(),
        profile(&["alloc"], &[("m;c", 5)], T0 + 3 * MIN),
    )])
    .await
    .unwrap();

    let fresh = Store::open(&url, StoreOptions::default()).await.unwrap();
    for store in [&a, &b, &fresh] {
        // Column i of a profile holds (i + 1) * n.
        assert_eq!(
            read(store, "", "checkout", "samples", T0, T0 + HOUR).await,
            map(&[("m;a", 1), ("m;b", 20)])
        );
        assert_eq!(
            read(store, "", "checkout", "cpu", T0, T0 + HOUR).await,
            map(&[("m;a", 2), ("m;b", 10)])
        );
        assert_eq!(
            read(store, "", "checkout", "wall", T0, T0 + HOUR).await,
            map(&[("m;w", 7)])
        );
        assert_eq!(
            read(store, "", "checkout", "alloc", T0, T0 + HOUR).await,
            map(&[("m;c", 5)])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_on_two_servers_builds_each_rollup_once() {
    let (a, b, url) = two().await;
    // 12 series over 3 hours: 18 ten-minute windows each, 3 hours, 1 day.
    let mut batch = Vec::new();
    for s in 0..12 {
        for i in 0..36 {
            let t = T0 + i * 5 * MIN;
            batch.push(new(
                "",
                labels("checkout", &format!("web-{s}")),
                profile(
                    &["cpu"],
                    &[("main;a", 1), (&format!("main;s{s}"), i + 1)],
                    t,
                ),
            ));
        }
    }
    a.ingest(batch).await.unwrap();
    let raw = read(&a, "", "checkout", "cpu", T0, T0 + 4 * HOUR).await;

    let now = T0 + 3 * 24 * HOUR;
    let mut built = 0;
    for _ in 0..3 {
        let (x, y) = tokio::join!(a.compact(now), b.compact(now));
        built += x.unwrap() + y.unwrap();
    }
    // Every window of every tier, 12 * (18 + 3 + 1); a coarse window may be
    // built again when the other server finished one of its children later.
    assert!(built >= 12 * 22, "{built} rollups built");

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT series_id, tier, start_ms FROM blocks WHERE tier > 0 \
         GROUP BY series_id, tier, start_ms HAVING count(*) > 1) d",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(duplicates, 0, "windows with more than one rollup");
    let dirty: i64 = sqlx::query_scalar("SELECT count(*) FROM dirty")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(dirty, 0);
    conn.close().await.unwrap();

    for store in [&a, &b] {
        assert_eq!(
            read(store, "", "checkout", "cpu", T0, T0 + 4 * HOUR).await,
            raw
        );
        assert_eq!(store.compaction_lag_ms(now).await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_elsewhere_never_breaks_what_a_server_cached() {
    let (a, b, _) = two().await;
    let l = labels("checkout", "web-1");
    let old = T0;
    let recent = T0 + 10 * 24 * HOUR;
    // `b` writes the series and the stack, and caches both.
    b.ingest(vec![new(
        "",
        l.clone(),
        profile(&["cpu"], &[("main;old;deep", 1)], old),
    )])
    .await
    .unwrap();
    assert_eq!(b.label_values("", "host", &[]).await.unwrap(), ["web-1"]);

    // `a` deletes all of it: blocks, the series, its dictionary entries.
    let report = a.apply_retention(old + 24 * HOUR).await.unwrap();
    assert_eq!(report.series, 1);
    assert!(report.dictionary_entries >= 4, "{report:?}");
    assert!(b.label_values("", "host", &[]).await.unwrap().is_empty());

    // `b` writes the same series and stack again: it must recreate them
    // rather than reference the ids it cached.
    b.ingest(vec![new(
        "",
        l.clone(),
        profile(&["cpu"], &[("main;old;deep", 2)], recent),
    )])
    .await
    .unwrap();
    for store in [&a, &b] {
        assert_eq!(
            read(store, "", "checkout", "cpu", recent - HOUR, recent + HOUR).await,
            map(&[("main;old;deep", 2)])
        );
        assert_eq!(
            store.label_values("", "host", &[]).await.unwrap(),
            ["web-1"]
        );
    }

    // A sweep that finds what `b` wrote referenced deletes nothing of it.
    let report = a.apply_retention(old + 24 * HOUR).await.unwrap();
    assert_eq!(report.dictionary_entries, 0, "{report:?}");
    b.ingest(vec![new(
        "",
        l,
        profile(&["cpu"], &[("main;old;deep", 3)], recent + MIN),
    )])
    .await
    .unwrap();
    assert_eq!(
        read(&a, "", "checkout", "cpu", recent - HOUR, recent + HOUR).await,
        map(&[("main;old;deep", 5)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_servers_lose_nothing() {
    let (a, b, _) = two().await;
    // Both servers intern the same new functions and stacks at once, in
    // different orders, creating series as they go.
    let writer = |store: Store, reverse: bool| async move {
        for i in 0..20i64 {
            let mut stacks: Vec<String> =
                (0..30).map(|f| format!("main;f{f};g{}", f % 7)).collect();
            if reverse {
                stacks.reverse();
            }
            let pairs: Vec<(&str, i64)> = stacks.iter().map(|s| (s.as_str(), 1)).collect();
            let host = format!("web-{}", i % 5);
            store
                .ingest(vec![new(
                    "",
                    labels("checkout", &host),
                    profile(&["cpu"], &pairs, T0 + i * MIN),
                )])
                .await
                .unwrap();
        }
    };
    let (x, y) = tokio::join!(
        tokio::spawn(writer(a.clone(), false)),
        tokio::spawn(writer(b.clone(), true))
    );
    x.unwrap();
    y.unwrap();
    for store in [&a, &b] {
        let got = read(store, "", "checkout", "cpu", T0, T0 + HOUR).await;
        assert_eq!(got.len(), 30);
        assert!(got.values().all(|&v| v == 40), "{got:?}");
        assert_eq!(store.label_values("", "host", &[]).await.unwrap().len(), 5);
    }
}
