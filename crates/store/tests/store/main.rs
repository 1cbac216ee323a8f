//! The store's integration tests, in one binary (each test binary links the whole tree, so
//! one binary builds much faster than one per file): the ledger against the protocol's
//! reference engine (`store`), bounds on what does not count (`expiry`), loose attestations
//! (`loose`), and kill -9 and checkpoints on a store of more than 100,000 attestations
//! (`checkpoints`, over the deterministic `stream`). `disk_full` stays a binary of its own
//! (it needs root, CI runs it by name).

#[path = "../../../../protocol/tests/common/mod.rs"]
mod common;

mod checkpoints;
mod expiry;
mod loose;
mod store;
mod stream;

/// proptest's configuration with `cases` cases, and failures kept next to the test's source
/// file (`<file>.proptest-regressions`, as with one file per binary): proptest's default looks
/// for a `main.rs` above the source and would keep them in `tests/proptest-regressions/`.
fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..proptest::test_runner::Config::default()
    }
}

/// The tree itself, once a dropped store's sled threads let go of its lock.
pub(crate) fn raw_open(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() > deadline => panic!("sled::open: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}
