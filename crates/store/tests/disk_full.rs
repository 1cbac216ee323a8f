//! A full disk: writes fail with a clear error while it is full, and resume once space is
//! freed, without reopening the store by hand; nothing acknowledged is lost.
//!
//! It mounts a small tmpfs, so it needs root: a plain `cargo test` ignores it, and `.ci/run`
//! runs it with `-- --ignored`.

#[path = "../../../protocol/tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use passalong_protocol::{Attestation, Rule};
use passalong_store::{Status, Store, StoreError};

const NOW: u64 = T0 + 400 * DAY_MS;

/// A tmpfs of `mib` MiB, unmounted when dropped.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).expect("a mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount a tmpfs (this test needs root)");
        Tmpfs(path, dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system with `filler` until a write fails.
fn fill(filler: &Path) {
    let mut f = std::fs::File::create(filler).expect("create the filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

fn envs(atts: &[Attestation]) -> Vec<&[u8]> {
    atts.iter().map(|a| a.bytes.as_slice()).collect()
}

#[test]
#[ignore = "needs root (mounts a tmpfs): .ci/run runs it"]
fn writes_resume_once_space_is_freed() {
    let fs = Tmpfs::mount(32);
    let (s, e) = (key(1), key(5));
    let o = offer(&s, policy(Rule::Geometric { r_bps: 5000 }, 1_000), T0);
    let sale = |i: u64| {
        receipt(
            &s,
            &o,
            &format!("order-{i}"),
            1_000,
            e.public(),
            None,
            T0 + i,
        )
    };
    let st = Store::open(fs.path().join("store")).expect("open the store");
    let first: Vec<Attestation> = std::iter::once(o.clone())
        .chain((1..50).map(sale))
        .collect();
    let acks = st.ingest(&envs(&first), NOW).expect("room on the disk");
    assert!(acks.iter().all(|a| a.status == Status::Valid));

    // The disk fills up: every write fails with an I/O error (or, once the store tried to
    // reopen, with the error of that), and keeps failing.
    let filler = fs.path().join("filler");
    fill(&filler);
    let mut failed = 0;
    for round in 0..20u64 {
        let batch: Vec<Attestation> = (0..200).map(|i| sale(1_000 + round * 200 + i)).collect();
        match st.ingest(&envs(&batch), NOW) {
            Err(StoreError::Io(_) | StoreError::Open { .. }) => failed += 1,
            Err(other) => panic!("a full disk is an I/O error, not {other}"),
            Ok(_) => {}
        }
    }
    assert!(failed > 0, "a write failed while the disk was full");
    // A checkpoint (its orders' run file, then the tree) fails too, and loses nothing.
    match st.checkpoint() {
        Err(StoreError::Io(_) | StoreError::Open { .. } | StoreError::Closed { .. }) => {}
        other => panic!("a checkpoint on a full disk is an I/O error, not {other:?}"),
    }

    // Space comes back: the next write succeeds without reopening the store by hand.
    std::fs::remove_file(&filler).expect("free the space");
    let later: Vec<Attestation> = (100..150).map(sale).collect();
    let acks = st
        .ingest(&envs(&later), NOW)
        .expect("writes resume once space is free");
    assert!(acks.iter().all(|a| a.status == Status::Valid));
    st.checkpoint().expect("a checkpoint once space is free");
    // What was acknowledged before the disk filled is all there, and the ledger is the one a
    // recompute gives.
    for a in first.iter().chain(&later) {
        assert_eq!(st.status(&a.id).expect("read"), Some(Status::Valid));
    }
    let seller = s.public();
    assert_eq!(
        st.ledger(&seller).expect("ledger"),
        st.recompute_ledger(&seller, NOW).expect("recompute")
    );
    st.close().expect("close");
    let st = Store::open(fs.path().join("store")).expect("reopen");
    for a in first.iter().chain(&later) {
        assert_eq!(st.status(&a.id).expect("read"), Some(Status::Valid));
    }
    assert_eq!(
        st.ledger(&seller).expect("ledger"),
        st.recompute_ledger(&seller, NOW).expect("recompute")
    );
}
