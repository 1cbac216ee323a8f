//! The network crate's integration tests, in one test executable: each file under `tests/`
//! would be an executable of its own, each linking libp2p and the rest of the tree again. A
//! test's name starts with its module (`network::`, `scale::`), so
//! `cargo test -p passalong-net --test net scale::` runs one file's tests.
#![allow(clippy::unwrap_used)]

#[path = "../../../../protocol/tests/common/mod.rs"]
mod common;
mod support;

mod network;
mod relay;
mod scale;
