//! What does not count is kept within bounds: held attestations within a horizon, pending ones
//! for a time and up to a count, invalid ids likewise, all from a `now` the test passes; what
//! expires is gone from disk (with its index and waiter keys) and stays gone after a restart.

use crate::common::*;
use crate::raw_open;
use passalong_protocol::{Attestation, Id, Rule};
use passalong_store::keyspace::{HELD, INVALID, INVALID_AT, PENDING, WAITER};
use passalong_store::{
    ExpiryLimits, NotKept, Status, Store, Unsettled, HELD_HORIZON_MS, INVALID_TTL_MS,
    PENDING_TTL_MS,
};

const NOW: u64 = T0 + 400 * DAY_MS;
const HOUR_MS: u64 = 3_600_000;

/// An offer and two referrals down from it.
fn chain(t: u64) -> Vec<Attestation> {
    let (s, b, c) = (key(1), key(2), key(3));
    let o = offer(&s, policy(Rule::Direct, 1_000), t);
    let rb = refer(&b, &o, None, t + 1);
    let rc = refer(&c, &o, Some(&rb), t + 2);
    vec![o, rb, rc]
}

/// A referral of an offer no node holds: pending for good, unless it expires.
fn orphan(n: u64, t: u64) -> Attestation {
    let mut offer = [0xEE; 32];
    offer[..8].copy_from_slice(&n.to_be_bytes());
    refer_full(&key(9), Id(offer), None, None, None, t)
}

/// An envelope that fails to decode: invalid.
fn garbage(n: u64) -> Vec<u8> {
    let mut g = vec![0xA5; 80];
    g[..8].copy_from_slice(&n.to_be_bytes());
    g
}

/// Keys under a prefix, read from the files after the store is closed.
fn raw_count(dir: &std::path::Path, prefix: u8) -> usize {
    let db = raw_open(dir);
    db.scan_prefix([prefix]).count()
}

fn unsettled(pending: u64, held: u64, invalid: u64) -> Unsettled {
    Unsettled {
        pending,
        held,
        invalid,
    }
}

/// (a) Held: kept when its release is within the horizon of the `now` passed, answered held
/// but not kept beyond it (not invalid: offered again once its time nears, it is kept), and at
/// most `max_held`, the ones released last dropped first.
#[test]
fn held_attestations_are_kept_within_the_horizon_and_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    let atts = chain(T0);
    let until = T0 - 120_000;
    // Two days ahead: held, not kept.
    let far = T0 - 2 * DAY_MS;
    let acks = st.ingest(&[&atts[0].bytes], far).unwrap();
    assert_eq!(acks[0].status, Status::Held { until_ms: until });
    assert_eq!(acks[0].not_kept, Some(NotKept::TooFarAhead));
    assert_eq!(st.status(&atts[0].id).unwrap(), None);
    assert_eq!(st.unsettled().unwrap(), unsettled(0, 0, 0));
    // Sent again within the horizon: kept, and released when its time comes.
    let near = until - HELD_HORIZON_MS;
    let acks = st.ingest(&[&atts[0].bytes], near).unwrap();
    assert_eq!(
        (acks[0].status.clone(), acks[0].not_kept, acks[0].duplicate),
        (Status::Held { until_ms: until }, None, false)
    );
    assert_eq!(st.unsettled().unwrap(), unsettled(0, 1, 0));
    st.tick(until).unwrap();
    assert_eq!(st.status(&atts[0].id).unwrap(), Some(Status::Valid));
    assert_eq!(st.unsettled().unwrap(), unsettled(0, 0, 0));

    // The cap: five held, three kept, those released first.
    st.set_expiry_limits(ExpiryLimits {
        max_held: 3,
        ..ExpiryLimits::default()
    });
    let held: Vec<Attestation> = (0..5).map(|i| orphan(i, NOW + (5 - i) * HOUR_MS)).collect();
    for a in &held {
        st.ingest(&[&a.bytes], NOW).unwrap();
    }
    assert_eq!(st.unsettled().unwrap(), unsettled(0, 3, 0));
    for (i, a) in held.iter().enumerate() {
        let kept = st.status(&a.id).unwrap().is_some();
        assert_eq!(kept, i >= 2, "held {i} (released last: dropped first)");
    }
    drop(st);
    assert_eq!(raw_count(dir.path(), HELD), 3);
}

