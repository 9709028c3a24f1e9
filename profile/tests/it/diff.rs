use firewatch_profile::diff::function_changes;

use crate::support::folded;

#[test]
fn changes_are_shares_of_each_total() {
    // After doubles the load but only `b` grows in share.
    let before = folded(&[("main;a", 50), ("main;b", 50)]);
    let after = folded(&[("main;a", 50), ("main;b", 150)]);
    let rows = function_changes(&before, 0, &after, 0);
    assert_eq!(rows[0].name, "b");
    assert!((rows[0].before_self - 0.5).abs() < 1e-12);
    assert!((rows[0].after_self - 0.75).abs() < 1e-12);
    assert!((rows[0].delta_self - 0.25).abs() < 1e-12);
    let a = rows.iter().find(|r| r.name == "a").unwrap();
    assert!((a.delta_self + 0.25).abs() < 1e-12);
    assert_eq!(rows.last().unwrap().name, "a");
}

#[test]
fn functions_on_one_side_only_are_listed() {
    let before = folded(&[("main;old", 10)]);
    let after = folded(&[("main;new", 10)]);
    let rows = function_changes(&before, 0, &after, 0);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["new", "main", "old"]);
    assert_eq!(rows[0].before_self, 0.0);
    assert_eq!(rows[2].after_self, 0.0);
}
