//! The web UI in a real browser (headless Chromium over WebDriver) against a
//! real server on loopback, with data sent through the ingest API: pick a
//! service, see the flamegraph, hover, zoom, search, the top table, the
//! sandwich, a diff between two windows found from a deploy annotation,
//! a shared URL reloaded, the error states, and a 20,000-node profile.
//! Screenshots land in `target/ui-screenshots/` (see [`browser::screenshot_dir`]).
//!
//! `FIREWATCH_SKIP_BROWSER_TESTS=1` skips them where no Chromium exists.

mod browser;
mod reading;
mod walkthrough;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::{Server, functions_answer};
use browser::Browser;

const CPU: &str = "process_cpu:samples:count:cpu:nanoseconds";

fn skip() -> bool {
    if std::env::var_os("FIREWATCH_SKIP_BROWSER_TESTS").is_some() {
        eprintln!("FIREWATCH_SKIP_BROWSER_TESTS is set: browser test skipped");
        return true;
    }
    false
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Sends folded stacks through Pyroscope's `/ingest` as one profile of
/// `[from, from + 60 s)`.
fn ingest(base: &str, name: &str, from: i64, folded: &str) {
    let url = format!(
        "{base}/ingest?name={}&from={from}&until={}&format=folded&sampleRate=100&spyName=ebpfspy",
        urlencode(name),
        from + 60
    );
    let resp = ureq::post(&url)
        .send(folded.as_bytes())
        .unwrap_or_else(|e| panic!("ingest {name}: {e}"));
    assert_eq!(resp.status(), 200, "ingest {name}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `checkout` runs version 1.4 for the hour before a deploy an hour ago and
/// 1.5 since: `parse` went from 30% to 60% of the time, `render` from 60%
/// to 30%. Returns the deploy time (Unix seconds).
fn checkout_data(base: &str) -> i64 {
    let deploy = now_s() / 60 * 60 - 3600;
    for i in 0..60 {
        let before =
            "main;serve;handle;parse 30\nmain;serve;handle;render 60\nmain;serve;idle 10\n";
        ingest(
            base,
            "checkout.cpu{version=1.4}",
            deploy - 3600 + i * 60,
            before,
        );
        let after = "main;serve;handle;parse 60\nmain;serve;handle;render 30\nmain;serve;idle 10\n";
        ingest(base, "checkout.cpu{version=1.5}", deploy + i * 60, after);
    }
    let resp = ureq::post(&format!("{base}/api/annotations"))
        .header("Content-Type", "application/json")
        .send(
            json!({
                "time": deploy * 1000,
                "text": "deploy checkout 1.5",
                "labels": {"service_name": "checkout"}
            })
            .to_string()
            .as_bytes(),
        )
        .expect("post the deploy annotation");
    assert_eq!(resp.status(), 201);
    deploy
}

fn first_row(table: &str) -> String {
    format!("{table} tbody tr:first-child td.name button.link")
}

/// Every number a reader takes from the page comes from the whole profile,
/// not from the flamegraph truncated for drawing: a real cargo build
/// (3,911 stacks) drawn with 200 nodes still lists its busiest functions
/// with their true self and total, a search states the share of the whole
/// profile, and the sandwich finds a function from part of its name.
#[test]
fn ui_numbers_come_from_the_whole_profile() {
    if skip() {
        return;
    }
    use std::io::Read;
    let mut folded = String::new();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../profile/tests/data/cargo-build.folded.gz"
    );
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture"))
        .read_to_string(&mut folded)
        .expect("gunzip");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    ingest(&server.base, "cargo.cpu", now_s() - 600, &folded);
    let truth = |filter: &str| {
        functions_answer(
            &server.base,
            &[("query", "cargo.cpu"), ("limit", "20"), ("filter", filter)],
        )
    };
    let all = truth("");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start("truth").await;
        let page = format!("{}/?query=cargo.cpu&maxNodes=200", server.base);
        b.goto(&format!("{page}&view=table")).await;
        b.wait("document.querySelectorAll('#top tbody tr').length >= 20", "the table").await;
        // Pyroscope's query form (`cargo.cpu`) names the service and type
        // for the pickers as the server reads it.
        b.wait("document.getElementById('service').value === 'cargo'", "the service picker").await;
        let kind = b.js("return document.getElementById('type').value;").await;
        assert!(kind.as_str().is_some_and(|t| t.contains(":cpu:")), "type picker: {kind}");
        let shown = b
            .js("return [...document.querySelectorAll('#top tbody td.name button.link')].slice(0, 20).map(b => b.textContent);")
            .await;
        let want: Vec<&str> = all["functions"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["name"].as_str().expect("name"))
            .collect();
        assert_eq!(shown, json!(want), "the busiest functions of the whole profile");
        assert!(!want.contains(&"other"));
        let count = b.text("#table-count").await;
        assert!(count.contains(&format!("of {} functions", all["count"])), "{count}");
        b.shot("01-table-of-the-whole-profile").await;
        // Long names wrap: nothing is wider than the window.
        let wide = b
            .js("return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));")
            .await;
        assert_eq!(wide, json!([]), "wider than the window ({}px)", b.js("return window.innerWidth;").await);
        // Box labels too long for their box keep the method's name.
        assert_eq!(
            b.js("return window.firewatch.fit('llvm::DwarfUnit::addString', 16);").await,
            json!("llvm…::addString")
        );
        assert_eq!(b.js("return window.firewatch.fit('abcdefghij', 5);").await, json!("…ghij"));

        // A search's share is the whole profile's, as the API computes it.
        let intern = truth("intern_ty");
        let share = 100.0 * intern["covered"].as_f64().expect("covered") / intern["total"].as_f64().expect("total");
        b.goto(&format!("{page}&search=intern_ty")).await;
        let text = format!("{share:.2}%");
        b.wait(&format!("document.getElementById('search-result').textContent.includes('{text}')"), "the search share").await;
        b.shot("02-search-share").await;

        // Part of a name finds the function; its sandwich is the whole profile's.
        b.goto(&format!("{page}&view=sandwich&fn=intern_ty")).await;
        b.wait("document.getElementById('fn-summary').textContent.includes('did you mean')", "suggestions").await;
        let summary = b.text("#fn-summary").await;
        assert!(summary.contains("<rustc_middle::ty::context::CtxtInterners>::intern_ty"), "{summary}");
        b.type_into("#fn", "<rustc_middle::ty::context::CtxtInterners>::intern_ty").await;
        b.js("document.getElementById('fn').dispatchEvent(new Event('change')); return true;").await;
        b.wait("document.getElementById('fn-summary').textContent.includes('total')", "the sandwich").await;
        let summary = b.text("#fn-summary").await;
        let row = intern["functions"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["name"] == "<rustc_middle::ty::context::CtxtInterners>::intern_ty")
            .expect("intern_ty's row");
        let total_share = 100.0 * row["total"].as_f64().expect("total") / all["total"].as_f64().expect("total");
        assert!(summary.contains(&format!("{total_share:.2}%")), "{summary} vs {row}");
        b.shot("03-sandwich-found").await;
        let wide = b
            .js("return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).map(e => e.tagName + '#' + e.id);")
            .await;
        assert_eq!(wide, json!([]), "the sandwich's canvases fit the window");

        // perf's kernel frames (`_[k]`) are set apart; simplified names read on a real build.
        b.goto(&format!("{}/?query=cargo.cpu&maxNodes=3000&names=simple", server.base)).await;
        b.wait("document.body.dataset.status === 'ready' && !document.getElementById('kernel-legend').hidden", "the real flamegraph").await;
        let kernel = b.js("const g = window.firewatch.graph('flame'); return g.tree.kernel.size;").await;
        assert!(kernel.as_u64().unwrap_or(0) > 20, "kernel names: {kernel}");
        b.shot("04-real-profile-simplified").await;
        b.close().await;
    });
    server.stop();
}

