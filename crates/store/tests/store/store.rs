//! The store against the protocol's reference engine: the incrementally kept ledger equals a
//! full recompute for any set of attestations in any order and batching, across reopening;
//! and opening failures are clear errors.

use crate::common::script::*;
use crate::common::*;
use crate::raw_open;
use passalong_protocol::{Attestation, Body, Id, Kind, Rule, State};
use passalong_store::{OfferTotals, SetSummary, Status, Store, StoreError};
use proptest::prelude::*;

const NOW: u64 = T0 + 400 * DAY_MS;

fn chain() -> Vec<Attestation> {
    let (s, b, c, d, e) = (key(1), key(2), key(3), key(4), key(5));
    let o = offer(&s, policy(Rule::Geometric { r_bps: 5000 }, 1_000), T0);
    let rb = refer(&b, &o, None, T0 + 1);
    let rc = refer(&c, &o, Some(&rb), T0 + 2);
    let rd = refer(&d, &o, Some(&rc), T0 + 3);
    let r = receipt(&s, &o, "order-1", 10_000, e.public(), Some(&rd), T0 + 4);
    vec![o, rb, rc, rd, r]
}

/// Receipt `i` of `0..n` through the chain's referral at depth 3 (`chain()[3]`): order
/// `order(i)`, amount `amount(i)`, made at `at(i)`.
fn receipts(
    chain: &[Attestation],
    n: u64,
    order: impl Fn(u64) -> String,
    amount: impl Fn(u64) -> u64,
    at: impl Fn(u64) -> u64,
) -> Vec<Attestation> {
    let (s, e) = (key(1), key(5));
    let (o, rd) = (&chain[0], &chain[3]);
    (0..n)
        .map(|i| receipt(&s, o, &order(i), amount(i), e.public(), Some(rd), at(i)))
        .collect()
}

fn envs(atts: &[Attestation]) -> Vec<&[u8]> {
    atts.iter().map(|a| a.bytes.as_slice()).collect()
}

#[test]
fn ledger_survives_reopening_and_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    {
        let st = Store::open(dir.path()).unwrap();
        let acks = st.ingest(&envs(&atts), NOW).unwrap();
        assert!(acks
            .iter()
            .all(|a| a.status == Status::Valid && !a.duplicate));
        let l = st.ledger(&key(1).public()).unwrap();
        assert_eq!(line(&l, &key(4)), Some((500, 0, 0, 500)));
        assert_eq!(st.valid_count().unwrap(), 5);
        let c = st.ingest_counters();
        assert_eq!(
            c.ledger_updates, 1,
            "one receipt counted: one ledger update"
        );
        assert!(c.ledger_nanos > 0);
    }
    let st = Store::open(dir.path()).unwrap();
    let l = st.ledger(&key(1).public()).unwrap();
    assert_eq!(
        l,
        State::from_envelopes(envs(&atts), NOW).ledger(&key(1).public())
    );
    assert_eq!(l, st.recompute_ledger(&key(1).public(), NOW).unwrap());
    // Duplicates are acknowledged as such and change nothing.
    let acks = st.ingest(&envs(&atts[..2]), NOW).unwrap();
    assert!(acks.iter().all(|a| a.duplicate));
    assert_eq!(st.ledger(&key(1).public()).unwrap(), l);
    assert_eq!(
        st.ingest_counters().ledger_updates,
        0,
        "nothing new counted"
    );
}

#[test]
fn a_closed_store_reopens_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    let st = Store::open(dir.path()).unwrap();
    st.ingest(&envs(&atts), NOW).unwrap();
    let before = st.ledger(&key(1).public()).unwrap();
    st.close().unwrap();
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.ledger(&key(1).public()).unwrap(), before);
    assert_eq!(st.valid_count().unwrap(), 5);
    assert_eq!(st.status(&atts[4].id).unwrap(), Some(Status::Valid));
}

#[test]
fn checkpoints_during_ingest_lose_nothing_and_readers_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut atts = chain();
    atts.extend(receipts(
        &atts,
        200,
        |i| format!("order-x{i}"),
        |_| 10_000,
        |i| T0 + 10 + i,
    ));
    let st = std::sync::Arc::new(Store::open(dir.path()).unwrap());
    st.set_checkpoint_every(20);
    st.ingest(&envs(&atts[..5]), NOW).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (st, done, id) = (st.clone(), done.clone(), atts[0].id);
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(st.status(&id).unwrap(), Some(Status::Valid));
                st.ledger(&key(1).public()).unwrap();
                reads += 1;
            }
            reads
        })
    };
    for chunk in atts[5..].chunks(7) {
        let acks = st.ingest(&envs(chunk), NOW).unwrap();
        assert!(acks.iter().all(|a| a.status == Status::Valid));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert!(st.checkpoints() >= 9, "{} checkpoints", st.checkpoints());
    let expected = State::from_envelopes(envs(&atts), NOW).ledger(&key(1).public());
    assert_eq!(st.ledger(&key(1).public()).unwrap(), expected);
    // Dropped without `close`: what was written since the last checkpoint is replayed.
    drop(st);
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.valid_count().unwrap(), atts.len() as u64);
    assert_eq!(st.ledger(&key(1).public()).unwrap(), expected);
}

