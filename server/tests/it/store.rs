//! The storage layer on both backends: durability, rollups, late data,
//! timelines, tenants, retention.

use std::collections::BTreeMap;

use firewatch_profile::corpus::{Generator, Shape};
use firewatch_profile::{Profile, SampleType};
use firewatch_server::selector::{Labels, Matcher, ProfileType, parse_matchers};
use firewatch_server::store::{NewProfile, Selection, Store, StoreError, StoreOptions};

use crate::both_backends;
use crate::support::{Backend, open};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// A fixed day, so windows are aligned the same way in every run.
const T0: i64 = 1_700_000_000_000 / (24 * HOUR) * (24 * HOUR);

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

fn at(mut p: Profile, ms: i64) -> Profile {
    p.time_nanos = ms * 1_000_000;
    p.duration_nanos = 10_000_000_000;
    p
}

fn cpu() -> ProfileType {
    ProfileType::parse("cpu").unwrap()
}

fn selection(tenant: &str, matchers: Vec<Matcher>, from: i64, until: i64) -> Selection {
    Selection {
        tenant: tenant.into(),
        matchers,
        profile_type: cpu(),
        from_ms: from,
        until_ms: until,
    }
}

/// Asserts two one-column profiles hold the same stacks and values,
/// reporting a summary rather than both profiles.
fn assert_same(actual: &Profile, expected: &Profile) {
    let (a, e) = (canonical(actual), canonical(expected));
    if a != e {
        let missing = e.keys().filter(|k| !a.contains_key(*k)).count();
        let extra = a.keys().filter(|k| !e.contains_key(*k)).count();
        let differ = e
            .iter()
            .filter(|(k, v)| a.get(*k).is_some_and(|x| x != *v))
            .count();
        panic!(
            "profiles differ: {} vs {} stacks, totals {} vs {}; {missing} missing, {extra} extra, {differ} with other values",
            a.len(),
            e.len(),
            actual.total(0),
            expected.total(0)
        );
    }
}

/// stack names -> value, for comparing merged profiles.
fn canonical(p: &Profile) -> BTreeMap<Vec<String>, i64> {
    let mut out = BTreeMap::new();
    for id in 0..p.stack_count() as u32 {
        let v = p.values(id)[0];
        if v != 0 {
            *out.entry(p.stack_names(id).map(str::to_owned).collect())
                .or_insert(0) += v;
        }
    }
    out
}

/// Profiles every `step` ms from `start`, `count` steps on `hosts` hosts:
/// what to ingest and, per profile, its time and cpu column.
fn corpus_every(
    start: i64,
    step: i64,
    count: i64,
    hosts: usize,
) -> (Vec<NewProfile>, Vec<(i64, Profile)>) {
    let shape = Shape {
        functions: 300,
        universe_stacks: 400,
        stacks_per_profile: 40,
        samples_per_profile: 200,
        min_depth: 5,
        max_depth: 15,
    };
    let g = Generator::new(shape, 7);
    let mut all = Vec::new();
    let mut cpu = Vec::new();
    for i in 0..count {
        for h in 0..hosts {
            let ts = start + i * step;
            let p = at(g.profile((i as u64) * 31 + h as u64), ts);
            cpu.push((ts, p.select_sample_types(&[1])));
            all.push(NewProfile {
                tenant: String::new(),
                labels: labels("checkout", &format!("web-{h}")),
                profile: p,
            });
        }
    }
    (all, cpu)
}

fn corpus(start: i64, count: i64, hosts: usize) -> (Vec<NewProfile>, Profile) {
    let (all, cpu) = corpus_every(start, 10_000, count, hosts);
    (all, Profile::merge_all(cpu.iter().map(|(_, p)| p)))
}

/// The merge of the profiles whose time falls in `[from, until)`.
fn expected_in(cpu: &[(i64, Profile)], from: i64, until: i64) -> Profile {
    Profile::merge_all(
        cpu.iter()
            .filter(|(t, _)| *t >= from && *t < until)
            .map(|(_, p)| p),
    )
}

async fn merged(store: &Store, from: i64, until: i64) -> Profile {
    store
        .select(
            &selection(
                "",
                vec![Matcher::eq("service_name", "checkout")],
                from,
                until,
            ),
            None,
        )
        .await
        .unwrap()
        .profile
}

