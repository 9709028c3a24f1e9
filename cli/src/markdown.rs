//! Markdown pieces for reports meant for pull-request comments and files.

use crate::printable;

/// `text` as an inline code span that survives a table cell: control
/// characters replaced, pipes escaped (GitHub splits cells on them even
/// inside code), and a fence longer than any run of backticks inside.
pub(crate) fn code(text: &str) -> String {
    let text = printable(text).replace('|', "\\|");
    let longest_run = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run + 1);
    // A span starting or ending with a backtick needs a space to be read.
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// A table; `numeric` columns are right-aligned.
pub(crate) fn table(header: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let rule: Vec<&str> = header
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if numeric.get(i).copied().unwrap_or(false) {
                "--:"
            } else {
                "---"
            }
        })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans() {
        assert_eq!(code("main.hot"), "`main.hot`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("x`y"), "``x`y``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("a\nb"), "`a\u{fffd}b`");
    }

    #[test]
    fn tables() {
        let t = table(
            &["f", "n"],
            &[false, true],
            &[vec!["`a`".into(), "1".into()]],
        );
        assert_eq!(t, "| f | n |\n|---|--:|\n| `a` | 1 |\n");
    }
}
