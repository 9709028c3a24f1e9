//! A user's way through the UI on `checkout` (a deploy an hour ago moved
//! time from `render` to `parse`), one scenario per test: the flamegraph
//! and its controls, the label builder and search, the top table and the
//! sandwich, the deploy marker's diff and shared links, and the page's
//! ranges, zoom and colour scheme.

use serde_json::json;

use super::browser::Browser;
use super::{CPU, checkout_data, first_row, ingest, now_s, skip, urlencode};
use crate::support::Server;

/// Runs `scenario` in a fresh browser against a server holding `checkout`
/// (and a small `api` service).
fn on_checkout(prefix: &'static str, scenario: impl AsyncFnOnce(&Browser, &str)) {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("ui.db"), 0);
    checkout_data(&server.base);
    ingest(&server.base, "api.cpu", now_s() - 600, "main;poll 5\n");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let b = Browser::start(prefix).await;
        scenario(&b, &server.base).await;
        b.close().await;
    });
    server.stop();
}

/// checkout's flamegraph over the last hour.
fn checkout(base: &str, extra: &str) -> String {
    format!("{base}/?query=%7Bservice_name%3D%22checkout%22%7D&type={CPU}{extra}")
}

#[test]
fn ui_flamegraph_hover_zoom_keyboard_and_exports() {
    on_checkout("walkthrough", async |b, base| {
        b.goto(&format!("{base}/")).await;
        // The busiest service is picked; the user picks checkout.
        assert_eq!(b.settled().await, "ready");
        b.select("#service", "checkout").await;
        b.wait("window.firewatch.state.query.includes('checkout') && document.body.dataset.status === 'ready'", "checkout's flamegraph").await;
        assert!(b.node("flame", "parse").await.is_some(), "parse is drawn");
        b.shot("01-flamegraph").await;

        // Hover: name, self and total with shares.
        let (x, y) = b.node("flame", "render").await.expect("render is drawn");
        b.hover(x, y).await;
        b.wait("!document.getElementById('tooltip').hidden", "the tooltip")
            .await;
        let tip = b.text("#tooltip").await;
        assert!(
            tip.contains("render") && tip.contains("30.00%"),
            "tooltip: {tip}"
        );
        b.shot("02-hover").await;

        // Zoom by click; the breadcrumb zooms out.
        let (x, y) = b.node("flame", "handle").await.expect("handle is drawn");
        b.click_at(x, y).await;
        b.wait(
            "window.firewatch.state.zoom === 'main;serve;handle'",
            "zoom into handle",
        )
        .await;
        let crumbs = b.text("#breadcrumb").await;
        assert!(
            crumbs.contains("serve") && crumbs.contains("handle"),
            "breadcrumb: {crumbs}"
        );
        let url = b.client.current_url().await.expect("url").to_string();
        assert!(
            url.contains("zoom=main%3Bserve%3Bhandle"),
            "zoom is in the URL: {url}"
        );
        b.shot("03-zoomed").await;
        b.click("#breadcrumb button:first-child").await;
        b.wait("window.firewatch.state.zoom === ''", "zoom out")
            .await;

        // Keyboard: the canvas takes focus, arrows move, Enter zooms.
        b.js("document.getElementById('flame').focus(); return true;")
            .await;
        b.keys(&['\u{e015}', '\u{e015}', '\u{e007}']).await;
        b.wait(
            "window.firewatch.state.zoom === 'main;serve'",
            "keyboard zoom",
        )
        .await;
        b.keys(&['\u{e00c}']).await;
        b.wait(
            "window.firewatch.state.zoom === 'main'",
            "Escape zooms out one level",
        )
        .await;
        b.click("#breadcrumb button:first-child").await;

        // Flame orientation (root at the bottom) and back.
        b.click("#orient").await;
        b.wait(
            "window.firewatch.state.orient === 'flame'",
            "flame orientation",
        )
        .await;
        let (_, main_y) = b.node("flame", "main").await.expect("main is drawn");
        let (_, parse_y) = b.node("flame", "parse").await.expect("parse is drawn");
        assert!(main_y > parse_y, "flame: callers below callees");
        b.click("#orient").await;
        b.wait(
            "window.firewatch.state.orient === 'icicle'",
            "icicle orientation",
        )
        .await;

        // Exports answer what they say.
        for (id, kind) in [
            ("export-svg", "svg"),
            ("export-pprof", "pprof"),
            ("export-folded", "folded"),
        ] {
            let ok = b
                .js(&format!(
                    "return fetch(document.getElementById('{id}').href).then(r => r.ok && r.status === 200)"
                ))
                .await;
            assert_eq!(ok, json!(true), "{kind} export");
        }
    });
}