/// A shared link pins its times; an empty range offers the latest data; a
/// flamegraph drawn within a small budget says so and draws more; a deploy
/// marker compares the selected range split at the deploy, never the future.
#[test]
fn ui_sharing_empty_ranges_budgets_and_deploys() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    let deploy = checkout_data(&server.base);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start("sharing").await;
        let page = format!("{}/?query=%7Bservice_name%3D%22checkout%22%7D&type={CPU}", server.base);

        // Share: relative times become the times they meant.
        b.goto(&format!("{page}&from=now-6h")).await;
        assert_eq!(b.settled().await, "ready");
        b.click("#share").await;
        b.wait("document.getElementById('share').dataset.link", "the link").await;
        let link = b.js("return document.getElementById('share').dataset.link;").await;
        let link = link.as_str().expect("a link").to_owned();
        assert!(!link.contains("now"), "{link}");
        b.goto(&link).await;
        assert_eq!(b.settled().await, "ready");
        let (from, until): (i64, i64) = (
            b.state("from").await.parse().expect("pinned from"),
            b.state("until").await.parse().expect("pinned until"),
        );
        assert!((until - from - 6 * 3600).abs() <= 2, "{from}..{until}");

        // An empty range offers the latest data.
        b.goto(&format!("{page}&from=now-30d&until=now-29d")).await;
        assert_eq!(b.settled().await, "empty");
        b.wait("document.getElementById('jump-latest')", "the offer").await;
        b.shot("01-empty-offers-latest").await;
        b.click("#jump-latest").await;
        b.wait("/^\\d+$/.test(window.firewatch.state.from) && document.body.dataset.status === 'ready'", "the latest data").await;

        // A small node budget says what it folds and draws more on request.
        b.goto(&format!("{page}&maxNodes=3")).await;
        assert_eq!(b.settled().await, "ready");
        b.wait("document.getElementById('more-nodes')", "the offer of more nodes").await;
        assert!(b.text("#status").await.contains("drawn; smaller calls"));
        let (x, y) = b.node("flame", "other").await.expect("an other box");
        b.hover(x, y).await;
        b.wait("document.getElementById('tooltip').textContent.includes('too small to draw')", "what other is").await;
        // It says how many calls it folds (main calls only serve).
        let tip = b.text("#tooltip").await;
        assert!(tip.contains("other: 1 smaller call"), "{tip}");
        b.shot("02-other-explained").await;
        b.click("#more-nodes").await;
        b.wait("Number(window.firewatch.state.maxNodes) > 3 && document.body.dataset.status === 'ready'", "more nodes").await;
        assert!(b.node("flame", "parse").await.is_some(), "parse is drawn");

        // The deploy marker splits the selected range at the deploy.
        let asked = now_s();
        b.goto(&format!("{page}&from=now-3h")).await;
        assert_eq!(b.settled().await, "ready");
        b.wait("window.firewatch.marker(0)", "the deploy marker").await;
        let m = b.js("return window.firewatch.marker(0);").await;
        b.click_at(m["x"].as_f64().expect("x"), m["y"].as_f64().expect("y")).await;
        b.wait("!document.getElementById('annotation-pop').hidden", "the annotation").await;
        b.click("#annotation-compare").await;
        b.wait("window.firewatch.state.view === 'diff' && document.body.dataset.status === 'ready'", "the diff").await;
        let n = |s: String| s.parse::<i64>().expect("pinned time");
        assert_eq!(n(b.state("leftUntil").await), deploy);
        assert_eq!(n(b.state("rightFrom").await), deploy);
        let right_until = n(b.state("rightUntil").await);
        assert!(right_until <= now_s() + 1, "the comparison ends by now: {right_until}");
        // The baseline starts where the range did: 3 h before the page
        // resolved `now-3h`, between the request and now.
        let left_from = n(b.state("leftFrom").await);
        assert!(
            (asked - 3 * 3600 - 1..=now_s() - 3 * 3600 + 1).contains(&left_from),
            "the range's start: {left_from}"
        );
        b.shot("03-deploy-split").await;

        // A drag that starts on a marker selects a range and leaves no
        // tooltip behind.
        b.goto(&format!("{page}&from=now-3h")).await;
        assert_eq!(b.settled().await, "ready");
        b.wait("window.firewatch.marker(0)", "the deploy marker").await;
        let m = b.js("return window.firewatch.marker(0);").await;
        let (mx, my) = (m["x"].as_f64().expect("x"), m["y"].as_f64().expect("y"));
        b.hover(mx, my).await;
        b.wait("!document.getElementById('tooltip').hidden && document.getElementById('tooltip').textContent.includes('deploy')", "the marker's tooltip").await;
        let tl = b.js("return document.getElementById('timeline').getBoundingClientRect().toJSON();").await;
        let right = tl["left"].as_f64().expect("left") + 0.95 * tl["width"].as_f64().expect("width");
        b.drag(mx, right, my).await;
        b.wait("/^\\d+$/.test(window.firewatch.state.from) && document.body.dataset.status === 'ready'", "the dragged range").await;
        assert_eq!(b.js("return document.getElementById('tooltip').hidden;").await, json!(true), "the tooltip went with the drag");
        b.close().await;
    });
    server.stop();
}

