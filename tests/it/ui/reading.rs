//! Reading real-looking stacks in the browser: kernel functions coloured
//! apart and marked `[k]`, long C++ and Rust names simplified on request,
//! the `[truncated stack]` marker explained and hidden on request, the
//! sandwich's tables of direct callers and callees, the baseline and
//! comparison flamegraphs side by side (the palette switched without a new
//! query).

use firewatch_profile::{KERNEL_FILE, Profile, SampleType, TRUNCATED};
use serde_json::json;

use super::browser::Browser;
use super::{checkout_data, now_s, skip};
use crate::support::Server;

const DWARF: &str =
    "llvm::DwarfUnit::addString(llvm::DIE&, llvm::dwarf::Attribute, llvm::StringRef)";
const DROP: &str = "<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop";

/// A CPU profile of `reading` as the agent ships one: C++ and Rust names,
/// a syscall into the kernel, and stacks the unwinder cut short.
fn reading_profile(time_s: i64) -> Vec<u8> {
    let mut p = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    p.period_type = Some(SampleType::new("cpu", "nanoseconds"));
    p.period = 10_000_000;
    p.time_nanos = time_s * 1_000_000_000;
    p.duration_nanos = 10_000_000_000;
    let ms = 10_000_000;
    p.add_named_sample(&["_start", "main", DWARF, DROP], &[40 * ms]);
    let syscall = [
        p.intern_function("_start", "", 0),
        p.intern_function("main", "", 0),
        p.intern_function("read", "", 0),
        p.intern_function("ksys_read", KERNEL_FILE, 0),
        p.intern_function("vfs_read", KERNEL_FILE, 0),
    ];
    p.add_sample(&syscall, &[30 * ms]);
    p.add_named_sample(&[TRUNCATED, "work", "leaf"], &[30 * ms]);
    p.to_pprof_bytes()
}

fn hue(colour: &serde_json::Value) -> f64 {
    let text = colour.as_str().unwrap_or_default();
    text.trim_start_matches("hsl(")
        .split(' ')
        .next()
        .and_then(|h| h.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn ui_names_kernel_frames_and_markers() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    let resp = ureq::post(&format!(
        "{}/api/v1/ingest?service_name=reading",
        server.base
    ))
    .send(&reading_profile(now_s() - 600)[..])
    .expect("ingest");
    assert_eq!(resp.status(), 200);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start("reading").await;
        b.goto(&format!("{}/", server.base)).await;
        assert_eq!(b.settled().await, "ready");
        assert!(b.state("query").await.contains("reading"));

        // Kernel boxes are blue, user boxes warm; the tooltip says where.
        b.wait("!document.getElementById('kernel-legend').hidden", "the kernel legend").await;
        let colour = |name: &str| {
            format!("const g = window.firewatch.graph('flame'); return g.colour(window.firewatch.box('flame', {}).node);", json!(name))
        };
        let kernel = hue(&b.js(&colour("ksys_read")).await);
        let user = hue(&b.js(&colour("read")).await);
        assert!((195.0..=220.0).contains(&kernel), "kernel hue {kernel}");
        assert!((5.0..=50.0).contains(&user), "user hue {user}");
        let (x, y) = b.node("flame", "vfs_read").await.expect("vfs_read is drawn");
        b.hover(x, y).await;
        b.wait("document.getElementById('tooltip').textContent.includes('in the kernel')", "the kernel tooltip").await;
        b.shot("01-kernel-frames").await;

        // The marker says what it means and links the documentation.
        let (x, y) = b.node("flame", TRUNCATED).await.expect("the marker is drawn");
        b.hover(x, y).await;
        b.wait("document.getElementById('tooltip').textContent.includes('stopped unwinding')", "the marker's tooltip").await;
        let doc = b.js("return document.getElementById('truncated-doc').href;").await;
        let anchor = doc.as_str().unwrap_or_default().rsplit_once("docs/").map(|(_, a)| a.to_owned()).unwrap_or_default();
        assert_eq!(anchor, "reading-profiles.md#truncated-stack");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/reading-profiles.md")).expect("the document");
        assert!(text.lines().any(|l| l.starts_with('#') && l.ends_with("`[truncated stack]`")), "its heading");

        // Hidden: the same total, the outermost read frames as roots.
        let before = b.text("#status").await;
        b.click("#hide-truncated").await;
        b.wait("window.firewatch.state.truncated === 'hide' && document.body.dataset.status === 'ready' && window.firewatch.box('flame', '[truncated stack]') === null", "the marker hidden").await;
        let after = b.text("#status").await;
        assert_eq!(before.split(" in ").next(), after.split(" in ").next(), "{before} / {after}");
        assert!(b.node("flame", "work").await.is_some());
        b.shot("02-truncated-hidden").await;

        // The table marks kernel functions; simplified names keep the full one on hover.
        b.click("[data-view=table]").await;
        b.wait("document.querySelectorAll('#top tbody tr').length === 9", "the table without the marker").await;
        let names = b.js("return [...document.querySelectorAll('#top td.name button.link')].map(b => b.textContent);").await;
        let names: Vec<&str> = names.as_array().expect("names").iter().filter_map(|v| v.as_str()).collect();
        assert!(names.contains(&"ksys_read [k]") && names.contains(&"read") && names.contains(&DWARF), "{names:?}");
        assert!(!names.contains(&TRUNCATED));
        b.click("#simplify").await;
        b.wait("window.firewatch.state.names === 'simple' && [...document.querySelectorAll('#top td.name button.link')].some(b => b.textContent === 'DwarfUnit::addString')", "simplified names").await;
        let title = b.js("return [...document.querySelectorAll('#top td.name button.link')].find(b => b.textContent === '<Vec as Drop>::drop').title;").await;
        assert!(title.as_str().unwrap_or_default().starts_with(DROP), "{title}");
        b.shot("03-table-simplified").await;
        b.click("[data-view=flame]").await;
        b.wait("document.body.dataset.status === 'ready' && !document.getElementById('view-flame').hidden", "the flamegraph").await;
        assert_eq!(
            b.js(&format!("return window.firewatch.graph('flame').display({});", json!(DWARF))).await,
            json!("DwarfUnit::addString")
        );
        b.shot("04-flamegraph-simplified").await;
        for (full, short) in [
            ("core::ptr::drop_in_place<foo::Bar>::h0123456789abcdef", "ptr::drop_in_place"),
            ("<rustc_middle::ty::context::CtxtInterners>::intern_ty", "<CtxtInterners>::intern_ty"),
            ("std::vector<int, std::allocator<int> >::push_back(int const&)", "vector::push_back"),
            ("std::function<void (int)>::operator()(int) const", "function::operator()"),
            ("[truncated stack]", "[truncated stack]"),
            ("main", "main"),
        ] {
            assert_eq!(b.js(&format!("return window.firewatch.simplify({});", json!(full))).await, json!(short));
        }
        b.close().await;
    });
    server.stop();
}