#[test]
fn pending_then_valid_and_invalid_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    let atts = chain();
    let acks = st.ingest(&[&atts[2].bytes], NOW).unwrap();
    assert_eq!(
        acks[0].status,
        Status::Pending {
            missing: {
                let mut m = vec![atts[0].id, atts[1].id];
                m.sort();
                m
            }
        }
    );
    let acks = st.ingest(&envs(&atts[..2]), NOW).unwrap();
    assert_eq!(acks.len(), 3, "the referral that waited is reported too");
    assert_eq!(acks[2].id, atts[2].id);
    assert_eq!(acks[2].status, Status::Valid);
    // Sent again together with nothing new: a duplicate, valid now.
    let again = st.ingest(&[&atts[2].bytes], NOW).unwrap();
    assert_eq!(
        (again[0].status.clone(), again[0].duplicate),
        (Status::Valid, true)
    );
    assert_eq!(st.status(&atts[2].id).unwrap(), Some(Status::Valid));
    let mut bad = atts[3].bytes.clone();
    let n = bad.len();
    bad[n - 3] ^= 1;
    let acks = st.ingest(&[&bad], NOW).unwrap();
    assert!(matches!(&acks[0].status, Status::Invalid(r) if r.code == "signature"));
    drop(st);
    let st = Store::open(dir.path()).unwrap();
    let id = passalong_protocol::Id(*blake3::hash(&bad).as_bytes());
    assert!(matches!(
        st.status(&id).unwrap(),
        Some(Status::Invalid { .. })
    ));
    // Sent again after the restart, alone and in a large call: a known invalid duplicate.
    let mut big: Vec<&[u8]> = vec![&bad];
    let more = receipts(
        &atts,
        70,
        |i| format!("order-i{i}"),
        |_| 10,
        |i| T0 + 20 + i,
    );
    big.extend(envs(&more));
    for call in [vec![&bad[..]], big] {
        let acks = st.ingest(&call, NOW).unwrap();
        assert!(acks[0].duplicate);
        assert!(matches!(&acks[0].status, Status::Invalid(r) if r.code == "signature"));
    }
}

/// What became valid in a call is acked with its market, as `market_of` reads it back: in a
/// small call, in a large one (stage 1 on helpers), and for what a call released; nothing for
/// what is pending or was stored before.
#[test]
fn acks_name_the_market_of_what_became_valid() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    let atts = chain();
    let seller = Some(key(1).public());
    let acks = st.ingest(&[&atts[2].bytes], NOW).unwrap();
    assert!(matches!(acks[0].status, Status::Pending { .. }));
    assert_eq!(acks[0].market, None);
    // The offer and the first referral, and the second one they release.
    let acks = st.ingest(&envs(&atts[..2]), NOW).unwrap();
    assert_eq!(acks.len(), 3);
    for a in &acks {
        assert_eq!(a.status, Status::Valid);
        assert_eq!(a.market, seller, "{:?}", a.id);
        assert_eq!(st.market_of(&a.id).unwrap(), seller);
    }
    // A large call: the rest of the chain and 70 receipts, with one already stored.
    let more = receipts(
        &atts,
        70,
        |i| format!("order-m{i}"),
        |_| 10,
        |i| T0 + 30 + i,
    );
    let mut call = envs(&atts[1..]);
    call.extend(envs(&more));
    let acks = st.ingest(&call, NOW).unwrap();
    assert_eq!(acks.len(), call.len());
    assert_eq!((acks[0].duplicate, acks[0].market), (true, None));
    for a in &acks[2..] {
        assert_eq!(
            (&a.status, a.duplicate, a.market),
            (&Status::Valid, false, seller)
        );
    }
}

#[test]
fn a_stored_pending_attestation_sent_again_with_its_parent_is_acked_valid() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    let atts = chain();
    st.ingest(&[&atts[1].bytes], NOW).unwrap();
    let acks = st.ingest(&[&atts[1].bytes, &atts[0].bytes], NOW).unwrap();
    assert_eq!(
        (acks[0].status.clone(), acks[0].duplicate),
        (Status::Valid, true)
    );
    assert_eq!(
        (acks[1].status.clone(), acks[1].duplicate),
        (Status::Valid, false)
    );
}

#[test]
fn held_attestations_are_released_by_tick() {
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    let atts = chain();
    let acks = st.ingest(&envs(&atts), T0 - DAY_MS).unwrap();
    assert!(acks.iter().all(|a| matches!(a.status, Status::Held { .. })));
    assert!(st.ledger(&key(1).public()).unwrap().entries.is_empty());
    let due = st.next_release_ms().unwrap().unwrap();
    assert!(due <= T0);
    st.tick(T0 + 10).unwrap();
    assert_eq!(
        line(&st.ledger(&key(1).public()).unwrap(), &key(4)),
        Some((500, 0, 0, 500))
    );
    assert_eq!(st.next_release_ms().unwrap(), None);
}

