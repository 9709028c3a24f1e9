//! Storage and query targets on the standard corpus (profile/src/corpus.rs):
//!
//! - ingest: profiles/s from compressed pprof bytes to commit, into SQLite,
//!   and the ratio to decoding alone;
//! - storage: bytes per sampled event at rest, indexes included, and the
//!   ratio to the zstd-compressed pprof the agent ships;
//! - query: one service, 10 hosts, a profile every 10 s for 24 h (86,400
//!   profiles): the merged flamegraph JSON of the last hour, the day and the
//!   week (the six days before are ingested at one profile per host per
//!   minute to keep the run short; they are read through day rollups), warm,
//!   median of runs, and the ratio 7 d / 1 h.
//!
//! `cargo bench -p firewatch-server --bench store` (set
//! `FIREWATCH_BENCH_POSTGRES_URL` to run the same against PostgreSQL).

use std::hint::black_box;
use std::time::{Duration, Instant};

use firewatch_profile::corpus::Generator;
use firewatch_profile::{FlameTree, Limits, Profile, zstd};
use firewatch_server::selector::{Labels, Matcher, ProfileType};
use firewatch_server::store::{NewProfile, Selection, Store, StoreOptions};

const HOSTS: usize = 10;
const DAY_MS: i64 = 86_400_000;
const STEP_MS: i64 = 10_000;