/// (b) Pending: dropped `PENDING_TTL_MS` after it became pending, with its index and waiter
/// keys, not before; gone after a restart; sent again with its parents, it is valid. One that
/// became valid in time is not touched. At most `max_pending`, the oldest dropped first.
#[test]
fn pending_attestations_expire_after_their_ttl_and_within_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let atts = chain(T0);
    {
        let st = Store::open(dir.path()).unwrap();
        // rc waits for the offer and rb; rb alone waits for the offer and is then unblocked.
        let acks = st.ingest(&[&atts[2].bytes], NOW).unwrap();
        assert!(matches!(acks[0].status, Status::Pending { .. }));
        st.ingest(&[&atts[1].bytes], NOW + HOUR_MS).unwrap();
        assert_eq!(st.unsettled().unwrap(), unsettled(2, 0, 0));
        assert_eq!(
            st.next_release_ms().unwrap(),
            Some(0),
            "an expiry pass is due once after opening"
        );
        assert_eq!(
            st.expire(NOW + PENDING_TTL_MS - 1).unwrap(),
            Unsettled::default()
        );
        assert_eq!(
            st.next_release_ms().unwrap(),
            Some(NOW + PENDING_TTL_MS),
            "tick is due when the oldest expires"
        );
        assert_eq!(st.expire(NOW + PENDING_TTL_MS).unwrap(), unsettled(1, 0, 0));
        assert_eq!(st.status(&atts[2].id).unwrap(), None);
        assert!(st.status(&atts[1].id).unwrap().is_some());
        // The offer arrives before rb expires: rb is valid, its index key goes.
        let acks = st.ingest(&[&atts[0].bytes], NOW + 2 * HOUR_MS).unwrap();
        assert_eq!(acks.len(), 2);
        assert!(acks.iter().all(|a| a.status == Status::Valid));
        assert_eq!(st.unsettled().unwrap(), unsettled(0, 0, 0));
        assert_eq!(
            st.expire(NOW + 10 * PENDING_TTL_MS).unwrap(),
            Unsettled::default()
        );
        assert_eq!(st.status(&atts[1].id).unwrap(), Some(Status::Valid));
    }
    for prefix in [PENDING, WAITER] {
        assert_eq!(
            raw_count(dir.path(), prefix),
            0,
            "prefix {}",
            prefix as char
        );
    }
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.status(&atts[2].id).unwrap(), None, "not resurrected");
    // Offered again, with its parents held now: valid.
    let acks = st
        .ingest(&[&atts[2].bytes], NOW + 3 * PENDING_TTL_MS)
        .unwrap();
    assert_eq!(
        (acks[0].status.clone(), acks[0].duplicate),
        (Status::Valid, false)
    );

    // The cap: five orphans received an hour apart, three kept (the newest).
    st.set_expiry_limits(ExpiryLimits {
        max_pending: 3,
        ..ExpiryLimits::default()
    });
    let orphans: Vec<Attestation> = (0..5).map(|i| orphan(i, NOW)).collect();
    for (i, a) in orphans.iter().enumerate() {
        st.ingest(&[&a.bytes], NOW + i as u64 * HOUR_MS).unwrap();
    }
    assert_eq!(st.unsettled().unwrap(), unsettled(3, 0, 0));
    for (i, a) in orphans.iter().enumerate() {
        assert_eq!(st.status(&a.id).unwrap().is_some(), i >= 2, "orphan {i}");
    }
    // In one call over the cap, too.
    let more: Vec<Attestation> = (10..20).map(|i| orphan(i, NOW)).collect();
    let envs: Vec<&[u8]> = more.iter().map(|a| a.bytes.as_slice()).collect();
    st.ingest(&envs, NOW + 6 * HOUR_MS).unwrap();
    assert_eq!(st.unsettled().unwrap(), unsettled(3, 0, 0));
    drop(st);
    assert_eq!(raw_count(dir.path(), PENDING), 3);
    assert_eq!(raw_count(dir.path(), WAITER), 3);
}

/// A held attestation released into pending is pending from its release, not its arrival.
#[test]
fn a_released_held_attestation_is_pending_from_its_release() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    let o = orphan(1, NOW + 10 * HOUR_MS);
    st.ingest(&[&o.bytes], NOW).unwrap();
    let release = NOW + 10 * HOUR_MS - 120_000;
    st.tick(release).unwrap();
    assert_eq!(st.unsettled().unwrap(), unsettled(1, 0, 0));
    st.tick(release + PENDING_TTL_MS - 1).unwrap();
    assert!(st.status(&o.id).unwrap().is_some());
    st.tick(release + PENDING_TTL_MS).unwrap();
    assert_eq!(st.status(&o.id).unwrap(), None);
}

