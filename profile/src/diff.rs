//! Comparing two profiles by share of their totals.

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::model::Profile;

/// How one function's share of the profile changed between two profiles.
/// Shares are fractions of each profile's own total (0.25 = 25%), so a
/// busier or longer "after" window does not read as a regression.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionChange {
    /// Function name.
    pub name: String,
    /// Self share before.
    pub before_self: f64,
    /// Self share after.
    pub after_self: f64,
    /// `after_self - before_self`: positive grew (slower), negative shrank.
    pub delta_self: f64,
    /// Total share before.
    pub before_total: f64,
    /// Total share after.
    pub after_total: f64,
}

/// Every function of either profile with its change in self share, sorted
/// by `delta_self` descending (the worst regression first, the best
/// improvement last), ties by name.
pub fn function_changes(
    before: &Profile,
    before_type: usize,
    after: &Profile,
    after_type: usize,
) -> Vec<FunctionChange> {
    let share = |v: i64, total: i64| {
        if total == 0 {
            0.0
        } else {
            v as f64 / total as f64
        }
    };
    let (bt, at) = (before.total(before_type), after.total(after_type));
    let mut rows: Vec<FunctionChange> = Vec::new();
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    for e in before.top_functions(before_type) {
        index.insert(e.name.clone(), rows.len());
        rows.push(FunctionChange {
            before_self: share(e.self_value, bt),
            before_total: share(e.total, bt),
            name: e.name,
            after_self: 0.0,
            delta_self: 0.0,
            after_total: 0.0,
        });
    }
    for e in after.top_functions(after_type) {
        let i = *index.entry(e.name.clone()).or_insert_with(|| {
            rows.push(FunctionChange {
                name: e.name.clone(),
                before_self: 0.0,
                after_self: 0.0,
                delta_self: 0.0,
                before_total: 0.0,
                after_total: 0.0,
            });
            rows.len() - 1
        });
        rows[i].after_self = share(e.self_value, at);
        rows[i].after_total = share(e.total, at);
    }
    for r in &mut rows {
        r.delta_self = r.after_self - r.before_self;
    }
    rows.sort_by(|a, b| {
        b.delta_self
            .total_cmp(&a.delta_self)
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}
