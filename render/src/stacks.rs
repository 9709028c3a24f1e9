//! Stacks aggregated by function name, written as inferno's folded lines.

use std::collections::HashMap;

use firewatch_profile::Profile;

/// Frame names interned across one or two profiles, and per distinct
/// name-stack one value per column (column 0 alone for a plain graph;
/// before and after for a diff).
#[derive(Default)]
pub(crate) struct Stacks {
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    rows: HashMap<Vec<u32>, [u64; 2]>,
}

/// The largest total handed to inferno; see [`Stacks::fit`].
pub(crate) const MAX_DRAWN: u64 = 1_000_000_000_000_000;

/// Shown for a sample with no frames, as `folded::write` names it, so its
/// value still counts towards the width of the whole.
const NO_FRAMES: &str = "[root]";
/// Shown for a frame whose function has no name.
const UNNAMED: &str = "[unknown]";

impl Stacks {
    /// Adds the positive values of one sample type of `profile` to `column`.
    pub(crate) fn add(&mut self, profile: &Profile, type_index: usize, column: usize) {
        let ids: Vec<u32> = profile.functions().map(|f| self.name_id(f.name)).collect();
        let no_frames = self.name_id(NO_FRAMES);
        let mut key = Vec::with_capacity(64);
        for (stack, values) in profile.samples() {
            let Some(&value) = values.get(type_index) else {
                continue;
            };
            // A flamegraph has no way to draw a negative width.
            let Ok(value) = u64::try_from(value) else {
                continue;
            };
            if value == 0 {
                continue;
            }
            key.clear();
            key.extend(stack.iter().map(|&f| ids[f as usize]));
            if key.is_empty() {
                key.push(no_frames);
            }
            let slot = match self.rows.get_mut(key.as_slice()) {
                Some(row) => &mut row[column],
                None => &mut self.rows.entry(key.clone()).or_default()[column],
            };
            *slot = slot.saturating_add(value);
        }
    }

    /// Sum of one column.
    pub(crate) fn total(&self, column: usize) -> u64 {
        self.rows
            .values()
            .fold(0u64, |acc, row| acc.saturating_add(row[column]))
    }

    /// Multiplies one column by `factor`, rounding each stack to the nearest integer.
    pub(crate) fn scale_column(&mut self, column: usize, factor: f64) {
        for row in self.rows.values_mut() {
            row[column] = (row[column] as f64 * factor).round() as u64;
        }
    }

    /// Divides every value by the smallest power of ten that brings each
    /// column's total to at most [`MAX_DRAWN`], and returns that divisor.
    ///
    /// inferno sums counts in `u64` and scales colour by multiplying deltas
    /// in `isize`, both unchecked: a fleet-wide merge of a week of CPU time
    /// in nanoseconds is enough to overflow them.
    pub(crate) fn fit(&mut self) -> u64 {
        let largest = self.total(0).max(self.total(1));
        let mut divisor = 1u64;
        while largest / divisor > MAX_DRAWN {
            divisor *= 10;
        }
        if divisor > 1 {
            for row in self.rows.values_mut() {
                for v in row.iter_mut() {
                    *v = *v / divisor + u64::from(*v % divisor >= divisor / 2);
                }
            }
        }
        divisor
    }

    /// Folded lines for inferno: `stack after` for a plain graph (column 0),
    /// `stack before after` for a diff.
    ///
    /// inferno merges a frame with its neighbour only when consecutive lines
    /// share it, and its own sort compares whole lines as strings, where a
    /// name like `f1` sorts between `f` and `f;g` and so splits `f` into two
    /// rectangles. Sorting frame by frame keeps each call path contiguous.
    /// The order is reversed because flame-chart mode reverses it back.
    pub(crate) fn lines(&self, diff: bool) -> Vec<String> {
        let mut rows: Vec<(&[u32], [u64; 2])> = self
            .rows
            .iter()
            // In a diff, a stack that vanished has no width to draw; leaving
            // it out also keeps it from washing out the colour scale.
            .filter(|(_, v)| if diff { v[1] > 0 } else { v[0] > 0 })
            .map(|(k, v)| (k.as_slice(), *v))
            .collect();
        let names = &self.names;
        rows.sort_unstable_by(|(a, _), (b, _)| {
            a.iter()
                .map(|&i| names[i as usize].as_str())
                .cmp(b.iter().map(|&i| names[i as usize].as_str()))
        });
        rows.iter()
            .rev()
            .map(|(stack, values)| {
                let mut line = String::with_capacity(stack.len() * 24);
                for (i, &id) in stack.iter().enumerate() {
                    if i > 0 {
                        line.push(';');
                    }
                    line.push_str(&self.names[id as usize]);
                }
                if diff {
                    line.push_str(&format!(" {} {}", values[0], values[1]));
                } else {
                    line.push_str(&format!(" {}", values[0]));
                }
                line
            })
            .collect()
    }

    fn name_id(&mut self, name: &str) -> u32 {
        // Keyed by the escaped name, so names that read the same draw as one frame.
        let name = escape(name);
        if let Some(&id) = self.name_ids.get(&name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.name_ids.insert(name, id);
        id
    }
}

/// Makes a function name safe inside a folded line without changing how it
/// reads: `;` separates frames and inferno takes the last space-separated
/// words as counts (so `f 12` would turn a line into a diff), hence
/// look-alikes for both. Newlines would end the record.
fn escape(name: &str) -> String {
    // inferno trims lines, which would rename a first or last frame with
    // outer whitespace; trimming every name keeps them one frame.
    let name = name.trim();
    if name.is_empty() {
        return UNNAMED.to_owned();
    }
    name.chars()
        .map(|c| match c {
            ';' => '\u{037e}', // GREEK QUESTION MARK, drawn as a semicolon
            ' ' => '\u{00a0}', // NO-BREAK SPACE
            '\n' | '\r' | '\t' => '\u{00a0}',
            // Not allowed in XML 1.0, so a browser would refuse the whole SVG.
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}