async fn round_trip(backend: Backend) {
    let t = open(backend).await;
    let (profiles, expected) = corpus(T0, 30, 2);
    t.store.ingest(profiles).await.unwrap();
    let m = t
        .store
        .select(
            &selection(
                "",
                vec![Matcher::eq("service_name", "checkout")],
                T0,
                T0 + HOUR,
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(m.series, 2);
    assert_eq!(
        m.profile.sample_types(),
        &[SampleType::new("cpu", "nanoseconds")]
    );
    assert_same(&m.profile, &expected);
    assert_eq!(m.timeline.samples.iter().sum::<i64>(), expected.total(0));
    // One host only.
    let one = t
        .store
        .select(
            &selection(
                "",
                parse_matchers(r#"{service_name="checkout", host=~"web-1"}"#).unwrap(),
                T0,
                T0 + HOUR,
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(one.series, 1);
    assert!(one.profile.total(0) < m.profile.total(0));
    // Outside the window: nothing.
    let none = merged(&t.store, T0 + HOUR, T0 + 2 * HOUR).await;
    assert!(none.is_empty());
}

async fn survives_reopen(backend: Backend) {
    let t = open(backend).await;
    let (profiles, expected) = corpus(T0, 6, 1);
    t.store.ingest(profiles).await.unwrap();
    t.store.close().await;
    let reopened = Store::open(&t.url, StoreOptions::default()).await.unwrap();
    assert_same(&merged(&reopened, T0, T0 + HOUR).await, &expected);
}

async fn rollups_answer_like_raw_data(backend: Backend) {
    let t = open(backend).await;
    // 3 hours on 2 hosts, every 30 s.
    let (profiles, cpu) = corpus_every(T0, 30_000, 3 * 120, 2);
    for chunk in profiles.chunks(100) {
        t.store.ingest(chunk.to_vec()).await.unwrap();
    }
    let before = t.store.stats().await.unwrap();
    let built = t.store.compact(T0 + 2 * 24 * HOUR).await.unwrap();
    // 18 ten-minute + 3 hour + 1 day windows, per host.
    assert_eq!(built, 2 * (18 + 3 + 1));
    let after = t.store.stats().await.unwrap();
    assert_eq!(after.blocks, before.blocks + built as u64);
    assert_same(
        &merged(&t.store, T0, T0 + 24 * HOUR).await,
        &expected_in(&cpu, T0, T0 + 24 * HOUR),
    );
    // An unaligned range reads rollups inside and raw profiles at the edges.
    for (from, until) in [
        (T0 + 7 * MIN + 5_000, T0 + 2 * HOUR + 13 * MIN),
        (T0 + 10 * MIN, T0 + HOUR + 10 * MIN),
        (T0 - HOUR, T0 + 3 * MIN),
    ] {
        let m = t
            .store
            .select(
                &selection(
                    "",
                    vec![Matcher::eq("service_name", "checkout")],
                    from,
                    until,
                ),
                None,
            )
            .await
            .unwrap();
        let expected = expected_in(&cpu, from, until);
        assert_same(&m.profile, &expected);
        assert_eq!(m.timeline.samples.iter().sum::<i64>(), expected.total(0));
    }
    // Nothing left to build.
    assert_eq!(t.store.compact(T0 + 2 * 24 * HOUR).await.unwrap(), 0);
}

async fn late_profiles_dirty_their_rollups(backend: Backend) {
    let t = open(backend).await;
    let (profiles, mut expected) = corpus(T0, 120, 1);
    t.store.ingest(profiles).await.unwrap();
    t.store.compact(T0 + 2 * 24 * HOUR).await.unwrap();
    // A profile arrives late into an already rolled-up window.
    let mut late = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    late.add_named_sample(&["main", "late_arrival"], &[777]);
    let late = at(late, T0 + 5 * MIN);
    expected.merge(&late);
    t.store
        .ingest(vec![NewProfile {
            tenant: String::new(),
            labels: labels("checkout", "web-0"),
            profile: late,
        }])
        .await
        .unwrap();
    // Before and after rebuilding, the late profile counts exactly once.
    assert_same(&merged(&t.store, T0, T0 + 24 * HOUR).await, &expected);
    assert_eq!(t.store.compact(T0 + 2 * 24 * HOUR).await.unwrap(), 3);
    assert_same(&merged(&t.store, T0, T0 + 24 * HOUR).await, &expected);
}

async fn tenants_are_isolated(backend: Backend) {
    let t = open(backend).await;
    let mut a = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    a.add_named_sample(&["main", "secret_a"], &[5]);
    let mut b = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    b.add_named_sample(&["main", "secret_b"], &[7]);
    let new = |tenant: &str, p: &Profile| NewProfile {
        tenant: tenant.into(),
        labels: labels("checkout", "h"),
        profile: at(p.clone(), T0),
    };
    t.store
        .ingest(vec![new("team-a", &a), new("team-b", &b)])
        .await
        .unwrap();
    let read = |tenant: &'static str| {
        let store = t.store.clone();
        async move {
            store
                .select(&selection(tenant, vec![], T0, T0 + HOUR), None)
                .await
                .unwrap()
                .profile
        }
    };
    assert_eq!(canonical(&read("team-a").await), canonical(&a));
    assert_eq!(canonical(&read("team-b").await), canonical(&b));
    assert!(read("").await.is_empty());
    assert!(read("team-c").await.is_empty());
    assert_eq!(t.store.services("team-c").await.unwrap(), vec![]);
    assert_eq!(
        t.store
            .label_values("team-c", "service_name", &[])
            .await
            .unwrap(),
        Vec::<String>::new()
    );
}

async fn labels_and_services(backend: Backend) {
    let t = open(backend).await;
    let (profiles, _) = corpus(T0, 2, 3);
    t.store.ingest(profiles).await.unwrap();
    let names = t.store.label_names("", &[]).await.unwrap();
    assert_eq!(names, ["__name__", "host", "service_name"]);
    let hosts = t.store.label_values("", "host", &[]).await.unwrap();
    assert_eq!(hosts, ["web-0", "web-1", "web-2"]);
    let filtered = t
        .store
        .label_values("", "host", &parse_matchers(r#"{host!="web-1"}"#).unwrap())
        .await
        .unwrap();
    assert_eq!(filtered, ["web-0", "web-2"]);
    let services = t.store.services("").await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].name, "checkout");
    assert_eq!(
        services[0].profile_types,
        [
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
            "process_cpu:samples:count:cpu:nanoseconds"
        ]
    );
}

async fn series_limit_refuses_new_series_only(backend: Backend) {
    let (url, _dir) = crate::support::fresh_url(backend).await;
    let options = StoreOptions {
        max_series_per_tenant: 2,
        ..StoreOptions::default()
    };
    let store = Store::open(&url, options).await.unwrap();
    let (profiles, _) = corpus(T0, 1, 3);
    let err = store.ingest(profiles.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::LimitExceeded {
                what: "series per tenant",
                limit: 2
            }
        ),
        "{err}"
    );
    // Nothing of the refused batch was stored.
    assert_eq!(store.stats().await.unwrap().blocks, 0);
    store.ingest(profiles[..2].to_vec()).await.unwrap();
    store.ingest(profiles[..2].to_vec()).await.unwrap();
    assert_eq!(store.stats().await.unwrap().series, 2);
}

async fn inuse_is_averaged_not_summed(backend: Backend) {
    let t = open(backend).await;
    let mut profiles = Vec::new();
    for (i, v) in [100i64, 300].into_iter().enumerate() {
        let mut p = Profile::new(vec![SampleType::new("inuse_space", "bytes")]);
        p.add_named_sample(&["main", "cache"], &[v]);
        profiles.push(NewProfile {
            tenant: String::new(),
            labels: labels("checkout", "h"),
            profile: at(p, T0 + i as i64 * 10_000),
        });
    }
    t.store.ingest(profiles).await.unwrap();
    let m = t
        .store
        .select(
            &Selection {
                profile_type: ProfileType::parse("inuse_space").unwrap(),
                ..selection("", vec![], T0, T0 + HOUR)
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(m.profile.total(0), 200);
}

async fn retention_deletes_old_data_and_dictionary(backend: Backend) {
    let t = open(backend).await;
    let mut old = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    old.add_named_sample(&["main", "only_in_old_data"], &[5]);
    let mut new = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    new.add_named_sample(&["main", "still_here"], &[9]);
    let item = |p: &Profile, ms: i64, host: &str| NewProfile {
        tenant: String::new(),
        labels: labels("checkout", host),
        profile: at(p.clone(), ms),
    };
    t.store
        .ingest(vec![
            item(&old, T0, "old-host"),
            item(&new, T0 + 3 * 24 * HOUR, "new-host"),
        ])
        .await
        .unwrap();
    t.store.compact(T0 + 2 * 24 * HOUR).await.unwrap();
    let report = t.store.apply_retention(T0 + 2 * 24 * HOUR).await.unwrap();
    assert_eq!(report.series, 1);
    // The old profile and its tier 1-3 rollups.
    assert_eq!(report.blocks, 4);
    // `only_in_old_data` and its stack node.
    assert_eq!(report.dictionary_entries, 2);
    assert!(merged(&t.store, T0, T0 + HOUR).await.is_empty());
    assert_eq!(
        canonical(&merged(&t.store, T0, T0 + 4 * 24 * HOUR).await),
        canonical(&new)
    );
    assert_eq!(
        t.store.label_values("", "host", &[]).await.unwrap(),
        ["new-host"]
    );
    // The dictionary survives a reopen without the deleted entries.
    t.store.close().await;
    let reopened = Store::open(&t.url, StoreOptions::default()).await.unwrap();
    assert_eq!(
        canonical(&merged(&reopened, T0, T0 + 4 * 24 * HOUR).await),
        canonical(&new)
    );
}

async fn concurrent_ingests_share_commits_but_not_failures(backend: Backend) {
    let (url, _dir) = crate::support::fresh_url(backend).await;
    let options = StoreOptions {
        max_series_per_tenant: 3,
        ..StoreOptions::default()
    };
    let store = Store::open(&url, options).await.unwrap();
    let (seed, _) = corpus(T0, 1, 3);
    store.ingest(seed).await.unwrap();
    let (more, _) = corpus(T0 + MIN, 8, 3);
    let mut tasks = Vec::new();
    for p in more {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.ingest(vec![p]).await }));
    }
    // A fourth series is over the limit: it alone must fail.
    let (fourth, _) = corpus(T0, 1, 4);
    let bad = {
        let store = store.clone();
        let p = fourth[3].clone();
        tokio::spawn(async move { store.ingest(vec![p]).await })
    };
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(matches!(
        bad.await.unwrap(),
        Err(StoreError::LimitExceeded { .. })
    ));
    assert_eq!(store.stats().await.unwrap().blocks, 3 + 24);
}

/// A series row whose stored JSON does not read is an error that names
/// the row, never an empty column list (which would renumber the stored
/// columns on the next write).
async fn corrupt_rows_are_named(backend: Backend) {
    use sqlx::Connection;
    let t = open(backend).await;
    let (profiles, _) = corpus(T0, 2, 1);
    t.store.ingest(profiles.clone()).await.unwrap();
    t.store.close().await;
    let corrupt = "UPDATE series SET sample_types = 'not json'";
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&t.url).await.unwrap();
            sqlx::query(corrupt).execute(&mut c).await.unwrap();
            let _ = c.close().await;
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&t.url).await.unwrap();
            sqlx::query(corrupt).execute(&mut c).await.unwrap();
            let _ = c.close().await;
        }
    }
    let message = match Store::open(&t.url, StoreOptions::default()).await {
        Err(e) => e.to_string(),
        Ok(store) => store.ingest(profiles).await.unwrap_err().to_string(),
    };
    assert!(message.starts_with("corrupt series row "), "{message}");
    assert!(message.contains("not json"), "{message}");
}

both_backends! {
    corrupt_rows_are_named => super::corrupt_rows_are_named;
    concurrent_ingests_share_commits_but_not_failures => super::concurrent_ingests_share_commits_but_not_failures;
    round_trip => super::round_trip;
    survives_reopen => super::survives_reopen;
    rollups_answer_like_raw_data => super::rollups_answer_like_raw_data;
    late_profiles_dirty_their_rollups => super::late_profiles_dirty_their_rollups;
    tenants_are_isolated => super::tenants_are_isolated;
    labels_and_services => super::labels_and_services;
    series_limit_refuses_new_series_only => super::series_limit_refuses_new_series_only;
    inuse_is_averaged_not_summed => super::inuse_is_averaged_not_summed;
    retention_deletes_old_data_and_dictionary => super::retention_deletes_old_data_and_dictionary;
}