/// The first question, "what is busy?": the page opens on the busiest
/// service, the picker lists services busiest first (idle ones marked,
/// name order one click away), and the Services view ranks them with their
/// share and a sparkline; a row opens the service's flamegraph.
#[test]
fn ui_services_overview() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    let now = now_s();
    ingest(&server.base, "alpha.cpu", now - 600, "main;a 10\n");
    ingest(&server.base, "busy.cpu", now - 600, "main;b 70\n");
    ingest(&server.base, "middle.cpu", now - 600, "main;m 20\n");
    // Idle in the last hour: its only profile is three hours old.
    ingest(&server.base, "aardvark.cpu", now - 3 * 3600, "main;z 5\n");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start("services").await;
        b.goto(&format!("{}/", server.base)).await;
        assert_eq!(b.settled().await, "ready");
        assert!(b.state("query").await.contains("busy"), "opens on the busiest service");
        b.wait("document.querySelectorAll('#service option').length === 5 && document.querySelector('#service option:nth-child(2)').value === 'busy'", "the picker by activity").await;
        let options = b
            .js("return [...document.querySelectorAll('#service option')].slice(1).map(o => o.textContent);")
            .await;
        assert_eq!(options, json!(["busy", "middle", "alpha", "aardvark (no samples)"]));
        b.click("#service-order").await;
        b.wait("window.firewatch.state.order === 'name' && document.querySelector('#service option:nth-child(2)').value === 'aardvark'", "name order").await;
        b.click("#service-order").await;

        b.click("[data-view=services]").await;
        b.wait("document.querySelectorAll('#services-table tbody tr').length === 4", "the overview").await;
        let rows = b
            .js("return [...document.querySelectorAll('#services-table tbody tr')].map(r => r.textContent);")
            .await;
        let rows: Vec<String> = rows
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_str().unwrap_or("").to_owned())
            .collect();
        assert!(rows[0].starts_with("busy") && rows[0].contains("70.00%"), "{rows:?}");
        assert!(rows[1].starts_with("middle") && rows[1].contains("20.00%"), "{rows:?}");
        assert!(rows[3].starts_with("aardvark") && rows[3].contains("0.00%"), "{rows:?}");
        assert_eq!(
            b.js("return document.querySelectorAll('#services-table svg.spark polyline').length;").await,
            json!(4)
        );
        b.shot("01-overview").await;
        // One flamegraph of every service, a root box each, by share.
        b.wait("window.firewatch.box('all', 'busy') !== null", "the all-services flamegraph").await;
        let width = |name: &str| format!("return window.firewatch.box('all', {}).w;", json!(name));
        let total = b.js(&width("total")).await.as_f64().unwrap_or(0.0);
        for (name, share) in [("busy", 0.7), ("middle", 0.2), ("alpha", 0.1)] {
            let w = b.js(&width(name)).await.as_f64().unwrap_or(0.0);
            assert!((w / total - share).abs() < 0.01, "{name}: {w} of {total}");
        }
        b.shot("02-all-services").await;
        let (x, y) = b.node("all", "middle").await.expect("middle's root");
        b.click_at(x, y).await;
        b.wait("window.firewatch.graph('all').zoom > 0 && Math.abs(window.firewatch.box('all', 'm').w - window.firewatch.box('all', 'total').w) < 1", "zoomed into middle").await;
        b.click("#services-table tbody tr:nth-child(2) button.link").await;
        b.wait("window.firewatch.state.view === 'flame' && window.firewatch.state.query.includes('middle') && document.body.dataset.status === 'ready'", "middle's flamegraph").await;
        assert!(b.node("flame", "m").await.is_some());
        b.close().await;
    });
    server.stop();
}