/// A store as format 2 wrote it (one ORDER key per receipt, no journal) opens, is upgraded,
/// in more than one batch, and answers as before.
#[test]
fn a_format_2_store_is_upgraded_in_place() {
    use passalong_store::keyspace::{key as skey, META, ORDER};
    let dir = tempfile::tempdir().unwrap();
    let mut atts = chain();
    let (s, e) = (key(1), key(5));
    let (o, rd) = (atts[0].clone(), atts[3].clone());
    // 12,000 orders (more than one upgrade batch), three of them with two receipts.
    atts.extend(receipts(
        &atts,
        12_000,
        |i| format!("order-u{}", i % 11_997),
        |i| 1_000 + i,
        |i| T0 + 10 + i,
    ));
    let seller = s.public();
    let (ledger, equivocations) = {
        let st = Store::open(dir.path()).unwrap();
        for chunk in atts.chunks(1_000) {
            st.ingest(&envs(chunk), NOW).unwrap();
        }
        let l = st.ledger(&seller).unwrap();
        let q = st.equivocations(&seller).unwrap();
        assert_eq!(q.len(), 3);
        st.close().unwrap();
        (l, q)
    };
    {
        // Rewrite as format 2.
        let db = raw_open(dir.path());
        let mut b = sled::Batch::default();
        for kv in db.scan_prefix([ORDER]) {
            let (k, v) = kv.unwrap();
            for id in v.chunks_exact(32) {
                b.insert([&k[..], id].concat(), vec![]);
            }
            b.remove(k);
        }
        b.insert(skey(META, &[b"format"]), 2u32.to_be_bytes().to_vec());
        db.apply_batch(b).unwrap();
        db.flush().unwrap();
        assert!(db.scan_prefix([ORDER]).all(|kv| kv.unwrap().0.len() == 97));
    }
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.ledger(&seller).unwrap(), ledger);
    assert_eq!(st.equivocations(&seller).unwrap(), equivocations);
    // A new receipt for an old order is an equivocation of it.
    let again = receipt(&s, &o, "order-u5", 1, e.public(), Some(&rd), T0 + 50_000);
    st.ingest(&envs(&[again]), NOW).unwrap();
    assert_eq!(st.equivocations(&seller).unwrap().len(), 4);
    drop(st);
    let db = raw_open(dir.path());
    assert!(db.scan_prefix([ORDER]).all(|kv| kv.unwrap().0.len() == 65));
    assert_eq!(
        db.get(skey(META, &[b"format"])).unwrap().unwrap().as_ref(),
        passalong_store::FORMAT_VERSION.to_be_bytes()
    );
}

/// Format 3 kept one market index key per attestation; formats 4 to 15 kept runs in the tree,
/// where a key of format 3 reads as a run of one; format 16 keeps the index in run files. The
/// store opens, is marked with the current format, its index moves out of the tree, and it
/// lists its markets whole and in time order, before and after large calls add to it.
#[test]
fn stores_of_format_3_and_15_open_as_the_current_format() {
    for format in [3u32, 15] {
        a_store_with_its_index_in_the_tree_opens_as_the_current_format(format);
    }
}

