use firewatch_profile::{Profile, SampleType};

use crate::fixtures::GO_CPU;
use crate::support::{data, data_arg, firewatch, tempdir};

#[test]
fn folded_table_has_exact_values_and_percentages() {
    let out = firewatch(&data(""), &["top", "checkout.folded"]).ok();
    let want = "\
samples (count): total 1000; 15 of 15 functions, by self
self   self%  total   total%  function
 250  25.00%    250   25.00%  checkout::pricing::apply_discounts
 200  20.00%    200   20.00%  serde_json::ser::to_vec
 200  20.00%    200   20.00%  sqlx_postgres::connection::PgConnection::run
 120  12.00%    120   12.00%  hyper::proto::h1::dispatch::Dispatcher::poll
 100  10.00%    100   10.00%  rust_decimal::Decimal::add
  80   8.00%     80    8.00%  tokio::runtime::park::Parker::park
  30   3.00%     50    5.00%  serde_json::de::from_str
  20   2.00%     20    2.00%  serde_json::de::Deserializer::parse_value
   0   0.00%   1000  100.00%  main
   0   0.00%    950   95.00%  tokio::runtime::Runtime::block_on
   0   0.00%    870   87.00%  checkout::server::serve
   0   0.00%    750   75.00%  checkout::handlers::checkout
   0   0.00%    350   35.00%  checkout::cart::Cart::total
   0   0.00%    200   20.00%  sqlx::query::Query::fetch_all
   0   0.00%     50    5.00%  checkout::config::load
";
    assert_eq!(out, want);
}

#[test]
fn limit_and_sort_by_total() {
    let file = data_arg("checkout.folded");
    let out = firewatch(&data(""), &["top", &file, "-n", "3", "--sort", "total"]).ok();
    let want = "\
samples (count): total 1000; 3 of 15 functions, by total
self  self%  total   total%  function
   0  0.00%   1000  100.00%  main
   0  0.00%    950   95.00%  tokio::runtime::Runtime::block_on
   0  0.00%    870   87.00%  checkout::server::serve
";
    assert_eq!(out, want);
    let out = firewatch(&data(""), &["top", &file, "--limit", "1"]).ok();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines()
            .nth(2)
            .unwrap_or("")
            .ends_with("checkout::pricing::apply_discounts")
    );
}

#[test]
fn json_lists_rows_with_percentages_and_metadata() {
    let out = firewatch(
        &data(""),
        &["top", "checkout.folded", "-n", "2", "--output", "json"],
    )
    .ok();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["file"], "checkout.folded");
    assert_eq!(doc["format"], "folded");
    assert_eq!(doc["sample_type"]["kind"], "samples");
    assert_eq!(doc["sample_type"]["unit"], "count");
    assert_eq!(doc["total"], 1000);
    assert_eq!(doc["function_count"], 15);
    assert_eq!(doc["sort"], "self");
    let rows = doc["functions"].as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "checkout::pricing::apply_discounts");
    assert_eq!(rows[0]["self"], 250);
    assert_eq!(rows[0]["total"], 250);
    assert_eq!(rows[0]["self_percent"], 25.0);
    assert_eq!(rows[0]["total_percent"], 25.0);
    assert_eq!(rows[1]["name"], "serde_json::ser::to_vec");
}

#[test]
fn go_cpu_profile_defaults_to_cpu_in_readable_durations() {
    let out = firewatch(&data(""), &["top", GO_CPU, "-n", "6"]).ok();
    let want = "\
cpu (nanoseconds): total 1.50 s; 6 of 14 functions, by self
     self   self%      total  total%  function
400.00 ms  26.67%  400.00 ms  26.67%  main.applyDiscounts
300.00 ms  20.00%  300.00 ms  20.00%  syscall.Syscall
250.00 ms  16.67%  250.00 ms  16.67%  runtime.mallocgc
200.00 ms  13.33%  200.00 ms  13.33%  runtime.scanobject
150.00 ms  10.00%  400.00 ms  26.67%  encoding/json.Marshal
100.00 ms   6.67%  500.00 ms  33.33%  main.(*Cart).Total
";
    assert_eq!(out, want);
}

#[test]
fn sample_type_flag_picks_the_column() {
    let out = firewatch(
        &data(""),
        &["top", GO_CPU, "--sample-type", "samples", "-n", "1"],
    )
    .ok();
    assert_eq!(
        out,
        "samples (count): total 150; 1 of 14 functions, by self\n\
         self   self%  total  total%  function\n  \
           40  26.67%     40  26.67%  main.applyDiscounts\n"
    );
}

