//! Two profiles compared by self share per function, for `diff` and `gate`:
//! each side is a local file or a query on the server, and both go through
//! the same code once loaded.

use firewatch_profile::Profile;
use firewatch_profile::diff::{FunctionChange, function_changes};
use firewatch_render::format_value;
use serde_json::json;

use crate::client::{Client, Query, ServerArgs};
use crate::error::{Error, Result};
use crate::input::{Source, choose_sample_type, load};
use crate::top::require_samples;
use crate::window::{TimeArgs, Window};
use crate::{printable, progress};

/// The flags `diff` and `gate` share.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct CompareArgs {
    /// The "before" profile: a pprof or folded file, or a query for the server.
    #[arg(long, value_name = "FILE|QUERY")]
    pub base: String,
    /// The "after" profile: a pprof or folded file, or a query for the server.
    #[arg(long = "new", value_name = "FILE|QUERY")]
    pub new: String,
    /// Start of the base query's window [default: --from].
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub base_from: Option<String>,
    /// End of the base query's window [default: --until].
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub base_until: Option<String>,
    /// Start of the new query's window [default: --from].
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub new_from: Option<String>,
    /// End of the new query's window [default: --until].
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub new_until: Option<String>,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Sample type: for files the column to compare (default `cpu` if
    /// present, else the first); for queries the profile type (default `cpu`).
    #[arg(long = "type", visible_alias = "sample-type", value_name = "TYPE")]
    pub profile_type: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// One loaded side.
pub(crate) struct Side {
    /// The file or the query and window, for people.
    pub label: String,
    /// The profile.
    pub profile: Profile,
    /// The compared column.
    pub column: usize,
}

impl Side {
    /// The side as JSON: where it came from, its sample type and total.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let t = &self.profile.sample_types()[self.column];
        json!({
            "source": self.label,
            "sample_type": { "kind": t.kind, "unit": t.unit },
            "total": self.profile.total(self.column),
        })
    }

    /// `label, kind (unit), total 1.50 s`.
    pub(crate) fn summary(&self) -> String {
        let t = &self.profile.sample_types()[self.column];
        format!(
            "{}, {} ({}), total {}",
            printable(&self.label),
            printable(&t.kind),
            printable(&t.unit),
            format_value(self.profile.total(self.column), &t.unit)
        )
    }
}

/// Both sides and how every function's self share changed.
pub(crate) struct Comparison {
    /// Before.
    pub base: Side,
    /// After.
    pub new: Side,
    /// Functions whose self share grew, the largest growth first.
    pub regressions: Vec<FunctionChange>,
    /// Functions whose self share shrank, the largest drop first.
    pub improvements: Vec<FunctionChange>,
}

/// Changes smaller than this are float noise, not a change.
const EPSILON: f64 = 1e-12;

impl Comparison {
    /// Loads both sides (the server is asked only for query sides) and
    /// compares them.
    pub(crate) fn load(args: &CompareArgs) -> Result<Comparison> {
        let (base_source, new_source) = (Source::classify(&args.base), Source::classify(&args.new));
        let needs_server = [&base_source, &new_source]
            .iter()
            .any(|s| matches!(s, Source::Query(_)));
        let client = if needs_server {
            Some(Client::new(&args.server)?)
        } else {
            None
        };
        // One "now" for both windows, so `now-1h` means the same on both sides.
        let now = firewatch_syntax::now_ms();
        let window = |from: &Option<String>, until: &Option<String>, flags| {
            Window::resolve(
                from.as_deref().unwrap_or(&args.time.from),
                until.as_deref().unwrap_or(&args.time.until),
                flags,
                now,
            )
        };
        let base_window = window(
            &args.base_from,
            &args.base_until,
            ("--base-from", "--base-until"),
        );
        let new_window = window(
            &args.new_from,
            &args.new_until,
            ("--new-from", "--new-until"),
        );
        let kind = args.profile_type.as_deref();
        let base = load_side("base", base_source, base_window, kind, client.as_ref())?;
        let new = load_side("new", new_source, new_window, kind, client.as_ref())?;
        let (bt, nt) = (
            &base.profile.sample_types()[base.column],
            &new.profile.sample_types()[new.column],
        );
        if bt.kind != nt.kind {
            // Shares are comparable across types, but the reader should know.
            progress(&format!(
                "note: comparing {} (base) with {} (new), each as shares of its own total",
                printable(&bt.kind),
                printable(&nt.kind)
            ));
        }
        Ok(Comparison::of(base, new))
    }