#[allow(clippy::unwrap_used)] // a test's body, called once per format
fn a_store_with_its_index_in_the_tree_opens_as_the_current_format(format: u32) {
    use passalong_store::keyspace::{key as skey, MARKET, META};
    let dir = tempfile::tempdir().unwrap();
    let mut atts = chain();
    // Times not in the order of arrival.
    let receipts = receipts(
        &atts,
        300,
        |i| format!("order-m{i}"),
        |i| 1_000 + i,
        |i| T0 + 10 + (i * 7_919) % 300,
    );
    atts.extend(receipts[..100].iter().cloned());
    let seller = key(1).public();
    {
        let st = Store::open(dir.path()).unwrap();
        for a in &atts {
            // As the node's own: anchored as they come, so that no receipt moves a loose
            // referral into a run of its own.
            st.ingest_own(&[&a.bytes], NOW).unwrap();
        }
        st.close().unwrap();
        // Format 3's layout: one index key per attestation in the tree, the kind as value
        // (this build keeps the index in runs, and one key per market in the tree).
        std::fs::remove_dir_all(dir.path().join("markets")).unwrap();
        let db = raw_open(dir.path());
        assert_eq!(db.scan_prefix([MARKET]).count(), 1, "one key per market");
        db.remove(skey(META, &[b"markets"])).unwrap().unwrap();
        db.remove(skey(MARKET, &[&seller.0])).unwrap().unwrap();
        for a in &atts {
            let k = skey(
                MARKET,
                &[&seller.0, &a.body.created_at_ms().to_be_bytes(), &a.id.0],
            );
            db.insert(k, vec![a.kind() as u8]).unwrap();
        }
        db.insert(skey(META, &[b"format"]), format.to_be_bytes().to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let listed = |st: &Store| -> Vec<(u64, passalong_protocol::Id)> {
        st.market(&seller)
            .unwrap()
            .into_iter()
            .map(|(t, id, _)| (t, id))
            .collect()
    };
    let expected = |atts: &[Attestation]| {
        let mut v: Vec<(u64, passalong_protocol::Id)> = atts
            .iter()
            .map(|a| (a.body.created_at_ms(), a.id))
            .collect();
        v.sort();
        v
    };
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(listed(&st), expected(&atts));
    // Large calls, from two threads at once, add runs.
    std::thread::scope(|sc| {
        for part in receipts[100..].chunks(100) {
            let st = &st;
            sc.spawn(move || st.ingest(&envs(part), NOW).unwrap());
        }
    });
    atts.extend(receipts[100..].iter().cloned());
    assert_eq!(listed(&st), expected(&atts));
    let kinds = st.market(&seller).unwrap();
    let of_kind = |k: u8| atts.iter().filter(|a| a.kind() as u8 == k).count();
    for (kind, n) in [(3, 301), (2, of_kind(2))] {
        assert_eq!(
            kinds.iter().filter(|k| k.2 == kind).count(),
            n,
            "kind {kind}"
        );
        assert_eq!(of_kind(kind), n);
    }
    drop(st);
    let db = raw_open(dir.path());
    assert_eq!(
        db.get(skey(META, &[b"format"])).unwrap().unwrap().as_ref(),
        passalong_store::FORMAT_VERSION.to_be_bytes()
    );
    // The index moved to runs: the tree keeps the market's key.
    let keys: Vec<_> = db.scan_prefix([MARKET]).map(|kv| kv.unwrap().0).collect();
    assert_eq!(keys, vec![skey(MARKET, &[&seller.0])]);
}

/// Before format 5 every order had an ORDER key (seller ‖ blake3(order) → its receipt ids);
/// format 5 logs orders in runs read into memory at open. A format 4 store has its orders
/// logged when it opens: a second receipt for an old order is an equivocation, and a smaller
/// id takes over the count, as before.
#[test]
fn a_format_4_store_has_its_orders_logged() {
    use passalong_store::keyspace::{key as skey, META, ORDER, ORDER_LOG};
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    let old = receipts(
        &atts,
        300,
        |i| format!("order-o{i}"),
        |_| 1_000,
        |i| T0 + 10 + i,
    );
    let (s, e) = (key(1), key(5));
    let seller = s.public();
    {
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&atts), NOW).unwrap();
        st.ingest(&envs(&old), NOW).unwrap();
        st.close().unwrap();
        // Rewrite the orders as format 4 kept them.
        let db = raw_open(dir.path());
        for kv in db.scan_prefix([ORDER_LOG]) {
            db.remove(kv.unwrap().0).unwrap();
        }
        for (r, order) in old
            .iter()
            .zip((0..300).map(|i| format!("order-o{i}")))
            .chain([(&atts[4], "order-1".to_string())])
        {
            let k = skey(
                ORDER,
                &[&seller.0, blake3::hash(order.as_bytes()).as_bytes()],
            );
            db.insert(k, &r.id.0[..]).unwrap();
        }
        db.insert(skey(META, &[b"format"]), 4u32.to_be_bytes().to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let st = Store::open(dir.path()).unwrap();
    assert!(st.equivocations(&seller).unwrap().is_empty());
    let before = st.ledger(&seller).unwrap();
    assert_eq!(before, st.recompute_ledger(&seller, NOW).unwrap());
    // Second receipts for old orders, with other amounts: those with a smaller id count
    // instead of the first.
    let (o, rd) = (&atts[0], &atts[3]);
    let again: Vec<Attestation> = (0..40)
        .map(|i| {
            let order = format!("order-o{i}");
            receipt(&s, o, &order, 2_000 + i, e.public(), Some(rd), T0 + 500 + i)
        })
        .collect();
    st.ingest(&envs(&again), NOW).unwrap();
    assert_eq!(st.equivocations(&seller).unwrap().len(), 40);
    let after = st.ledger(&seller).unwrap();
    assert_ne!(after, before, "some second receipts have the smaller id");
    assert_eq!(after, st.recompute_ledger(&seller, NOW).unwrap());
    drop(st);
    let db = raw_open(dir.path());
    // Only the equivocating orders keep their key.
    assert_eq!(db.scan_prefix([ORDER]).count(), 40);
    drop(db);
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.ledger(&seller).unwrap(), after);
    assert_eq!(st.equivocations(&seller).unwrap().len(), 40);
}

/// Format 9 kept no hop records: a chain walk through a referral stored then reads its entry.
/// The store opens, is marked current, pays receipts through its old referrals as the
/// reference does, and keeps a hop record for every referral stored since.
#[test]
fn a_format_9_store_walks_its_old_referrals() {
    use passalong_store::keyspace::{key as skey, HOP, META};
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    let seller = key(1).public();
    {
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&atts[..4]), NOW).unwrap();
        st.close().unwrap();
    }
    let referral_ids: Vec<_> = atts[1..4].iter().map(|a| a.id).collect();
    {
        let st = Store::open(dir.path()).unwrap();
        for id in &referral_ids {
            assert!(st.has_hop_record(id).unwrap(), "one per referral");
        }
        st.close().unwrap();
    }
    // As format 9 left it: no hop record anywhere.
    std::fs::remove_dir_all(dir.path().join("chains")).unwrap();
    let db = raw_open(dir.path());
    assert_eq!(db.scan_prefix([HOP]).count(), 0);
    db.remove(skey(META, &[b"chains"])).unwrap();
    db.insert(skey(META, &[b"format"]), &9u32.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    let st = Store::open(dir.path()).unwrap();
    let more = receipts(
        &atts,
        20,
        |i| format!("old-chain-{i}"),
        |i| 1_000 + i,
        |i| T0 + 10 + i,
    );
    let mut all = atts[..4].to_vec();
    all.extend(more.iter().cloned());
    st.ingest(&envs(&more), NOW).unwrap();
    // A new referral below the old ones, and a receipt through it.
    let (s, f) = (key(1), key(6));
    let rf = refer(&f, &atts[0], Some(&atts[3]), T0 + 100);
    let r = receipt(
        &s,
        &atts[0],
        "new-chain",
        5_000,
        key(7).public(),
        Some(&rf),
        T0 + 101,
    );
    st.ingest(&envs(&[rf.clone(), r.clone()]), NOW).unwrap();
    all.extend([rf.clone(), r]);
    let want = State::from_envelopes(envs(&all), NOW).ledger(&seller);
    assert_eq!(st.ledger(&seller).unwrap(), want);
    assert_eq!(st.recompute_ledger(&seller, NOW).unwrap(), want);
    assert!(st.has_hop_record(&rf.id).unwrap(), "the new referral's");
    for id in &referral_ids {
        assert!(!st.has_hop_record(id).unwrap(), "read from its entry");
    }
    drop(st);
    let db = raw_open(dir.path());
    assert_eq!(
        db.scan_prefix([HOP]).count(),
        0,
        "hop records are kept in runs"
    );
    assert_eq!(
        db.get(skey(META, &[b"format"])).unwrap().unwrap().as_ref(),
        passalong_store::FORMAT_VERSION.to_be_bytes()
    );
}