#[test]
fn ui_sandwich_tables_and_side_by_side() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    checkout_data(&server.base);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start("sides").await;
        b.goto(&format!("{}/?query=checkout.cpu&from=now-3h&view=sandwich&fn=handle", server.base)).await;
        b.wait("document.querySelectorAll('#callee-table tbody tr').length === 2", "the callee table").await;
        let rows = |id: &str| format!("return [...document.querySelectorAll('#{id} tbody tr')].map(r => r.textContent);");
        let callers = b.js(&rows("caller-table")).await;
        assert_eq!(callers.as_array().map(Vec::len), Some(1), "{callers}");
        assert!(callers[0].as_str().unwrap_or_default().starts_with("serve") && callers[0].as_str().unwrap_or_default().contains("100.00%"), "{callers}");
        let callees = b.js(&rows("callee-table")).await;
        for (i, name) in ["parse", "render"].iter().enumerate() {
            let row = callees[i].as_str().unwrap_or_default();
            assert!(row.starts_with(name) && row.contains("50.00%"), "{callees}");
        }
        b.shot("01-sandwich-tables").await;
        b.click("#callee-table tbody tr:first-child button.link").await;
        b.wait("window.firewatch.state.fn === 'parse' && document.getElementById('fn-summary').textContent.startsWith('parse')", "parse's sandwich").await;

        // Before and after the deploy, side by side: parse went from 30% to 60%.
        b.goto(&format!("{}/?query=checkout.cpu&from=now-2h&view=diff", server.base)).await;
        b.wait("document.body.dataset.status === 'ready' && window.firewatch.box('after', 'parse') !== null", "both sides").await;
        let share = |side: &str| {
            format!("const f = window.firewatch; return f.box({0}, 'parse').w / f.box({0}, 'main').w;", json!(side))
        };
        let before = b.js(&share("before")).await.as_f64().unwrap_or(-1.0);
        let after = b.js(&share("after")).await.as_f64().unwrap_or(-1.0);
        assert!((before - 0.30).abs() < 0.02 && (after - 0.60).abs() < 0.02, "{before} {after}");
        b.shot("02-side-by-side").await;

        // The palette changes colours only: no new query.
        let queries = "return performance.getEntriesByType('resource').filter(e => e.name.includes('/render-diff')).length;";
        let asked = b.js(queries).await;
        b.click("#palette").await;
        b.wait("window.firewatch.state.palette === 'colorblind' && getComputedStyle(document.querySelector('.legend .shrank')).backgroundColor === 'rgb(59, 130, 246)'", "the colour-blind palette").await;
        assert_eq!(b.js(queries).await, asked, "switching the palette fetched again");
        b.shot("03-colour-blind").await;
        b.close().await;
    });
    server.stop();
}

/// The UI reads times as every binary does: each case of
/// firewatch-syntax's table, which its own tests read too.
#[test]
fn ui_reads_times_as_every_binary_does() {
    if skip() {
        return;
    }
    let cases = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../syntax/tests/data/cases.json"
    ))
    .expect("the table of cases");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start("syntax").await;
        b.goto(&format!("{}/", server.base)).await;
        b.wait("window.firewatch && window.firewatch.resolveTime", "the page").await;
        let differ = b
            .js(&format!(
                "const c = {cases}; const read = window.firewatch.resolveTime; const now = c.now_ms; const out = [];
                 for (const [t, ms] of c.times_ms.accepted) if (read(t, now) !== ms) out.push([t, read(t, now), ms]);
                 for (const t of c.times_ms.refused) if (!Number.isNaN(read(t, now))) out.push([t, read(t, now), 'refused']);
                 for (const [d, ms] of c.durations_ms.accepted) if (read('now-' + d, now) !== now - ms) out.push(['now-' + d, read('now-' + d, now), now - ms]);
                 for (const d of c.durations_ms.refused) if (!Number.isNaN(read('now-' + d, now))) out.push(['now-' + d, 'refused']);
                 return out;"
            ))
            .await;
        assert_eq!(differ, json!([]), "the UI reads these otherwise");
        b.close().await;
    });
    server.stop();
}
