//! `firewatch gate`: fails (exit 1) when a function's self share grew by
//! more than a threshold between two profiles, with a markdown report fit
//! for a pull-request comment.

use std::io::Write;
use std::path::Path;

use firewatch_profile::diff::FunctionChange;
use serde_json::json;

use crate::compare::{Comparison, change_json, change_table, points};
use crate::diff::head;
use crate::error::{Error, Result, output};
use crate::{Output, markdown, progress};

/// Offending functions listed in the report at most; a profile that changed
/// shape entirely would otherwise make a comment nobody reads.
const MAX_VIOLATIONS_SHOWN: usize = 100;

/// Whether the gate passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No function grew past the threshold.
    Passed,
    /// At least one did.
    Failed,
}

/// Parses `--max-regression`: percentage points of self share, written
/// `5%`, `5`, `0.5%` or `5pp`.
pub(crate) fn parse_threshold(text: &str) -> Result<f64> {
    let t = text.trim();
    let number = t
        .strip_suffix('%')
        .or_else(|| t.strip_suffix("pp"))
        .unwrap_or(t)
        .trim();
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(Error::Usage(format!(
            "--max-regression: expected percentage points of self share from 0 to 100, \
             such as 5% or 0.5%, got {text:?}"
        ))),
    }
}

/// Compares, prints the report (markdown, or JSON with `--output json`),
/// writes the markdown to `report` when given, and says whether the gate passed.
pub(crate) fn run(
    comparison: &Comparison,
    max_points: f64,
    limit: usize,
    format: Output,
    report: Option<&Path>,
) -> Result<Verdict> {
    let violations: Vec<&FunctionChange> = comparison
        .regressions
        .iter()
        .filter(|c| c.delta_self * 100.0 > max_points)
        .collect();
    let verdict = if violations.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    let text = markdown_report(comparison, &violations, max_points, limit);
    if let Some(path) = report {
        std::fs::write(path, &text).map_err(|e| Error::file(path, "cannot write", e))?;
        progress(&format!("wrote {}", path.display()));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Output::Text => out.write_all(text.as_bytes()).map_err(output)?,
        Output::Json => {
            let doc = json!({
                "passed": verdict == Verdict::Passed,
                "max_regression_points": max_points,
                "base": comparison.base.to_json(),
                "new": comparison.new.to_json(),
                "violations": violations.iter().map(|c| change_json(c)).collect::<Vec<_>>(),
                "regressions": head(&comparison.regressions, limit).iter().map(change_json).collect::<Vec<_>>(),
                "improvements": head(&comparison.improvements, limit).iter().map(change_json).collect::<Vec<_>>(),
            });
            serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| output(e.into()))?;
            writeln!(out).map_err(output)?;
        }
    }
    out.flush().map_err(output)?;
    if verdict == Verdict::Failed {
        progress(&format!(
            "gate failed: {} function(s) grew by more than {max_points} percentage points",
            violations.len()
        ));
    }
    Ok(verdict)
}

/// The report: verdict, both sides, offending functions, the largest
/// growth within the threshold, and the top improvements.
fn markdown_report(
    c: &Comparison,
    violations: &[&FunctionChange],
    max_points: f64,
    limit: usize,
) -> String {
    let threshold = format!("{max_points:.2} pp");
    let mut md = String::new();
    let (verdict, summary) = if violations.is_empty() {
        let largest = match c.regressions.first() {
            Some(r) => format!(
                "the largest growth is {} ({})",
                markdown::code(&r.name),
                points(r.delta_self)
            ),
            None => "no function's share grew".to_owned(),
        };
        (
            "passed",
            format!("No function's self share grew by more than {threshold}; {largest}."),
        )
    } else {
        (
            "failed",
            format!(
                "{} function{} self share grew by more than {threshold}.",
                violations.len(),
                if violations.len() == 1 { "'s" } else { "s'" }
            ),
        )
    };
    md.push_str(&format!(
        "## Firewatch profile gate: {verdict}\n\n{summary}\n\n"
    ));
    md.push_str(&format!(
        "- base: {}\n- new: {}\n\nSelf share is the part of each profile's total spent in the \
         function itself; changes are in percentage points (pp).\n",
        side(&c.base),
        side(&c.new)
    ));
    if !violations.is_empty() {
        let shown = &violations[..violations.len().min(MAX_VIOLATIONS_SHOWN)];
        md.push_str(&format!("\n### Regressions over {threshold}\n\n"));
        md.push_str(&change_table(shown.iter().copied()));
        if shown.len() < violations.len() {
            md.push_str(&format!(
                "\n... and {} more.\n",
                violations.len() - shown.len()
            ));
        }
    }
    let within: Vec<&FunctionChange> = c
        .regressions
        .iter()
        .filter(|r| r.delta_self * 100.0 <= max_points)
        .collect();
    if !within.is_empty() {
        md.push_str(&format!("\n### Largest growth within {threshold}\n\n"));
        let shown = &within[..within.len().min(limit.max(1))];
        md.push_str(&change_table(shown.iter().copied()));
    }
    md.push_str("\n### Top improvements\n\n");
    if c.improvements.is_empty() {
        md.push_str("None.\n");
    } else {
        let shown = head(&c.improvements, limit.max(1));
        md.push_str(&change_table(shown.iter()));
    }
    md
}

fn side(s: &crate::compare::Side) -> String {
    let t = &s.profile.sample_types()[s.column];
    format!(
        "{}, {} ({}), total {}",
        markdown::code(&s.label),
        crate::printable(&t.kind),
        crate::printable(&t.unit),
        firewatch_render::format_value(s.profile.total(s.column), &t.unit)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        for (text, want) in [
            ("5%", 5.0),
            ("5", 5.0),
            ("0.5%", 0.5),
            ("2pp", 2.0),
            (" 10 % ", 10.0),
        ] {
            assert_eq!(parse_threshold(text).expect(text), want, "{text}");
        }
        for bad in ["", "abc", "-1%", "101", "NaN", "inf%", "5%%"] {
            let e = parse_threshold(bad).expect_err(bad);
            assert!(e.is_usage(), "{bad}");
        }
    }
}