#[test]
fn ui_errors_and_empty_states() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    ingest(
        &server.base,
        "checkout.cpu",
        now_s() - 300,
        "main;work 10\n",
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let base = server.base.clone();
    let b = rt.block_on(async {
        let b = Browser::start("errors").await;
        b.goto(&format!("{base}/")).await;
        assert_eq!(b.settled().await, "ready");

        // A query syntax error names its position, with a caret under it.
        b.type_into("#query", "{service_name=\"checkout\",version=}").await;
        b.click("#query-form button[type=submit]").await;
        b.wait("!document.getElementById('query-error').hidden", "the query error").await;
        let error = b.text("#query-error").await;
        assert!(error.contains("position") && error.contains('^'), "query error: {error}");
        assert_eq!(b.js("return document.body.dataset.status;").await, json!("error"));
        b.shot("01-query-error").await;

        // No data in range.
        b.goto(&format!(
            "{base}/?query=%7Bservice_name%3D%22checkout%22%7D&type={CPU}&from=now-30d&until=now-29d"
        ))
        .await;
        assert_eq!(b.settled().await, "empty");
        assert!(b.text("#status").await.contains("No samples"));
        b.shot("02-empty").await;
        b.goto(&format!("{base}/")).await;
        assert_eq!(b.settled().await, "ready");
        b
    });
    // The server goes away under the open page.
    server.stop();
    rt.block_on(async {
        b.click("#presets [data-range='15m']").await;
        b.wait(
            "document.body.dataset.status === 'error'",
            "the unreachable state",
        )
        .await;
        let status = b.text("#status").await;
        assert!(
            status.contains("unreachable") && status.contains("Retry"),
            "status: {status}"
        );
        b.shot("03-unreachable").await;
        b.close().await;
    });
}