#[test]
fn ui_label_builder_and_search() {
    on_checkout("builder", async |b, base| {
        b.goto(&checkout(base, "")).await;
        assert_eq!(b.settled().await, "ready");
        // The label builder completes names and values from the server.
        b.click("#label-name").await;
        b.wait("[...document.querySelectorAll('#label-names option')].some(o => o.value === 'version')", "label names").await;
        b.type_into("#label-name", "version").await;
        b.js("document.getElementById('label-name').dispatchEvent(new Event('change')); return true;").await;
        b.wait(
            "[...document.querySelectorAll('#label-values option')].some(o => o.value === '1.5')",
            "label values",
        )
        .await;
        b.type_into("#label-value", "1.5").await;
        b.click("#builder button[type=submit]").await;
        b.wait("window.firewatch.state.query === '{service_name=\"checkout\",version=\"1.5\"}' && document.body.dataset.status === 'ready'", "the filtered query").await;
        b.click("#chips .chip").await;
        b.wait("window.firewatch.state.query === '{service_name=\"checkout\"}' && document.body.dataset.status === 'ready'", "the filter removed").await;

        // Search highlights and states the share it covers.
        b.type_into("#search", "pars").await;
        b.wait(
            "document.getElementById('search-result').textContent.includes('60.00%')",
            "the search share",
        )
        .await;
        b.wait(
            "document.querySelectorAll('#search-list li').length === 1",
            "the matches listed",
        )
        .await;
        assert!(b.text("#search-list").await.contains("parse"));
        b.shot("04-search").await;
        b.click("#search-next").await;
        b.wait(
            "window.firewatch.state.zoom === 'main;serve;handle;parse'",
            "the next match",
        )
        .await;
        b.click("#breadcrumb button:first-child").await;
        b.wait("window.firewatch.state.zoom === ''", "zoom out")
            .await;
    });
}

#[test]
fn ui_top_table_and_sandwich() {
    on_checkout("table", async |b, base| {
        // The top table has a filter of its own (the flamegraph's search
        // stays its own), then sorts.
        b.goto(&checkout(base, "&search=pars&view=table")).await;
        b.wait(
            "document.querySelectorAll('#top tbody tr').length === 6",
            "every function",
        )
        .await;
        assert_eq!(b.text(&first_row("#top")).await, "parse");
        b.type_into("#filter", "ha").await;
        b.wait("window.firewatch.state.filter === 'ha' && document.querySelectorAll('#top tbody tr').length === 1", "the filtered table").await;
        assert_eq!(
            b.state("search").await,
            "pars",
            "the flamegraph's search is its own"
        );
        b.type_into("#filter", "").await;
        b.wait("window.firewatch.state.filter === ''", "filter cleared")
            .await;
        b.wait(
            "document.querySelectorAll('#top tbody tr').length === 6",
            "every function",
        )
        .await;
        assert_eq!(b.text(&first_row("#top")).await, "parse", "sorted by self");
        b.click("#top th button[data-sort=name]").await;
        b.wait(
            "document.querySelector('#top tbody td.name button.link').textContent === 'handle'",
            "sorted by name",
        )
        .await;
        b.shot("05-table").await;

        // A row's finder highlights the function in the flamegraph.
        b.click("#top tbody tr:nth-child(1) td.name button.find")
            .await;
        b.wait(
            "window.firewatch.state.view === 'flame' && window.firewatch.state.search === 'handle'",
            "the function highlighted",
        )
        .await;
        b.wait(
            "document.getElementById('search-result').textContent.includes('90.00%')",
            "handle's share",
        )
        .await;
        b.client.back().await.expect("back to the table");
        b.wait(
            "window.firewatch.state.view === 'table' && document.querySelector('#top tbody tr')",
            "the table again",
        )
        .await;

        // A row opens the function's sandwich: callers above, callees below.
        b.click("#top tbody tr:nth-child(1) td.name button.link")
            .await;
        b.wait(
            "window.firewatch.state.view === 'sandwich' && window.firewatch.state.fn === 'handle'",
            "the sandwich",
        )
        .await;
        // The sandwich is the server's answer: drawn once it arrives.
        b.wait(
            "window.firewatch.box('callers', 'serve')",
            "the callers drawn",
        )
        .await;
        assert!(
            b.node("callers", "serve").await.is_some(),
            "serve calls handle"
        );
        assert!(
            b.node("callees", "parse").await.is_some(),
            "handle calls parse"
        );
        b.shot("06-sandwich").await;
    });
}

