//! Integration tests of firewatch-render: plain, icicle and differential SVGs.

mod diff;
mod flame;
mod support;