/// (c) Invalid ids: at most `max_invalid` (oldest forgotten first), each forgotten
/// `INVALID_TTL_MS` after it was found, in memory as on disk; a forgotten one sent again is
/// found invalid again. An attestation waiting for two ids, one of which turns out invalid, is
/// invalid and leaves no waiter key behind.
#[test]
fn invalid_ids_are_bounded_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    st.set_expiry_limits(ExpiryLimits {
        max_invalid: 3,
        ..ExpiryLimits::default()
    });
    let bad: Vec<Vec<u8>> = (0..5).map(garbage).collect();
    for (i, g) in bad.iter().enumerate() {
        let acks = st.ingest(&[g], NOW + i as u64).unwrap();
        assert!(matches!(acks[0].status, Status::Invalid { .. }));
    }
    let id = |g: &[u8]| Id::of_envelope(g);
    assert_eq!(st.unsettled().unwrap(), unsettled(0, 0, 3));
    assert_eq!(st.invalid_ids_in_memory(), 3);
    for (i, g) in bad.iter().enumerate() {
        assert_eq!(st.status(&id(g)).unwrap().is_some(), i >= 2, "invalid {i}");
    }
    // Forgotten, then sent again: invalid again (not a duplicate).
    let acks = st.ingest(&[&bad[0]], NOW + 10).unwrap();
    assert!(matches!(acks[0].status, Status::Invalid { .. }));
    assert!(!acks[0].duplicate);
    assert_eq!(st.unsettled().unwrap(), unsettled(0, 0, 3));
    assert_eq!(
        st.expire(NOW + 10 + INVALID_TTL_MS).unwrap(),
        unsettled(0, 0, 3)
    );
    assert_eq!(st.invalid_ids_in_memory(), 0);
    assert_eq!(st.status(&id(&bad[0])).unwrap(), None);

    // Something else waits all along: rc, for the offer and rb.
    let atts = chain(T0);
    st.ingest(&[&atts[2].bytes], NOW).unwrap();
    // q waits for x and p; x comes invalid: p, then q, are invalid, and the key by which q
    // waited for p goes with it (before, it stayed for good).
    let (b, c) = (key(2), key(3));
    let broken_offer = garbage(99);
    let x = Id::of_envelope(&broken_offer);
    let p = refer_full(&b, x, None, None, None, T0);
    let q = refer_full(&c, x, Some(p.id), None, None, T0 + 1);
    st.ingest(&[&q.bytes], NOW).unwrap();
    let acks = st.ingest(&[&broken_offer], NOW).unwrap();
    assert!(acks
        .iter()
        .all(|a| matches!(a.status, Status::Invalid { .. })));
    assert!(matches!(
        st.status(&q.id).unwrap(),
        Some(Status::Invalid { .. })
    ));
    assert_eq!(st.unsettled().unwrap(), unsettled(1, 0, 2));
    drop(st);
    // rc still waits: its two waiter keys only.
    assert_eq!(raw_count(dir.path(), WAITER), 2);
    assert_eq!(raw_count(dir.path(), INVALID), 2);
    assert_eq!(raw_count(dir.path(), INVALID_AT), 2);
}

/// Total bytes of keys and values in the files, and of the directory.
fn sizes(dir: &std::path::Path) -> (u64, u64) {
    let db = raw_open(dir);
    let logical = db
        .iter()
        .map(|kv| kv.map(|(k, v)| (k.len() + v.len()) as u64).expect("a read"))
        .sum();
    drop(db);
    fn du(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .expect("the store's directory")
            .map(|e| {
                let e = e.expect("a directory entry");
                let m = e.metadata().expect("a file's metadata");
                if m.is_dir() {
                    du(&e.path())
                } else {
                    use std::os::unix::fs::MetadataExt;
                    eprintln!(
                        "{} len {} blocks {}",
                        e.path().display(),
                        m.len(),
                        m.blocks() * 512
                    );
                    m.len()
                }
            })
            .sum()
    }
    (logical, du(dir))
}

/// 90,000 attestations that never become valid, at `now`: 30,000 pending (their offer never
/// comes), 30,000 held a few hours ahead (then pending: their offer never comes either) and
/// 30,000 invalid, ids from `first`. Checks each kind stays within its cap as they come in.
fn flood(st: &Store, first: u64, now: u64) -> Vec<Attestation> {
    const EACH: u64 = 30_000;
    let limits = st.expiry_limits();
    let pending: Vec<Attestation> = (0..EACH).map(|i| orphan(first + i, now)).collect();
    let held: Vec<Attestation> = (0..EACH)
        .map(|i| orphan(first + EACH + i, now + 6 * HOUR_MS))
        .collect();
    let invalid: Vec<Vec<u8>> = (0..EACH).map(|i| garbage(first + i)).collect();
    for i in (0..EACH as usize).step_by(500) {
        let mut call: Vec<&[u8]> = Vec::new();
        for j in i..i + 500 {
            call.extend([
                pending[j].bytes.as_slice(),
                held[j].bytes.as_slice(),
                invalid[j].as_slice(),
            ]);
        }
        st.ingest(&call, now).expect("an ingest");
        let u = st.unsettled().expect("a read");
        assert!(u.pending <= limits.max_pending && u.held <= limits.max_held);
        assert!(u.invalid <= limits.max_invalid);
    }
    assert_eq!(
        st.unsettled().expect("a read"),
        unsettled(EACH, limits.max_held, EACH)
    );
    pending.into_iter().chain(held).collect()
}