/// Format 6 keeps offers' totals as book lines; a format 5 store has them computed when it
/// opens, from every counted receipt (an equivocation's smaller id counts), then is marked 6.
#[test]
fn a_format_5_store_has_its_offer_totals_computed() {
    use passalong_store::keyspace::{key as skey, LEDGER, META};
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    let sales = receipts(
        &atts,
        200,
        |i| format!("order-t{i}"),
        |i| 1_000 + i,
        |i| T0 + 10 + i,
    );
    // Second receipts of ten orders: some take over.
    let again = receipts(
        &atts,
        10,
        |i| format!("order-t{i}"),
        |_| 7,
        |i| T0 + 500 + i,
    );
    let offer = atts[0].id;
    let totals = {
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&atts), NOW).unwrap();
        st.ingest(&envs(&sales), NOW).unwrap();
        st.ingest(&envs(&again), NOW).unwrap();
        let t = st.offer_totals(&offer).unwrap();
        assert_eq!(t.sales, 201);
        st.close().unwrap();
        t
    };
    {
        // As format 5 left it: no offer lines.
        let db = raw_open(dir.path());
        let offer_lines: Vec<_> = db
            .scan_prefix([LEDGER])
            .map(|kv| kv.unwrap().0)
            .filter(|k| k[33..36] == [0, 0, 0])
            .collect();
        assert_eq!(offer_lines.len(), 1);
        for k in offer_lines {
            db.remove(k).unwrap();
        }
        db.insert(skey(META, &[b"format"]), 5u32.to_be_bytes().to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.offer_totals(&offer).unwrap(), totals);
    let seller = key(1).public();
    assert_eq!(
        st.ledger(&seller).unwrap(),
        st.recompute_ledger(&seller, NOW).unwrap()
    );
    drop(st);
    let db = raw_open(dir.path());
    assert_eq!(
        db.get(skey(META, &[b"format"])).unwrap().unwrap().as_ref(),
        passalong_store::FORMAT_VERSION.to_be_bytes()
    );
}

/// A damaged ledger journal (a value cut short) is a clear error naming the store.
#[test]
fn a_damaged_ledger_journal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let st = Store::open(dir.path()).unwrap();
        st.set_checkpoint_every(0);
        let atts = chain();
        st.ingest(&envs(&atts), NOW).unwrap();
        let more = receipts(&atts, 1, |_| "order-j".into(), |_| 500, |_| T0 + 9);
        st.ingest(&envs(&more), NOW).unwrap();
        // Dropped without `close`: the lines are only in the journal.
    }
    {
        // A byte of the first record changed (the journal file is beside the tree).
        let path = dir.path().join("journal");
        let mut bytes = std::fs::read(&path).expect("the ingest journaled its ledger lines");
        bytes[20] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let err = Store::open(dir.path()).err().expect("a damaged journal");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("move it aside"), "{msg}");
}

/// sled recovers a prefix of its log after a crash, so a crash can cut the last shipment of
/// an ingest short: opening the store completes it from its journal record, which was synced
/// before any of its keys were written.
#[test]
fn a_shipment_cut_short_by_a_crash_is_completed_at_open() {
    use passalong_store::keyspace::{key as skey, ENTRY, META, REDO};
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    let more = receipts(
        &atts,
        100,
        |i| format!("order-c{i}"),
        |i| 1_000 + i,
        |i| T0 + 10 + i,
    );
    let seller = key(1).public();
    let before = {
        let st = Store::open(dir.path()).unwrap();
        st.set_checkpoint_every(0);
        st.ingest(&envs(&atts), NOW).unwrap();
        st.ingest(&envs(&more), NOW).unwrap();
        st.ledger(&seller).unwrap()
        // Dropped without `close`, as by a crash.
    };
    let last = {
        let db = raw_open(dir.path());
        // No redo record in the tree since format 11: the journal file holds it.
        assert!(db.get([REDO]).unwrap().is_none());
        // The last shipment (a call of 100 ships by 16: receipts 96..100) lost the tree's
        // keys that name them, if any, and its journal number, written last. (Their entries,
        // valid, and their market's index run are not in the tree but in runs, in memory
        // until a checkpoint: the journal has them.)
        let last: Vec<Vec<u8>> = db
            .iter()
            .map(|kv| kv.unwrap().0.to_vec())
            .filter(|k| {
                more[96..]
                    .iter()
                    .any(|r| k.windows(32).any(|w| w == r.id.0))
            })
            .collect();
        for k in &last {
            db.remove(k).unwrap();
        }
        for r in &more[96..] {
            assert!(db.get(skey(ENTRY, &[&r.id.0])).unwrap().is_none());
        }
        assert!(db.remove(skey(META, &[b"journal"])).unwrap().is_some());
        db.flush().unwrap();
        last
    };
    let st = Store::open(dir.path()).unwrap();
    for r in &more {
        assert_eq!(st.status(&r.id).unwrap(), Some(Status::Valid));
    }
    let listed: Vec<_> = st.market(&seller).unwrap().iter().map(|e| e.1).collect();
    assert!(more.iter().all(|r| listed.contains(&r.id)), "indexed again");
    assert_eq!(st.ledger(&seller).unwrap(), before);
    assert_eq!(before, st.recompute_ledger(&seller, NOW).unwrap());
    // A checkpoint empties the journal, and the store reopens the same.
    st.close().unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("journal")).unwrap().len(),
        0
    );
    {
        let db = raw_open(dir.path());
        for k in &last {
            assert!(
                db.get(k).unwrap().is_some(),
                "written again from the journal"
            );
        }
    }
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.ledger(&seller).unwrap(), before);
}