fn labels(host: usize) -> Labels {
    [
        ("service_name".to_owned(), "checkout".to_owned()),
        ("host".to_owned(), format!("web-{host}")),
        ("__name__".to_owned(), "process_cpu".to_owned()),
    ]
    .into_iter()
    .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn timed<T>(runs: usize, mut f: impl AsyncFnMut() -> T) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        black_box(f().await);
        times.push(t.elapsed());
    }
    median(times)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = std::env::var("FIREWATCH_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db", dir.path().display()));
    let store = Store::open(&url, StoreOptions::default())
        .await
        .expect("open store");
    let generator = Generator::standard(1);
    let limits = Limits::default();
    // Distinct profiles cycle through a pool, like a service whose hot paths repeat.
    let pool: Vec<Vec<u8>> = (0..512u64)
        .map(|i| zstd(&generator.profile(i).to_pprof_bytes(), 3).expect("zstd"))
        .collect();
    let now = 1_700_000_000_000 / DAY_MS * DAY_MS + 7 * DAY_MS;
    let day_start = now - DAY_MS;

    // Ingest: decode + commit, one profile per transaction, as one request each.
    let n_ingest = 2_000usize;
    let t = Instant::now();
    for i in 0..n_ingest {
        let bytes = &pool[i % pool.len()];
        let mut p = Profile::from_pprof_bytes(bytes, &limits).expect("decode");
        p.time_nanos = (day_start + (i / HOSTS) as i64 * STEP_MS) * 1_000_000;
        store
            .ingest(vec![NewProfile {
                tenant: String::new(),
                labels: labels(i % HOSTS),
                profile: p,
            }])
            .await
            .expect("ingest");
    }
    let ingest = t.elapsed();
    let t = Instant::now();
    for i in 0..n_ingest {
        black_box(Profile::from_pprof_bytes(&pool[i % pool.len()], &limits).expect("decode"));
    }
    let decode = t.elapsed();
    if std::env::var_os("FIREWATCH_BENCH_INGEST_ONLY").is_some() {
        let per_sec = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "ingest 1/tx: {:.0} profiles/s; decode alone {:.0}/s",
            per_sec(n_ingest, ingest),
            per_sec(n_ingest, decode)
        );
        return;
    }

    // The rest of the day in batches of 64 (group commit), then six more days sparser.
    let day_profiles = (DAY_MS / STEP_MS) as usize * HOSTS;
    let mut batch = Vec::with_capacity(64);
    let t = Instant::now();
    for i in n_ingest..day_profiles {
        let mut p = Profile::from_pprof_bytes(&pool[i % pool.len()], &limits).expect("decode");
        p.time_nanos = (day_start + (i / HOSTS) as i64 * STEP_MS) * 1_000_000;
        batch.push(NewProfile {
            tenant: String::new(),
            labels: labels(i % HOSTS),
            profile: p,
        });
        if batch.len() == 64 {
            store
                .ingest(std::mem::take(&mut batch))
                .await
                .expect("ingest");
        }
    }
    store
        .ingest(std::mem::take(&mut batch))
        .await
        .expect("ingest");
    let batched = t.elapsed();
    let batched_n = day_profiles - n_ingest;
    let stats_day = store.stats().await.expect("stats");
    let raw_bytes: usize = (0..day_profiles).map(|i| pool[i % pool.len()].len()).sum();
    let events = day_profiles as f64 * generator.shape().samples_per_profile as f64;

    let sparse_step = 60_000;
    let mut sparse = 0usize;
    for d in 1..7i64 {
        let start = day_start - d * DAY_MS;
        for k in 0..(DAY_MS / sparse_step) as usize * HOSTS {
            let mut p = Profile::from_pprof_bytes(&pool[k % pool.len()], &limits).expect("decode");
            p.time_nanos = (start + (k / HOSTS) as i64 * sparse_step) * 1_000_000;
            batch.push(NewProfile {
                tenant: String::new(),
                labels: labels(k % HOSTS),
                profile: p,
            });
            if batch.len() == 64 {
                store
                    .ingest(std::mem::take(&mut batch))
                    .await
                    .expect("ingest");
            }
            sparse += 1;
        }
    }
    store
        .ingest(std::mem::take(&mut batch))
        .await
        .expect("ingest");
    let t = Instant::now();
    let built = store.compact(now + DAY_MS).await.expect("compact");
    let compaction = t.elapsed();
    let stats = store.stats().await.expect("stats");

    let select = |from: i64, until: i64| Selection {
        tenant: String::new(),
        matchers: vec![Matcher::eq("service_name", "checkout")],
        profile_type: ProfileType::parse("cpu").expect("type"),
        from_ms: from,
        until_ms: until,
    };
    let query = |from: i64, until: i64| {
        let store = store.clone();
        let sel = select(from, until);
        async move {
            let merged = store.select(&sel, None).await.expect("select");
            let tree = FlameTree::from_profile(&merged.profile, 0).truncate(8192);
            serde_json::to_string(&(tree.to_flamebearer(), &merged.timeline)).expect("json")
        }
    };
    // Ranges end at the last ingested profile, so nothing is empty.
    let end = now;
    let hour = timed(7, || query(end - 3_600_000, end)).await;
    let day = timed(7, || query(end - DAY_MS, end)).await;
    let week = timed(5, || query(end - 7 * DAY_MS, end)).await;
    // An unaligned day: rollups inside, raw profiles at both edges.
    let unaligned = timed(5, || query(end - DAY_MS - 1_234_567, end - 1_234_567)).await;

    let per_sec = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "backend: {}",
        if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        }
    );
    println!(
        "ingest (decode + commit, 1 profile per transaction): {:>8.0} profiles/s",
        per_sec(n_ingest, ingest)
    );
    println!(
        "ingest (decode + commit, 64 per transaction):       {:>8.0} profiles/s",
        per_sec(batched_n, batched)
    );
    println!(
        "decode alone (zstd pprof -> model):                  {:>8.0} profiles/s",
        per_sec(n_ingest, decode)
    );
    println!(
        "  ratio ingest(1/tx) / decode time: {:.2} (one client in sequence is latency-bound; \
         the 1,000 profiles/s target is measured over HTTP by the ingest_http bench)",
        ingest.as_secs_f64() / decode.as_secs_f64()
    );
    println!(
        "storage after 24 h (86,400 profiles, {} events): {:.3} bytes/event at rest ({} bytes); \
         shipped zstd pprof {:.3} bytes/event; ratio {:.3}; target <= 2 bytes/event: {}",
        events as u64,
        stats_day.bytes as f64 / events,
        stats_day.bytes,
        raw_bytes as f64 / events,
        stats_day.bytes as f64 / raw_bytes as f64,
        if stats_day.bytes as f64 / events <= 2.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "after 6 more days ({sparse} profiles) and compaction ({built} rollups in {compaction:.2?}): {:.3} bytes/event, {} blocks",
        stats.bytes as f64 / (events + sparse as f64 * 1000.0),
        stats.blocks
    );
    println!("query 1 h  (360 profiles x 10 hosts):  {hour:>10.2?}");
    println!(
        "query 24 h (86,400 profiles):           {day:>10.2?}  target < 500 ms: {}",
        if day < Duration::from_millis(500) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("query 24 h, unaligned:                  {unaligned:>10.2?}");
    println!("query 7 d:                              {week:>10.2?}");
    println!(
        "ratio 7 d / 1 h: {:.2} (target <= 2): {}",
        week.as_secs_f64() / hour.as_secs_f64(),
        if week.as_secs_f64() <= 2.0 * hour.as_secs_f64() {
            "met"
        } else {
            "NOT met"
        }
    );
    store.close().await;
}