#[test]
fn ui_big_flamegraph() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    // 20,000 call-tree nodes under the root, all wide enough to draw: 100
    // call chains 200 frames deep.
    let mut folded = String::new();
    for i in 0..100 {
        let chain: Vec<String> = (0..200).map(|d| format!("f_{i:03}_{d:03}")).collect();
        folded.push_str(&format!("{} {}\n", chain.join(";"), 50 + (i * 37) % 100));
    }
    ingest(&server.base, "big.cpu", now_s() - 600, &folded);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start("big").await;
        b.goto(&format!("{}/?query=%7Bservice_name%3D%22big%22%7D&type={CPU}", server.base)).await;
        assert_eq!(b.settled().await, "ready");
        let nodes = b.js("return window.firewatch.stats().nodes;").await.as_u64().unwrap_or(0);
        assert!(nodes >= 20_000, "{nodes} nodes");
        // Redraw a few times (as a zoom, resize or search does) and take the median.
        let times = b
            .js("const f = window.firewatch; const out = []; \
                 for (let i = 0; i < 9; i++) out.push(f.redraw()); return out;")
            .await;
        let mut ms: Vec<f64> = times.as_array().expect("times").iter().filter_map(|v| v.as_f64()).collect();
        ms.sort_by(f64::total_cmp);
        let drawn = b.js("return window.firewatch.stats().flame.drawn;").await.as_u64().unwrap_or(0);
        assert!(drawn >= 20_000, "every node is wide enough to draw: {drawn} drawn");
        // Hover across the graph with the real mouse.
        let canvas = b.js("return document.getElementById('flame').getBoundingClientRect().toJSON();").await;
        let (left, top, width) = (
            canvas["left"].as_f64().expect("left"),
            canvas["top"].as_f64().expect("top"),
            canvas["width"].as_f64().expect("width"),
        );
        for k in 0..40 {
            b.hover(left + 5.0 + (width - 10.0) * f64::from(k) / 40.0, top + 70.0).await;
        }
        let stats = b.js("return window.firewatch.stats().flame;").await;
        assert!(stats["hovers"].as_u64().unwrap_or(0) >= 20, "hover events reached the canvas: {stats}");
        assert!(!b.text("#tooltip").await.is_empty(), "the tooltip shows");
        println!(
            "UI: flamegraph of {nodes} nodes ({drawn} boxes wide enough to draw) rendered in {:.1} ms median \
             of {} redraws (min {:.1}, max {:.1}; target < 100 ms); hover handler max {:.2} ms over {} moves",
            ms[ms.len() / 2],
            ms.len(),
            ms[0],
            ms[ms.len() - 1],
            stats["hoverMaxMs"].as_f64().unwrap_or(0.0),
            stats["hovers"],
        );
        b.shot("01-20k-nodes").await;
        b.close().await;
    });
    server.stop();
}