#[test]
fn opening_twice_is_a_clear_locked_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(e @ StoreError::Locked { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
            assert!(msg.contains("already running"), "{msg}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second open must fail"),
    }
}

/// A checkpoint drops sled's handle (and sled's file lock) and reopens it: a second open that
/// tries all along, from another thread, must fail every time with `Locked`, never take the
/// store, and the first store keeps working throughout.
#[test]
fn the_store_stays_locked_across_checkpoints() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    let more = receipts(
        &atts,
        40,
        |i| format!("order-l{i}"),
        |_| 100,
        |i| T0 + 10 + i,
    );
    let st = Store::open(dir.path()).unwrap();
    st.set_checkpoint_every(1);
    st.ingest(&envs(&atts), NOW).unwrap();
    let done = AtomicBool::new(false);
    let attempts = std::thread::scope(|sc| {
        // Several openers, so that one is likely to try in each gap.
        let others: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let mut attempts = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        match Store::open(dir.path()) {
                            Err(StoreError::Locked { .. }) => attempts += 1,
                            Err(e) => panic!("expected Locked, got {e}"),
                            Ok(_) => panic!("a second open took the store during a checkpoint"),
                        }
                    }
                    attempts
                })
            })
            .collect();
        // Every ingest checkpoints (every attestation written), and more in between.
        for r in &more {
            let acks = st.ingest(&[&r.bytes], NOW);
            let acks = acks.unwrap_or_else(|e| panic!("the first store failed: {e}"));
            assert_eq!(acks[0].status, Status::Valid);
            st.checkpoint().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        others
            .into_iter()
            .map(|o| o.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .sum::<u64>()
    });
    assert!(attempts > 0);
    assert!(st.checkpoints() >= 80, "{} checkpoints", st.checkpoints());
    assert_eq!(st.valid_count().unwrap(), (atts.len() + more.len()) as u64);
    // Closed, the store is free again, for this process too.
    st.close().unwrap();
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.valid_count().unwrap(), (atts.len() + more.len()) as u64);
}

/// A snapshot that sled began and a kill -9 cut short (`snap.<lsn>.generating`: sled reads it
/// as the newest snapshot and fails its checksum) does not keep the store from opening, with
/// everything in it (the crash test's rare "Read corrupted data").
#[test]
fn a_snapshot_cut_short_by_a_crash_does_not_stop_the_store_opening() {
    let dir = tempfile::tempdir().unwrap();
    let atts = chain();
    {
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&atts), NOW).unwrap();
    }
    // Opened again: sled snapshots what the first run wrote.
    drop(Store::open(dir.path()).unwrap());
    let snaps: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap."))
        .collect();
    assert!(!snaps.is_empty(), "sled wrote a snapshot when it opened");
    // What a process killed while writing a newer snapshot leaves behind.
    std::fs::write(
        dir.path().join("snap.7FFFFFFFFFFFFFFF.generating"),
        vec![0x5A; 300],
    )
    .unwrap();
    let st = Store::open(dir.path()).unwrap_or_else(|e| panic!("the store must open: {e}"));
    assert_eq!(st.valid_count().unwrap(), atts.len() as u64);
    assert!(!dir.path().join("snap.7FFFFFFFFFFFFFFF.generating").exists());
}

#[test]
fn a_foreign_or_damaged_store_is_a_clear_error() {
    // A sled database that is not ours.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_open(dir.path());
        db.insert(b"hello", b"world").unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path())
        .err()
        .expect("not a passalong store");
    assert!(matches!(err, StoreError::WrongVersion { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));

    // Damaged files: overwrite the data with garbage.
    let dir = tempfile::tempdir().unwrap();
    {
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&chain()), NOW).unwrap();
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let len = std::fs::metadata(&p).unwrap().len() as usize;
            std::fs::write(&p, vec![0xA5; len.max(64)]).unwrap();
        }
    }
    match Store::open(dir.path()) {
        Err(e) => assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        ),
        Ok(st) => {
            // sled may also recover to an empty or partial state: then it is a usable store.
            let _ = st.ledger(&key(1).public()).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(crate::proptest_config(24))]

    /// The ledger kept incrementally equals the reference recompute, for every seller, in any
    /// order and batching, with checkpoints anywhere (lines written, journal dropped), and
    /// after reopening without a clean close (lines as of the last checkpoint, then the
    /// journal). Batching: calls of `cut` envelopes (`cut` ≤ 8), or (`cut` 9–11) large calls of
    /// 64 and more, which take the parallel path (helpers, writer thread), from two threads
    /// at once, with envelopes repeated within and across the calls.
    #[test]
    fn incremental_ledger_equals_full_recompute(
        s in script(),
        perm_seed in any::<u64>(),
        cut in 1..12usize,
        checkpoint_every in 0..12u64,
    ) {
        let atts = build(&s);
        let reference = State::from_envelopes(envs(&atts), NOW);
        let mut shuffled = atts.clone();
        let mut x = perm_seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        let dir = tempfile::tempdir().unwrap();
        {
            let st = Store::open(dir.path()).unwrap();
            st.set_checkpoint_every(checkpoint_every);
            // The markets' runs are in memory from now on: every shipment adds to them.
            // So is a summary of each ledger, until a line changes.
            for seller in SELLERS {
                prop_assert_eq!(st.market_count(&key(seller).public(), Kind::Receipt).unwrap(), 0);
                prop_assert_eq!(st.ledger_summary(&key(seller).public()).unwrap().0, 0);
            }
            if cut <= 8 {
                for chunk in shuffled.chunks(cut) {
                    st.ingest(&envs(chunk), NOW).unwrap();
                    // Summaries kept from before the call were dropped where it wrote.
                    for seller in SELLERS {
                        let m = key(seller).public();
                        let set = st.market_with_dependencies(&m).unwrap();
                        prop_assert_eq!(
                            st.set_summary(&m).unwrap(),
                            SetSummary::of(set.iter().map(|(_, id, _)| id))
                        );
                    }
                }
            } else {
                // Each thread sends everything, from a different start, at least 64 at a time.
                let n = shuffled.len().max(1);
                let calls: Vec<Vec<&[u8]>> = (0..2)
                    .map(|t| {
                        (0..n.max(64))
                            .map(|i| shuffled[(i + t * n / 2) % n].bytes.as_slice())
                            .collect()
                    })
                    .collect();
                std::thread::scope(|sc| {
                    for call in &calls {
                        let st = &st;
                        sc.spawn(move || st.ingest(call, NOW).unwrap());
                    }
                });
            }
            for seller in SELLERS {
                let pk = key(seller).public();
                prop_assert_eq!(st.ledger(&pk).unwrap(), reference.ledger(&pk));
                prop_assert_eq!(st.equivocations(&pk).unwrap(), reference.equivocations(&pk));
                prop_assert_eq!(st.disputes(&pk).unwrap(), reference.disputes(&pk));
            }
            check_read_queries(&st)?;
        }
        let st = Store::open(dir.path()).unwrap();
        for seller in SELLERS {
            let pk = key(seller).public();
            prop_assert_eq!(st.ledger(&pk).unwrap(), reference.ledger(&pk));
        }
        check_read_queries(&st)?;
    }
}

