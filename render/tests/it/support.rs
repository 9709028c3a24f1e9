//! Building small profiles and reading back what the SVG says.

use firewatch_profile::{Profile, SampleType};

/// A one-column profile from `(stack "a;b;c", value)` pairs.
pub fn profile(kind: &str, unit: &str, stacks: &[(&str, i64)]) -> Profile {
    let mut p = Profile::new(vec![SampleType::new(kind, unit)]);
    for (stack, value) in stacks {
        let names: Vec<&str> = stack.split(';').collect();
        p.add_named_sample(&names, &[*value]);
    }
    p
}

/// The tooltips (`<title>` texts) of every drawn frame, in document order.
pub fn titles(svg: &str) -> Vec<String> {
    svg.split("<title>")
        .skip(1)
        .filter_map(|s| s.split_once("</title>").map(|(t, _)| unescape(t)))
        .collect()
}

/// Tooltips of the frames named `name` (the text before ` (`).
pub fn frames<'a>(titles: &'a [String], name: &str) -> Vec<&'a str> {
    titles
        .iter()
        .filter(|t| t.split_once(" (").is_some_and(|(n, _)| n == name))
        .map(String::as_str)
        .collect()
}

/// The `<rect>` that follows a frame's tooltip: its y and fill attributes.
pub fn rect_of(svg: &str, tooltip: &str) -> (f64, String) {
    let escaped = tooltip
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let at = svg
        .find(&format!("<title>{escaped}</title>"))
        .unwrap_or_else(|| panic!("no frame {tooltip:?}"));
    let rect = &svg[at..];
    let rect = &rect[rect.find("<rect").expect("a rect after the title")..];
    let attr = |name: &str| {
        let start = rect.find(&format!(" {name}=\"")).expect("attribute") + name.len() + 3;
        rect[start..start + rect[start..].find('"').expect("closing quote")].to_owned()
    };
    (attr("y").parse().expect("numeric y"), attr("fill"))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
