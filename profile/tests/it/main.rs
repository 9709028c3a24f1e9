//! Integration tests of firewatch-profile: formats, limits, operations, trees.

mod support;

mod diff;
mod formats;
mod limits;
mod ops;
mod properties;
mod tree;
mod wire;