/// The dashboard's queries agree with the store's full reads: a market newest first (of one
/// kind or all) is its index reversed, with its counts; an offer's totals are the sums over
/// its counted receipts' credits; a ledger's summary is its size and root; a participant's
/// lines are theirs in every seller's ledger.
fn check_read_queries(st: &Store) -> Result<(), TestCaseError> {
    let mut participants = std::collections::BTreeSet::new();
    for seller in SELLERS {
        let pk = key(seller).public();
        let mut all = st.market(&pk).expect("a store read");
        all.reverse();
        let newest: Vec<_> = st.newest(&pk, None).map(|e| e.expect("newest")).collect();
        prop_assert_eq!(&newest, &all);
        let receipts: Vec<_> = all
            .iter()
            .copied()
            .filter(|e| e.2 == Kind::Receipt as u8)
            .collect();
        let newest: Vec<_> = st
            .newest(&pk, Some(Kind::Receipt))
            .map(|e| e.expect("newest"))
            .collect();
        prop_assert_eq!(&newest, &receipts);
        prop_assert_eq!(
            st.market_count(&pk, Kind::Receipt).expect("a store read"),
            receipts.len() as u64
        );
        let mut totals: std::collections::BTreeMap<Id, OfferTotals> = Default::default();
        for (_, id, _) in &receipts {
            let Some(credits) = st.credits(id).expect("a store read") else {
                continue;
            };
            let Some(Body::Receipt(r)) = st.attestation(id).expect("a store read").map(|a| a.body)
            else {
                panic!("a receipt");
            };
            let t = totals.entry(r.offer).or_default();
            t.sales += 1;
            t.revenue_minor += u128::from(r.amount_minor);
            t.shares_minor += credits.iter().map(|(_, a)| u128::from(*a)).sum::<u128>();
        }
        for (_, id, kind) in &all {
            if *kind == Kind::Offer as u8 {
                let expected = totals.get(id).copied().unwrap_or_default();
                prop_assert_eq!(st.offer_totals(id).expect("a store read"), expected);
            }
        }
        let ledger = st.ledger(&pk).expect("a store read");
        prop_assert_eq!(
            st.ledger_summary(&pk).expect("a store read"),
            (ledger.entries.len(), ledger.root())
        );
        for e in ledger.entries {
            participants.insert(e.participant);
        }
    }
    check_dependencies(st)?;
    for p in participants {
        let mut expected = Vec::new();
        for seller in st.markets().expect("a store read") {
            for e in st.ledger(&seller).expect("a store read").entries {
                if e.participant == p {
                    expected.push((seller, e));
                }
            }
        }
        prop_assert_eq!(st.lines_of(&p).expect("a store read"), expected);
    }
    Ok(())
}

/// Each market's dependencies are what its valid referrals imply, computed here from the
/// valid community attestations wherever they are indexed: the community a referral names,
/// the referrer's memberships of it and their ends.
fn check_dependencies(st: &Store) -> Result<(), TestCaseError> {
    use passalong_protocol::attestation::Body as B;
    let read = |id: &Id| st.attestation(id).expect("a store read").expect("stored");
    let (mut communities, mut memberships, mut ends) = (vec![], vec![], vec![]);
    for m in st.markets().expect("a store read") {
        for (t, id, kind) in st.market(&m).expect("a store read") {
            match read(&id).body {
                B::Community(_) => communities.push((t, id, kind)),
                B::Membership(ms) => memberships.push(((t, id, kind), ms)),
                B::MembershipEnd(e) => ends.push(((t, id, kind), e)),
                _ => {}
            }
        }
    }
    for m in st.markets().expect("a store read") {
        let mut expected = Vec::new();
        for (_, id, kind) in st.market(&m).expect("a store read") {
            if kind != Kind::Referral as u8 {
                continue;
            }
            let B::Referral(r) = read(&id).body else {
                panic!("a referral");
            };
            let Some(c) = r.community else { continue };
            expected.extend(communities.iter().filter(|e| e.1 == c));
            for (e, ms) in &memberships {
                if ms.community == c && ms.member == r.referrer {
                    expected.push(e);
                    expected.extend(ends.iter().filter(|x| x.1.membership == e.1).map(|x| &x.0));
                }
            }
        }
        let mut expected: Vec<_> = expected.into_iter().copied().collect();
        expected.sort_unstable();
        expected.dedup();
        prop_assert_eq!(st.dependencies(&m).expect("a store read"), expected);
        // The kept summary of the reconciled set is that of the set read now.
        let set = st.market_with_dependencies(&m).expect("a store read");
        prop_assert_eq!(
            st.set_summary(&m).expect("a store read"),
            SetSummary::of(set.iter().map(|(_, id, _)| id))
        );
    }
    Ok(())
}