/// 90,000 never-valid attestations leave nothing behind once their times pass (no key, no
/// count, no invalid id in memory, also after a restart); a second flood of 90,000 then
/// reuses the space the first took (sled does not shrink its files, but reuses what is freed):
/// the store's disk is bounded by what the caps allow at once, not by what ever came.
#[test]
fn ninety_thousand_never_valid_attestations_leave_the_store_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = Vec::new();
    for round in 0..2u64 {
        let now = NOW + round * 3 * DAY_MS;
        let st = Store::open(dir.path()).unwrap();
        let flooded = flood(&st, round * 1_000_000, now);
        st.close().unwrap();
        let (logical_full, disk_full) = sizes(dir.path());
        let st = Store::open(dir.path()).unwrap();
        // The held ones are released (pending from then on); everything expires a day later.
        let release = now + 6 * HOUR_MS;
        st.tick(release).unwrap();
        st.tick(release + PENDING_TTL_MS).unwrap();
        assert_eq!(st.unsettled().unwrap(), Unsettled::default());
        assert_eq!(st.invalid_ids_in_memory(), 0);
        assert_eq!(st.next_release_ms().unwrap(), None);
        st.close().unwrap();
        let (logical, disk_after) = sizes(dir.path());
        eprintln!(
            "round {round}: 90,000 never valid: {logical_full} B of keys and values \
             ({disk_full} B on disk) after ingest; {logical} B ({disk_after} B on disk) after \
             expiry"
        );
        assert!(logical < 1_000, "{logical} bytes of keys and values left");
        for prefix in [PENDING, WAITER, HELD, INVALID, INVALID_AT] {
            assert_eq!(
                raw_count(dir.path(), prefix),
                0,
                "prefix {}",
                prefix as char
            );
        }
        // A restart brings nothing back.
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.unsettled().unwrap(), Unsettled::default());
        for a in flooded.iter().step_by(997) {
            assert_eq!(st.status(&a.id).unwrap(), None);
        }
        disk.push(disk_full.max(disk_after));
    }
    assert!(
        disk[1] < disk[0] * 3 / 2,
        "the second flood reuses the first's space: {disk:?} bytes on disk"
    );
}

/// A store written before format 7 (waiter keys without a time, no expiry index, no counts)
/// has its pending attestations and invalid ids indexed when it opens, dated 0: one that
/// becomes valid leaves the index; the rest go at the first expiry.
#[test]
fn a_format_6_store_has_what_does_not_count_indexed() {
    use passalong_store::keyspace::{key as skey, META};
    let dir = tempfile::tempdir().unwrap();
    let atts = chain(T0);
    let orphaned = orphan(1, T0);
    let bad = garbage(1);
    {
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&[&atts[1].bytes, &orphaned.bytes, &bad], NOW)
            .unwrap();
        st.close().unwrap();
    }
    {
        // Back to format 6.
        let db = raw_open(dir.path());
        for prefix in [PENDING, INVALID_AT] {
            for kv in db.scan_prefix([prefix]) {
                db.remove(kv.unwrap().0).unwrap();
            }
        }
        for kv in db.scan_prefix([WAITER]) {
            db.insert(kv.unwrap().0, vec![]).unwrap();
        }
        for name in [&b"pending"[..], b"held", b"invalid"] {
            db.remove(skey(META, &[name])).unwrap();
        }
        db.insert(skey(META, &[b"format"]), 6u32.to_be_bytes().to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.unsettled().unwrap(), unsettled(2, 0, 1));
    // rb's offer arrives: rb is valid, and no longer indexed.
    let acks = st.ingest(&[&atts[0].bytes], NOW).unwrap();
    assert!(acks.iter().all(|a| a.status == Status::Valid));
    assert_eq!(st.unsettled().unwrap(), unsettled(1, 0, 1));
    assert_eq!(st.expire(NOW).unwrap(), unsettled(1, 0, 1));
    assert_eq!(st.status(&orphaned.id).unwrap(), None);
    assert_eq!(st.status(&Id::of_envelope(&bad)).unwrap(), None);
    assert_eq!(st.status(&atts[1].id).unwrap(), Some(Status::Valid));
    drop(st);
    assert_eq!(raw_count(dir.path(), WAITER), 0);
}