#[test]
fn ui_deploy_marker_diff_and_shared_links() {
    on_checkout("deploy", async |b, base| {
        // The deploy marker on the timeline offers the before/after diff.
        b.goto(&checkout(base, "&from=now-6h")).await;
        b.wait(
            "document.body.dataset.status === 'ready' && window.firewatch.marker(0)",
            "the deploy marker",
        )
        .await;
        let m = b.js("return window.firewatch.marker(0);").await;
        let (mx, my) = (m["x"].as_f64().expect("x"), m["y"].as_f64().expect("y"));
        b.click_at(mx, my).await;
        b.wait(
            "!document.getElementById('annotation-pop').hidden",
            "the annotation popover",
        )
        .await;
        assert!(
            b.text("#annotation-text")
                .await
                .contains("deploy checkout 1.5")
        );
        b.shot("07-annotation").await;
        b.click("#annotation-compare").await;
        b.wait("window.firewatch.state.view === 'diff' && document.body.dataset.status === 'ready' && document.querySelector('#regressions tbody td.name')", "the diff").await;
        assert_eq!(
            b.text(&first_row("#regressions")).await,
            "parse",
            "parse regressed most"
        );
        assert_eq!(
            b.text(&first_row("#improvements")).await,
            "render",
            "render improved most"
        );
        let (x, y) = b
            .node("diff", "parse")
            .await
            .expect("parse in the diff flamegraph");
        b.hover(x, y).await;
        b.wait(
            "document.getElementById('tooltip').textContent.includes('+30.00 pp')",
            "the change in the tooltip",
        )
        .await;
        b.shot("08-diff").await;

        // The URL is the view: a reload shows the same diff.
        let shared = b.client.current_url().await.expect("url").to_string();
        b.client.refresh().await.expect("reload");
        b.settled().await;
        b.wait(
            "document.querySelector('#regressions tbody td.name')",
            "the diff after reload",
        )
        .await;
        assert_eq!(b.state("view").await, "diff");
        assert_eq!(b.text(&first_row("#regressions")).await, "parse");
        assert_eq!(
            b.client.current_url().await.expect("url").to_string(),
            shared
        );
        // And in a fresh tab of the same browser, from the link alone.
        b.goto("about:blank").await;
        b.goto(&shared).await;
        b.wait(
            "document.querySelector('#regressions tbody td.name')",
            "the diff from the shared link",
        )
        .await;
        assert_eq!(b.text(&first_row("#regressions")).await, "parse");
        // Back returns to the view before.
        b.goto(&checkout(base, "")).await;
        b.settled().await;
        b.click("[data-view=table]").await;
        b.wait("window.firewatch.state.view === 'table'", "the table")
            .await;
        b.client.back().await.expect("back");
        b.wait(
            "window.firewatch.state.view === 'flame'",
            "back to the flamegraph",
        )
        .await;

        // Two label sets instead of two windows.
        let labels = checkout(
            base,
            &format!(
                "&from=now-3h&view=diff&compare=labels&leftQuery={}&rightQuery={}",
                urlencode("{service_name=\"checkout\",version=\"1.4\"}"),
                urlencode("{service_name=\"checkout\",version=\"1.5\"}"),
            ),
        );
        b.goto(&labels).await;
        b.wait("document.body.dataset.status === 'ready' && document.querySelector('#regressions tbody td.name')", "the label diff").await;
        assert_eq!(b.text(&first_row("#regressions")).await, "parse");
        b.shot("09-diff-labels").await;
    });
}

#[test]
fn ui_dragged_range_page_zoom_and_dark_scheme() {
    on_checkout("views", async |b, base| {
        // A time range picked by dragging on the timeline.
        b.goto(&checkout(base, "&from=now-3h")).await;
        assert_eq!(b.settled().await, "ready");
        let tl = b
            .js("return document.getElementById('timeline').getBoundingClientRect().toJSON();")
            .await;
        let (left, width, top) = (
            tl["left"].as_f64().expect("left"),
            tl["width"].as_f64().expect("width"),
            tl["top"].as_f64().expect("top"),
        );
        b.drag(left + width * 0.5, left + width * 0.9, top + 40.0)
            .await;
        b.wait("/^\\d+$/.test(window.firewatch.state.from) && document.body.dataset.status === 'ready'", "the dragged range").await;
        assert_eq!(
            b.js("return document.getElementById('tooltip').hidden;")
                .await,
            json!(true),
            "no tooltip left after a drag"
        );
        let (from, until): (i64, i64) = (
            b.state("from").await.parse().expect("from"),
            b.state("until").await.parse().expect("until"),
        );
        let span = until - from;
        assert!(
            (3 * 3600 * 4 / 10 - 120..=3 * 3600 * 4 / 10 + 120).contains(&span),
            "40% of 3 h: {span} s"
        );
        b.shot("10-dragged-range").await;

        // Readable at 125% zoom: nothing overflows sideways.
        b.js("document.documentElement.style.zoom = '1.25'; window.dispatchEvent(new Event('resize')); return true;").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let overflow = b
            .js("return document.documentElement.scrollWidth - window.innerWidth;")
            .await;
        assert!(
            overflow.as_f64().unwrap_or(1.0) <= 0.0,
            "horizontal overflow at 125%: {overflow}"
        );
        b.shot("10b-zoom-125").await;
        b.js("document.documentElement.style.zoom = ''; window.dispatchEvent(new Event('resize')); return true;").await;

        // Dark scheme.
        b.click("#theme").await;
        b.click("#theme").await;
        b.wait(
            "document.documentElement.dataset.theme === 'dark'",
            "the dark theme",
        )
        .await;
        let bg = b
            .js("return getComputedStyle(document.body).backgroundColor;")
            .await;
        assert_eq!(bg, json!("rgb(20, 23, 28)"));
        b.click("[data-view=flame]").await;
        b.settled().await;
        b.shot("11-dark").await;
    });
}