/// A store of format 7 (no dependency index; every market with something stored followed)
/// has the index built and those markets followed when it opens.
#[test]
fn a_format_7_store_has_its_dependencies_indexed_and_its_markets_followed() {
    use passalong_store::keyspace::{key as skey, DEPENDENCY, ENDED_BY, FOLLOW, META};
    let (s, conn, x) = (key(1), key(7), key(2));
    let o = offer(&s, policy(Rule::Geometric { r_bps: 5000 }, 1_000), T0);
    let c = community(&conn, T0);
    let m = membership(&conn, &c, &x, T0 + 1);
    let e = membership_end(&conn, &m, T0 + 5);
    let r = refer_full(&x, o.id, None, None, Some(c.id), T0 + 2);
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&[o, c.clone(), m.clone(), e.clone(), r]), NOW)
            .unwrap();
        let deps = st.dependencies(&s.public()).unwrap();
        let ids: Vec<Id> = deps.iter().map(|d| d.1).collect();
        assert_eq!(ids, vec![c.id, m.id, e.id]);
        assert_eq!(
            st.followed().unwrap(),
            vec![],
            "nothing followed on its own"
        );
        st.close().unwrap();
        deps
    };
    {
        let db = raw_open(dir.path());
        for prefix in [DEPENDENCY, ENDED_BY, FOLLOW] {
            for kv in db.scan_prefix([prefix]) {
                db.remove(kv.unwrap().0).unwrap();
            }
        }
        db.insert(skey(META, &[b"format"]), 7u32.to_be_bytes().to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(st.dependencies(&s.public()).unwrap(), expected);
    let mut markets = vec![s.public(), conn.public()];
    markets.sort();
    assert_eq!(st.followed().unwrap(), markets);
}

/// Each referral's record carries its nearest ancestors (see `hops`), and a walk reads the
/// chain from them. A chain longer than they reach, with a connector on every other hop, pays
/// as the reference does however it arrives: all in one call, one attestation per call, or
/// the referrals first, checkpointed and reopened, then the receipts deepest first in one
/// call (a referral walked as an ancestor before it is a receipt's first hop, whose
/// community pays the connector).
#[test]
fn deep_chains_pay_as_the_reference_however_they_arrive() {
    let (s, connector) = (key(1), key(30));
    let mut p = policy(Rule::Equal, 3_000);
    p.connector_bps = 500;
    let o = offer(&s, p, T0);
    let c = community(&connector, T0);
    let mut setup = vec![o.clone(), c.clone()];
    let mut refs: Vec<Attestation> = Vec::new();
    for k in 0..9u8 {
        let who = key(10 + k);
        setup.push(membership(&connector, &c, &who, T0 + 1));
        let r = refer_full(
            &who,
            o.id,
            refs.last().map(|r| r.id),
            None,
            (k % 2 == 0).then_some(c.id),
            T0 + 10 + u64::from(k),
        );
        refs.push(r);
    }
    let receipts: Vec<Attestation> = refs
        .iter()
        .enumerate()
        .rev()
        .map(|(k, r)| {
            let buyer = key(40 + k as u8).public();
            receipt(
                &s,
                &o,
                &format!("deep-{k}"),
                10_000,
                buyer,
                Some(r),
                T0 + 100 + k as u64,
            )
        })
        .collect();
    let all: Vec<Attestation> = setup
        .iter()
        .chain(&refs)
        .chain(&receipts)
        .cloned()
        .collect();
    let want = State::from_envelopes(envs(&all), NOW).ledger(&s.public());
    assert!(
        line(&want, &connector).is_some(),
        "the connector is paid: first hops' communities are read"
    );
    assert!(
        line(&want, &key(10)).is_some(),
        "the top of the chain is paid"
    );

    let one_call = tempfile::tempdir().unwrap();
    let st = Store::open(one_call.path()).unwrap();
    st.ingest(&envs(&all), NOW).unwrap();
    assert_eq!(st.ledger(&s.public()).unwrap(), want, "all in one call");

    let singles = tempfile::tempdir().unwrap();
    let st = Store::open(singles.path()).unwrap();
    for a in &all {
        st.ingest(&envs(std::slice::from_ref(a)), NOW).unwrap();
    }
    assert_eq!(st.ledger(&s.public()).unwrap(), want, "one per call");

    let reopened = tempfile::tempdir().unwrap();
    {
        let st = Store::open(reopened.path()).unwrap();
        let first: Vec<Attestation> = setup.iter().chain(&refs).cloned().collect();
        st.ingest(&envs(&first), NOW).unwrap();
        st.checkpoint().unwrap();
    }
    let st = Store::open(reopened.path()).unwrap();
    st.ingest(&envs(&receipts), NOW).unwrap();
    assert_eq!(st.ledger(&s.public()).unwrap(), want, "after reopening");
    assert_eq!(st.recompute_ledger(&s.public(), NOW).unwrap(), want);
}