    /// Compares two loaded sides.
    pub(crate) fn of(base: Side, new: Side) -> Comparison {
        let changes = function_changes(&base.profile, base.column, &new.profile, new.column);
        // `function_changes` sorts by growth, largest first: regressions are
        // its head, improvements its tail read backwards.
        let regressions: Vec<FunctionChange> = changes
            .iter()
            .filter(|c| c.delta_self > EPSILON)
            .cloned()
            .collect();
        let improvements: Vec<FunctionChange> = changes
            .iter()
            .rev()
            .filter(|c| c.delta_self < -EPSILON)
            .cloned()
            .collect();
        Comparison {
            base,
            new,
            regressions,
            improvements,
        }
    }
}

/// Loads one side; the window applies to queries only.
fn load_side(
    name: &str,
    source: Source,
    window: Result<Window>,
    kind: Option<&str>,
    client: Option<&Client>,
) -> Result<Side> {
    match source {
        Source::File(path) => {
            let label = path.display().to_string();
            let loaded = load(&path)?;
            let column = choose_sample_type(&loaded.profile, kind, &label)?;
            if loaded.profile.total(column) == 0 {
                return Err(Error::invalid(
                    label,
                    "the profile has no samples to compare",
                ));
            }
            Ok(Side {
                label,
                profile: loaded.profile,
                column,
            })
        }
        Source::Query(text) => {
            let client = client.ok_or_else(|| Error::Usage("no server for the query".into()))?;
            let query = Query {
                query: text,
                profile_type: kind.unwrap_or("cpu").to_owned(),
                window: window?,
            };
            progress(&format!(
                "fetching {name}: {} from {}",
                query.describe(),
                client.base()
            ));
            let profile = client.profile(&query)?;
            require_samples(&profile, &query)?;
            Ok(Side {
                label: query.describe(),
                profile,
                column: 0,
            })
        }
    }
}

/// A share (0.25) as a percentage (`25.00%`).
/// A markdown table of function changes: name, self share before and
/// after, change in points.
pub(crate) fn change_table<'a>(changes: impl Iterator<Item = &'a FunctionChange>) -> String {
    let cells: Vec<Vec<String>> = changes
        .map(|r| {
            vec![
                crate::markdown::code(&r.name),
                share(r.before_self),
                share(r.after_self),
                points(r.delta_self),
            ]
        })
        .collect();
    crate::markdown::table(
        &["function", "before", "after", "change"],
        &[false, true, true, true],
        &cells,
    )
}

pub(crate) fn share(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// A change in share (0.05) in percentage points (`+5.00 pp`).
pub(crate) fn points(delta: f64) -> String {
    let pp = delta * 100.0;
    // Rounds to 0.00 without a sign: "-0.00 pp" reads as a change.
    if pp.abs() < 0.005 {
        "0.00 pp".into()
    } else {
        format!("{pp:+.2} pp")
    }
}

/// A change as JSON, shares in percent.
pub(crate) fn change_json(c: &FunctionChange) -> serde_json::Value {
    // Rounded to a millionth of a point: `0.6 - 0.3` is not 0.3 in binary
    // floating point, and scripts comparing with `== 30` should not care.
    let pct = |fraction: f64| (fraction * 100.0 * 1e6).round() / 1e6;
    json!({
        "name": c.name,
        "before_self_percent": pct(c.before_self),
        "after_self_percent": pct(c.after_self),
        "change_points": pct(c.delta_self),
        "before_total_percent": pct(c.before_total),
        "after_total_percent": pct(c.after_total),
    })
}

#[cfg(test)]
mod tests {
    use firewatch_profile::SampleType;

    use super::*;

    fn side(label: &str, stacks: &[(&[&str], i64)]) -> Side {
        let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
        for (stack, v) in stacks {
            p.add_named_sample(stack, &[*v]);
        }
        Side {
            label: label.into(),
            profile: p,
            column: 0,
        }
    }

    #[test]
    fn regressions_and_improvements_are_ordered_by_size() {
        let base = side(
            "a",
            &[
                (&["main", "a"], 50),
                (&["main", "b"], 30),
                (&["main", "c"], 20),
            ],
        );
        let new = side(
            "b",
            &[
                (&["main", "a"], 20),
                (&["main", "b"], 30),
                (&["main", "d"], 50),
            ],
        );
        let c = Comparison::of(base, new);
        let names = |v: &[FunctionChange]| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&c.regressions), ["d"]);
        assert_eq!(names(&c.improvements), ["a", "c"]);
        assert_eq!(points(c.regressions[0].delta_self), "+50.00 pp");
        assert_eq!(points(c.improvements[0].delta_self), "-30.00 pp");
        assert_eq!(points(-1e-9), "0.00 pp");
        assert_eq!(share(0.125), "12.50%");
    }
}