#[test]
fn zstd_heap_profile_shows_bytes_in_binary_units() {
    let mut heap = Profile::new(vec![
        SampleType::new("alloc_objects", "count"),
        SampleType::new("alloc_space", "bytes"),
    ]);
    heap.add_named_sample(&["main", "cache::fill", "alloc"], &[3, 3 << 20]);
    heap.add_named_sample(&["main", "parse"], &[1, 512 << 10]);
    heap.add_named_sample(&["main"], &[1, 512]);
    let dir = tempdir();
    let bytes = firewatch_profile::zstd(&heap.to_pprof_bytes(), 3).expect("zstd");
    std::fs::write(dir.path().join("heap.pb.zst"), bytes).expect("written");
    let out = firewatch(
        dir.path(),
        &["top", "heap.pb.zst", "--sample-type", "alloc_space"],
    )
    .ok();
    let want = "\
alloc_space (bytes): total 3.50 MiB; 4 of 4 functions, by self
      self   self%       total   total%  function
  3.00 MiB  85.70%    3.00 MiB   85.70%  alloc
512.00 KiB  14.28%  512.00 KiB   14.28%  parse
     512 B   0.01%    3.50 MiB  100.00%  main
       0 B   0.00%    3.00 MiB   85.70%  cache::fill
";
    assert_eq!(out, want);
}

#[test]
fn control_characters_in_names_cannot_reach_the_terminal() {
    let dir = tempdir();
    std::fs::write(dir.path().join("evil.folded"), "main;evil\u{1b}[2J 5\n").expect("written");
    let out = firewatch(dir.path(), &["top", "evil.folded"]).ok();
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains("  evil\u{fffd}[2J\n"), "{out:?}");
}

#[test]
fn query_on_the_server_prints_the_same_table() {
    let server = crate::live::shop();
    let dir = tempdir();
    let run = crate::support::firewatch_env(
        dir.path(),
        &["top", "shop.cpu", "--from", "now-15m"],
        &[("FIREWATCH_SERVER", &server.base)],
    );
    assert!(
        run.stderr
            .starts_with("fetching shop.cpu (now-15m to now) from http://127.0.0.1:"),
        "{}",
        run.stderr
    );
    let want = "\
cpu (nanoseconds): total 1.00 s; 5 of 5 functions, by self
     self   self%      total   total%  function
600.00 ms  60.00%  600.00 ms   60.00%  parse
300.00 ms  30.00%  300.00 ms   30.00%  render
100.00 ms  10.00%  100.00 ms   10.00%  idle
     0 ns   0.00%     1.00 s  100.00%  main
     0 ns   0.00%  900.00 ms   90.00%  handle
";
    assert_eq!(run.ok(), want);
}

#[test]
fn query_json_names_the_server_and_window() {
    let server = crate::live::shop();
    let out = firewatch(
        &data(""),
        &[
            "top",
            "shop.cpu",
            "--server",
            &server.base,
            "--from",
            "now-1h",
            "--type",
            "samples",
            "-n",
            "1",
            "--output",
            "json",
        ],
    )
    .ok();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["server"], server.base.as_str());
    assert_eq!(doc["query"], "shop.cpu");
    // `shop.cpu` names its type; `--type` applies to selectors and bare names.
    assert_eq!(doc["sample_type"]["kind"], "cpu");
    assert_eq!(doc["total"], 2_000_000_000_i64);
    assert!(doc["from"].as_i64().expect("from") < doc["until"].as_i64().expect("until"));
    assert_eq!(doc["functions"][0]["name"], "parse");
    assert_eq!(doc["functions"][0]["self_percent"], 45.0);

    let out = firewatch(
        &data(""),
        &[
            "top",
            r#"{service_name="shop"}"#,
            "--server",
            &server.base,
            "--type",
            "samples",
            "--output",
            "json",
        ],
    )
    .ok();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["sample_type"]["kind"], "samples");
    assert_eq!(doc["total"], 200);
}

#[test]
fn tenants_see_only_their_own_data() {
    let server = crate::live::Server::start();
    server.ingest_as(
        Some("team-a"),
        "private.cpu",
        "now-5m",
        "now-4m",
        "main;secret 5\n",
    );
    let dir = tempdir();
    let out = firewatch(
        dir.path(),
        &[
            "top",
            "private.cpu",
            "--server",
            &server.base,
            "--tenant",
            "team-a",
        ],
    )
    .ok();
    assert!(out.contains("  secret\n"), "{out}");
    let run = firewatch(
        dir.path(),
        &["top", "private.cpu", "--server", &server.base],
    );
    let err = crate::support::error_line(&run, 1);
    assert!(
        err.starts_with("error: private.cpu (now-1h to now): no samples of type \"cpu\""),
        "{err}"
    );
}
