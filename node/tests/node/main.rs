//! The node's integration tests, in one test executable: each file under `tests/` would be an
//! executable of its own, each linking libp2p, axum and the rest of the tree again. A test's
//! name starts with its module (`cli::`, `nat::`), so
//! `cargo test -p passalong --test node crash::` runs one file's tests, and
//! `cargo test -p passalong --test node -- --ignored nat::` the multi-host tests, as root.

/// The protocol's builders (fixed-seed keys, one function per kind), shared with other crates'
/// tests.
#[path = "../../../protocol/tests/common/mod.rs"]
mod build;
/// The harness that runs the real `passalong` binary.
mod common;

mod browser;
mod cli;
mod communities;
mod community;
mod community_relay;
mod crash;
mod https;
mod key_export;
mod nat;
mod network;
mod own_join;
mod three_nodes;
mod verify;
