//! The protocol crate's integration tests, in one test executable: each file under `tests/`
//! would be an executable of its own, built and linked separately. A test's name starts with
//! its module (`properties::`, `vectors::`), so
//! `cargo test -p passalong-protocol --test protocol vectors::` runs one file's tests.
//!
//! The builders stay in `tests/common/`, where other crates' tests and unit tests include them
//! by path. Proptest keeps the failures it found in `tests/proptest-regressions/<module>.txt`
//! (beside this directory, because it holds a `main.rs`) and replays them first.

#[path = "../common/mod.rs"]
mod common;

mod no_panic;
mod properties;
mod scenarios;
mod vectors;
