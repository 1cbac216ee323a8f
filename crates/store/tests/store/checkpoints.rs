//! The durability contract and the incremental ledger at scale, across checkpoints, on a store
//! of more than 100,000 attestations (the deterministic `stream`):
//!
//! - kill -9: a writer process (this test binary run again) ingests the stream with frequent
//!   checkpoints and says what each call acknowledged; it is killed at random moments, during
//!   checkpoints too. After every kill the store opens, holds a prefix of the stream with
//!   every acknowledged attestation, and its kept ledgers equal a recompute; a new writer then
//!   carries on from the last acknowledged attestation.
//! - a property test: random operations (new referrals, sales, late and equivocating sales,
//!   refunds, settlements, claims, membership ends; checkpoints; clean and unclean reopening)
//!   on a copy of one base store of 100,000 attestations built once per run; the kept ledgers
//!   equal a recompute after every reopening and at the end.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use passalong_protocol::{Attestation, Body, Id, Ledger, PublicKey, State};
use passalong_store::{Status, Store};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::common::*;
use crate::stream::{self, envs, Base, Rng, BLOCK, NOW};

/// The stream the kill test writes.
const KILL_ITEMS: usize = stream::MAX_ITEMS;
/// The writer's store checkpoints by itself every this many attestations written...
const AUTO_EVERY: u64 = 4_000;
/// ... and it checkpoints explicitly, with a line before and after (so that the parent can
/// kill it during one), each time it passes a multiple of this many.
const MARKED_EVERY: usize = 7_000;
/// Calls of several shipments end before this item (see `write_until_killed`).
const BIG_CALLS_UNTIL: usize = 100_000;
/// How the writer's lines start (the test harness prints its own lines too).
const MARK: &str = "kill9-writer> ";
/// The writer's settings, from its parent.
const ENV_DIR: &str = "PASSALONG_KILL9_DIR";
const ENV_FROM: &str = "PASSALONG_KILL9_FROM";
const ENV_SEED: &str = "PASSALONG_KILL9_SEED";
/// The writer's test, run alone in the child process.
const WRITER_TEST: &str = "checkpoints::kill_9_writer";

/// The writer process of [`nothing_acknowledged_is_lost_to_kill_9_across_checkpoints`]: does
/// nothing unless started by it (it is ignored, and needs the store's directory from its
/// environment).
#[test]
#[ignore = "the writer process of the kill -9 test, which starts it"]
fn kill_9_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let number = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} must be a number"))
    };
    write_until_killed(Path::new(&dir), number(ENV_FROM) as usize, number(ENV_SEED));
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").expect("the parent reads the writer's lines");
    out.flush().expect("the parent reads the writer's lines");
}

/// Ingests the stream from item `from` in calls of random sizes (small ones, large ones that
/// take the parallel path, a few of several shipments), saying before each call what it sends and after it what
/// was acknowledged, with checkpoints by the store every [`AUTO_EVERY`] and marked ones every
/// [`MARKED_EVERY`].
fn write_until_killed(dir: &Path, from: usize, seed: u64) {
    let base = stream::base();
    let st = Store::open(dir).unwrap_or_else(|e| panic!("the writer opens the store: {e}"));
    st.set_checkpoint_every(AUTO_EVERY);
    say(format_args!("open {from}"));
    let mut rng = Rng::new(seed);
    let mut i = from;
    let mut next_mark = (from / MARKED_EVERY + 1) * MARKED_EVERY;
    while i < KILL_ITEMS {
        // Small calls, calls of one shipment, and a few of two shipments or more (a call
        // ships every 4,096 fresh attestations), so that kills land inside one of those too;
        // not in the last 20,000, whose kills wait for checkpoints a few thousand apart.
        let len = if rng.chance(25) {
            rng.range(1, 9)
        } else if i + 9_000 <= BIG_CALLS_UNTIL && rng.chance(6) {
            rng.range(4_097, 9_000)
        } else {
            rng.range(64, 1_025)
        };
        let end = (i + len as usize).min(KILL_ITEMS);
        let atts = base.range(i, end);
        say(format_args!("call {i} {end}"));
        let acks = st
            .ingest(&envs(&atts), NOW)
            .unwrap_or_else(|e| panic!("ingest of items {i}..{end}: {e}"));
        assert_eq!(acks.len(), atts.len(), "items {i}..{end}: one ack each");
        for (n, (a, ack)) in atts.iter().zip(&acks).enumerate() {
            assert_eq!(ack.id, a.id, "item {}", i + n);
            assert_eq!(ack.status, Status::Valid, "item {}", i + n);
            assert_eq!(ack.not_kept, None, "item {}", i + n);
        }
        say(format_args!("ack {end}"));
        i = end;
        if i >= next_mark && i < KILL_ITEMS {
            say(format_args!("checkpoint"));
            let t = Instant::now();
            st.checkpoint()
                .unwrap_or_else(|e| panic!("checkpoint at {i}: {e}"));
            say(format_args!("checkpointed {}", t.elapsed().as_micros()));
            while next_mark <= i {
                next_mark += MARKED_EVERY;
            }
        }
    }
    say(format_args!("done"));
}

/// What a writer said.
enum Said {
    Open,
    Call(usize),
    Ack(usize),
    Checkpoint,
    Checkpointed(u64),
    Done,
}

fn parse(line: &str) -> Option<Said> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let mut w = rest.split_whitespace();
    let n = |w: &mut std::str::SplitWhitespace<'_>| w.next_back().and_then(|x| x.parse().ok());
    Some(match w.next()? {
        "open" => Said::Open,
        "call" => Said::Call(n(&mut w)?),
        "ack" => Said::Ack(n(&mut w)?),
        "checkpoint" => Said::Checkpoint,
        "checkpointed" => Said::Checkpointed(n(&mut w)? as u64),
        "done" => Said::Done,
        _ => return None,
    })
}

/// A writer process and what it said so far.
struct Writer {
    child: Child,
    said: mpsc::Receiver<Said>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: PathBuf,
    /// Every item before this one was acknowledged.
    acked: usize,
    /// No item from this one on was sent (by this writer or an earlier one).
    sent: usize,
    /// A marked checkpoint began and did not end.
    in_checkpoint: bool,
    /// How long the last marked checkpoint took.
    checkpoint_us: Option<u64>,
    done: bool,
    /// The writer's output ended (it died or finished).
    ended: bool,
}

impl Writer {
    /// A writer that sends the stream from item `from`, after earlier ones sent up to `sent`
    /// (and the last marked checkpoint took `checkpoint_us`).
    fn start(
        dir: &Path,
        (from, sent, checkpoint_us): (usize, usize, Option<u64>),
        seed: u64,
        stderr: PathBuf,
    ) -> Writer {
        let exe = std::env::current_exe().expect("this test binary");
        let err = std::fs::File::create(&stderr).expect("the writer's stderr file");
        let mut child = Command::new(exe)
            .args([WRITER_TEST, "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(ENV_DIR, dir)
            .env(ENV_FROM, from.to_string())
            .env(ENV_SEED, seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("the writer starts");
        let out = child.stdout.take().expect("piped");
        let (tx, said) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(s) = parse(&line) {
                    if tx.send(s).is_err() {
                        break;
                    }
                }
            }
        });
        Writer {
            child,
            said,
            reader: Some(reader),
            stderr,
            acked: from,
            sent: sent.max(from),
            in_checkpoint: false,
            checkpoint_us,
            done: false,
            ended: false,
        }
    }

    fn note(&mut self, s: Said) {
        match s {
            Said::Open => {}
            Said::Call(end) => self.sent = self.sent.max(end),
            Said::Ack(end) => self.acked = end,
            Said::Checkpoint => self.in_checkpoint = true,
            Said::Checkpointed(us) => {
                self.in_checkpoint = false;
                self.checkpoint_us = Some(us);
            }
            Said::Done => self.done = true,
        }
    }

    /// Waits for the next line; false once the writer's output ended.
    fn next(&mut self, deadline: Instant) -> bool {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.said.recv_timeout(wait) {
            Ok(s) => {
                self.note(s);
                true
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.ended = true;
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "the writer said nothing for a long time (at {})",
                    self.acked
                )
            }
        }
    }

    /// Kills the writer (SIGKILL), and reads what it said before it died.
    fn kill(mut self) -> Writer {
        self.child.kill().expect("SIGKILL");
        self.finish()
    }

    /// Waits for the writer to end and reads everything it said.
    fn finish(mut self) -> Writer {
        let status = self.child.wait().expect("the writer is reaped");
        while let Ok(s) = self.said.recv() {
            self.note(s);
        }
        self.ended = true;
        if !status.success() && !self.killed(&status) {
            panic!("the writer failed ({status}): {}", self.stderr_text());
        }
        self
    }

    fn killed(&self, status: &std::process::ExitStatus) -> bool {
        use std::os::unix::process::ExitStatusExt;
        status.signal() == Some(9)
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Writer {
    /// A writer is never left running (a failed check panics with one alive).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When to kill a writer.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after it starts (it may still be opening the store).
    AfterStart { ms: u64 },
    /// This long after it acknowledged item `at` (most likely in a call, or in one of the
    /// store's own checkpoints).
    After { at: usize, ms: u64 },
    /// In the first marked checkpoint after it acknowledged item `at`, `percent` % of the
    /// last one's duration in.
    InCheckpoint { at: usize, percent: u64 },
}

/// How much a check reads beyond the listing, the fresh items and the kept ledgers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Every 16th older item's entry.
    Quick,
    /// And the store's own recompute of one seller's ledger (~0.7 s on 100,000).
    Recompute,
    /// Every item's entry, and the store's recompute of every ledger.
    Full,
}

/// What the parent knows and checks across the writers.
struct Checker {
    items: &'static [Attestation],
    sellers: Vec<PublicKey>,
    markets: Vec<PublicKey>,
    /// A recompute with the protocol's engine of the first `in_reference` items.
    reference: State,
    in_reference: usize,
    /// Items whose status was read since they were stored.
    checked: usize,
}

impl Checker {
    /// Opens the store after a writer ended and checks it; returns how many items it holds.
    fn check(&mut self, dir: &Path, acked: usize, sent: usize, what: &str, depth: Depth) -> usize {
        let t = Instant::now();
        let st =
            Store::open(dir).unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
        let opened = t.elapsed();
        let k = self.check_open(&st, acked, sent, what, depth);
        eprintln!(
            "{what}: {k} stored ({acked} acknowledged, {sent} sent), opened in {opened:.1?}, \
             checked in {:.1?}",
            t.elapsed() - opened
        );
        k
    }

    fn check_open(
        &mut self,
        st: &Store,
        acked: usize,
        sent: usize,
        what: &str,
        depth: Depth,
    ) -> usize {
        // What the store lists is a prefix of the stream (shipments land in order, calls
        // one after another), with every acknowledged item, and nothing not sent.
        let mut listed: Vec<Id> = Vec::new();
        for m in &self.markets {
            let market = st.market(m).expect("a store read");
            listed.extend(market.into_iter().map(|(_, id, _)| id));
        }
        listed.sort_unstable();
        let k = listed.len();
        let upto = k.max(acked).min(self.items.len());
        if let Some(i) = (0..upto).find(|&i| listed.binary_search(&self.items[i].id).is_err()) {
            if i < acked {
                panic!(
                    "{what}: acknowledged item {i} is lost ({acked} acknowledged, the store \
                     lists {k})"
                );
            }
            panic!(
                "{what}: the store lists {k} items, not a prefix of the stream: item {i} is \
                 missing"
            );
        }
        assert!(k <= sent, "{what}: {k} stored, only {sent} sent");
        assert_eq!(st.valid_count().expect("a store read"), k as u64, "{what}");
        // Each item's own entry: those stored since the last check, and a sample (all at
        // the end) of the others.
        let step = if depth == Depth::Full { 1 } else { 16 };
        let fresh = self.checked.min(k)..k;
        for i in fresh.chain((0..self.checked.min(k)).step_by(step)) {
            assert_eq!(
                st.status(&self.items[i].id).expect("a store read"),
                Some(Status::Valid),
                "{what}: item {i} (acknowledged: {})",
                i < acked
            );
        }
        self.checked = k;
        // The kept ledgers against the protocol's engine over the same items (what the store
        // holds), and (deeper checks) against the store's own recompute from its entries.
        assert!(k >= self.in_reference, "{what}: the store lost items");
        for a in &self.items[self.in_reference..k] {
            self.reference.insert_checked(a.clone(), NOW);
        }
        self.in_reference = k;
        for (n, s) in self.sellers.iter().enumerate() {
            let kept = st.ledger(s).expect("a store read");
            if let Some(d) = ledger_difference(&kept, &self.reference.ledger(s)) {
                panic!("{what}: seller {n}: the kept ledger differs from a recompute: {d}");
            }
            let e = st.equivocations(s).expect("a store read");
            if let Some(d) = list_difference(&e, &self.reference.equivocations(s)) {
                panic!("{what}: seller {n}: equivocations differ from a recompute: {d}");
            }
            let d = st.disputes(s).expect("a store read");
            if let Some(d) = list_difference(&d, &self.reference.disputes(s)) {
                panic!("{what}: seller {n}: disputes differ from a recompute: {d}");
            }
            if depth == Depth::Full || (depth == Depth::Recompute && n == k % self.sellers.len()) {
                let recomputed = st.recompute_ledger(s, NOW).expect("a store read");
                if let Some(d) = ledger_difference(&kept, &recomputed) {
                    panic!(
                        "{what}: seller {n}: the kept ledger differs from the store's \
                         recompute: {d}"
                    );
                }
            }
        }
        k
    }
}

/// Where two ledgers differ, in a line (None: they are equal).
fn ledger_difference(kept: &Ledger, recomputed: &Ledger) -> Option<String> {
    if kept == recomputed {
        return None;
    }
    let (a, b) = (&kept.entries, &recomputed.entries);
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return Some(format!(
                "first different line: kept {x:?}, recomputed {y:?}"
            ));
        }
    }
    Some(format!(
        "{} lines kept, {} recomputed (the first {} alike)",
        a.len(),
        b.len(),
        a.len().min(b.len())
    ))
}

/// How two lists differ, in short (None: they are equal): how many each has that the other
/// has not, and the first few.
fn list_difference<T: PartialEq + std::fmt::Debug>(kept: &[T], recomputed: &[T]) -> Option<String> {
    if kept == recomputed {
        return None;
    }
    let only = |a: &[T], b: &[T]| -> (usize, Vec<String>) {
        let v: Vec<&T> = a.iter().filter(|x| !b.contains(x)).collect();
        (
            v.len(),
            v.iter().take(3).map(|x| format!("{x:?}")).collect(),
        )
    };
    let (nk, k) = only(kept, recomputed);
    let (nr, r) = only(recomputed, kept);
    Some(format!(
        "{} kept, {} recomputed; {nk} only kept (first: {}); {nr} only recomputed (first: {})",
        kept.len(),
        recomputed.len(),
        k.join(", "),
        r.join(", ")
    ))
}

/// The seed of a random test: `PASSALONG_TEST_SEED` if set (to replay a run), else the clock.
fn seed() -> u64 {
    std::env::var("PASSALONG_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// A writer process ingests 120,000 attestations (referrals and sales of six offers of three
/// sellers, refunds, settlements, claims, equivocations, membership ends) with checkpoints
/// every 4,000 attestations written and every 7,000 items, and is killed with SIGKILL at least
/// nine times: at random moments through the stream (four of them on a store of more than
/// 100,000), right after it starts (opening the store after the last kill), and
/// during marked checkpoints (at least one of them on a store of more than 100,000). After
/// each kill: the store opens; it holds a prefix of the stream, with every attestation a
/// call acknowledged and none that was not sent; its kept ledgers, equivocations and
/// disputes equal the protocol engine's over that prefix (and, after a kill in a checkpoint
/// and at the end, the store's own recompute from what it holds); then a new
/// writer sends everything again from the last acknowledged item. The last one runs to the
/// end; the store is checked whole, closed, and checked again.
#[test]
fn nothing_acknowledged_is_lost_to_kill_9_across_checkpoints() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("kill -9 test: seed {seed} (PASSALONG_TEST_SEED={seed} replays the plan)");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("a temporary dir");
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).expect("the store's dir");
    let base = stream::base();
    // The parent's copy of the stream, built while the first writer runs.
    let items = std::thread::spawn(|| stream::items(KILL_ITEMS));
    let mut r = |lo: usize, hi: usize| rng.range(lo as u64, hi as u64) as usize;
    let mut plan = vec![
        Kill::After {
            at: r(2_000, 20_000),
            ms: r(0, 30) as u64,
        },
        Kill::InCheckpoint {
            at: r(20_000, 45_000),
            percent: r(0, 70) as u64,
        },
        Kill::After {
            at: r(45_000, 70_000),
            ms: r(0, 30) as u64,
        },
        Kill::After {
            at: r(70_000, 98_000),
            ms: r(0, 30) as u64,
        },
        Kill::AfterStart {
            ms: r(20, 150) as u64,
        },
        Kill::InCheckpoint {
            at: r(100_000, 104_000),
            percent: r(0, 70) as u64,
        },
        Kill::After {
            at: r(106_000, 110_000),
            ms: r(0, 30) as u64,
        },
        Kill::InCheckpoint {
            at: r(110_000, 111_000),
            percent: r(0, 40) as u64,
        },
        Kill::After {
            at: r(113_000, 118_000),
            ms: r(0, 30) as u64,
        },
    ]
    .into_iter();
    let mut checker: Option<Checker> = None;
    let mut items = Some(items);
    let (mut acked, mut sent, mut checkpoint_us) = (0, 0, None);
    let (mut kills, mut in_checkpoint, mut in_checkpoint_100k) = (0, 0, 0);
    // A kill meant for a checkpoint past 100,000 missed it: the next one kills at once.
    let mut missed_100k = false;
    let mut cycle = 0u64;
    loop {
        let kill = plan.next();
        let mut w = Writer::start(
            &dir,
            (acked, sent, checkpoint_us),
            seed ^ cycle,
            tmp.path().join(format!("writer-{cycle}.stderr")),
        );
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut w = match kill {
            None => {
                while w.next(deadline) {}
                w.finish()
            }
            Some(Kill::AfterStart { ms }) => {
                std::thread::sleep(Duration::from_millis(ms));
                w.kill()
            }
            Some(Kill::After { at, ms }) => {
                while w.acked < at && w.next(deadline) {}
                std::thread::sleep(Duration::from_millis(ms));
                w.kill()
            }
            Some(Kill::InCheckpoint { at, percent }) => {
                while !(w.acked >= at && w.in_checkpoint) && w.next(deadline) {}
                let percent = if missed_100k { 0 } else { percent };
                let us = w.checkpoint_us.unwrap_or(50_000) * percent / 100;
                std::thread::sleep(Duration::from_micros(us));
                w.kill()
            }
        };
        let what = match kill {
            Some(k) => format!("kill {} ({k:?})", kills + 1),
            None => "the last writer".to_string(),
        };
        assert!(
            w.done || kill.is_some(),
            "{what}: the writer ended early: {}",
            w.stderr_text()
        );
        if kill.is_some() {
            assert!(!w.done, "{what}: the writer finished before the kill");
            kills += 1;
            if w.in_checkpoint {
                in_checkpoint += 1;
                if w.acked >= 100_000 {
                    in_checkpoint_100k += 1;
                }
            }
            if let Some(Kill::InCheckpoint { at, .. }) = kill {
                missed_100k = at >= 100_000 && in_checkpoint_100k == 0;
            }
        }
        let c = checker.get_or_insert_with(|| Checker {
            items: items.take().expect("once").join().expect("the stream"),
            sellers: base.seller_keys(),
            markets: base.markets(),
            reference: State::new(),
            in_reference: 0,
            checked: 0,
        });
        let what = format!(
            "{what}{}",
            if w.in_checkpoint {
                ", in a checkpoint"
            } else {
                ""
            }
        );
        let depth = match (kill, w.in_checkpoint) {
            (None, _) => Depth::Full,
            (Some(_), true) => Depth::Recompute,
            (Some(_), false) => Depth::Quick,
        };
        c.check(&dir, w.acked, w.sent, &what, depth);
        (acked, sent, checkpoint_us) = (w.acked, w.sent, w.checkpoint_us);
        if let Some(r) = w.reader.take() {
            r.join().expect("the reader thread");
        }
        cycle += 1;
        if kill.is_none() {
            break;
        }
    }
    assert_eq!(acked, KILL_ITEMS);
    assert!(kills >= 9, "{kills} kills");
    assert!(
        in_checkpoint >= 1 && in_checkpoint_100k >= 1,
        "{in_checkpoint} kills landed in a marked checkpoint, {in_checkpoint_100k} of them \
         on a store of 100,000 or more"
    );
    // Closed cleanly (ledger lines written, orders packed), it opens the same.
    let c = checker.as_mut().expect("checked");
    Store::open(&dir)
        .and_then(Store::close)
        .expect("the store closes");
    c.check(
        &dir,
        KILL_ITEMS,
        KILL_ITEMS,
        "after a clean close",
        Depth::Quick,
    );
    eprintln!(
        "kill -9 test: {kills} kills ({in_checkpoint} in a marked checkpoint, \
         {in_checkpoint_100k} of them past 100,000), {KILL_ITEMS} items, {:.1?}",
        started.elapsed()
    );
}

/// Two receipts of one order in one call (the smaller id first), then a crash before any
/// checkpoint: reopening replays the call's journal record, and the smaller id must still be
/// the one that counts. A third receipt whose id lies between them then changes nothing: the
/// kept ledger equals the reference's.
#[test]
fn an_equivocation_within_one_call_counts_the_smaller_id_after_a_crash() {
    let (s, b, e) = (key(1), key(2), key(5));
    let o = offer(&s, policy(passalong_protocol::Rule::Direct, 1_000), T0);
    let rb = refer(&b, &o, None, T0 + 1);
    // Three receipts of one order, different amounts; by id: x < c < y.
    let mut rs: Vec<Attestation> = (0..3u64)
        .map(|i| {
            let amount = 10_000 * (i + 1);
            receipt(
                &s,
                &o,
                "order-1",
                amount,
                e.public(),
                Some(&rb),
                T0 + 10 + i,
            )
        })
        .collect();
    rs.sort_by_key(|r| r.id);
    let (x, c, y) = (&rs[0], &rs[1], &rs[2]);
    let seller = s.public();
    let dir = tempfile::tempdir().unwrap();
    {
        let st = Store::open(dir.path()).unwrap();
        st.set_checkpoint_every(0);
        st.ingest(&envs(&[o.clone(), rb.clone()]), NOW).unwrap();
        st.ingest(&[&x.bytes, &y.bytes], NOW).unwrap();
        // Dropped without `close`, as by a crash: the receipts' orders are in the journal.
    }
    let st = Store::open(dir.path()).unwrap();
    let reference = |atts: &[&Attestation]| {
        State::from_envelopes(atts.iter().map(|a| a.bytes.as_slice()), NOW).ledger(&seller)
    };
    assert_eq!(st.ledger(&seller).unwrap(), reference(&[&o, &rb, x, y]));
    st.ingest(&[&c.bytes], NOW).unwrap();
    let kept = st.ledger(&seller).unwrap();
    let expected = reference(&[&o, &rb, x, y, c]);
    if let Some(d) = ledger_difference(&kept, &expected) {
        panic!("after a third receipt of the order: {d}");
    }
}

// ---- The property test on a base of 100,000 ----

/// Items of the base store: blocks whole, at least 100,000.
fn base_items() -> usize {
    let b = stream::base().len();
    b + (100_000 - b).div_ceil(BLOCK) * BLOCK
}

/// What the base's items are, for the operations to build on.
struct BaseIndex {
    /// Each offer's referrals (indices into the items).
    referrals: Vec<Vec<usize>>,
    /// (index into the items, offer) of each receipt.
    receipts: Vec<(usize, usize)>,
}

impl BaseIndex {
    fn of(base: &Base, items: &[Attestation]) -> BaseIndex {
        let offer_of = |id: &Id| {
            base.offers
                .iter()
                .position(|(o, _)| o.id == *id)
                .expect("the stream's offers")
        };
        let mut referrals = vec![Vec::new(); base.offers.len()];
        let mut receipts = Vec::new();
        for (i, a) in items.iter().enumerate() {
            match &a.body {
                Body::Referral(r) => referrals[offer_of(&r.offer)].push(i),
                Body::Receipt(r) => receipts.push((i, offer_of(&r.offer))),
                _ => {}
            }
        }
        BaseIndex {
            referrals,
            receipts,
        }
    }
}

/// One operation on the store.
#[derive(Debug, Clone)]
enum Op {
    /// `n` new attestations (built from `seed`), in calls of `cut`, in order or shuffled (a
    /// sale may then come before its referrals and wait for them, pending).
    Ingest {
        seed: u64,
        n: usize,
        cut: usize,
        shuffle: bool,
    },
    Checkpoint,
    /// `set_checkpoint_every` (0: never by itself).
    CheckpointEvery(u64),
    /// Closed (`clean`) or dropped as by a crash, and opened again.
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<u64>(), 1..300usize, prop_oneof![1..9usize, 64..400usize], any::<bool>())
            .prop_map(|(seed, n, cut, shuffle)| Op::Ingest { seed, n, cut, shuffle }),
        2 => Just(Op::Checkpoint),
        // Not much more often: a checkpoint of the base takes ~0.1 s.
        1 => prop_oneof![Just(0u64), 50..200u64, Just(2_000u64)].prop_map(Op::CheckpointEvery),
        3 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// `n` new attestations on top of the base: chains below its referrals and sales through
/// them, late sales through old referrals, several receipts for one order (new or sold
/// already: an equivocation a new one may win), refunds of old sales, settlements, claims,
/// and membership ends back in time.
fn extras(
    base: &Base,
    items: &[Attestation],
    index: &BaseIndex,
    seed: u64,
    n: usize,
) -> Vec<Attestation> {
    let mut rng = Rng::new(seed);
    let people = &base.people;
    let person = |rng: &mut Rng| &people[rng.below(people.len() as u64) as usize];
    let end = stream::time_of(items.len());
    // New times after the base (and after any other case's: a seed's own hour).
    let mut t = end + 3_600_000 + (seed % 1_000) * 3_600_000;
    let mut out: Vec<Attestation> = Vec::new();
    let mut sales: Vec<(Attestation, usize)> = Vec::new();
    let pick = |rng: &mut Rng, v: &[usize]| v[rng.below(v.len() as u64) as usize];
    while out.len() < n {
        t += 1_000;
        let k = rng.below(base.offers.len() as u64) as usize;
        let (offer, s) = &base.offers[k];
        let seller = &base.sellers[*s];
        let order = format!("extra-{seed}-{}", out.len());
        match rng.below(100) {
            0..=34 => {
                let mut parent = items[pick(&mut rng, &index.referrals[k])].id;
                for _ in 0..rng.range(1, 4) {
                    let c = rng.chance(30).then_some(base.community.id);
                    let who = if c.is_some() {
                        &people[rng.below(24) as usize]
                    } else {
                        person(&mut rng)
                    };
                    let r = refer_full(who, offer.id, Some(parent), None, c, t);
                    t += 1;
                    parent = r.id;
                    out.push(r);
                }
                let via = out.last().cloned();
                let amount = rng.range(100, 100_000);
                let r = receipt(
                    seller,
                    offer,
                    &order,
                    amount,
                    person(&mut rng).public(),
                    via.as_ref(),
                    t,
                );
                sales.push((r.clone(), *s));
                out.push(r);
            }
            35..=49 => {
                // A sale made long ago through an old referral, that arrives only now.
                let via = &items[pick(&mut rng, &index.referrals[k])];
                let at = via.body.created_at_ms() + rng.range(1, 4 * 3_600_000);
                let amount = rng.range(100, 100_000);
                let r = receipt(
                    seller,
                    offer,
                    &order,
                    amount,
                    person(&mut rng).public(),
                    Some(via),
                    at,
                );
                sales.push((r.clone(), *s));
                out.push(r);
            }
            50..=59 => {
                // Receipts for one order, an old one or a new one (most often more than one
                // in the same call): an equivocation, where the smallest id counts; and at
                // times a claim for it (which names the receipt that counts in a dispute).
                let (order, ko, at) = if rng.chance(50) {
                    let (i, ko) = index.receipts[rng.below(index.receipts.len() as u64) as usize];
                    let Body::Receipt(old) = &items[i].body else {
                        unreachable!("indexed as a receipt")
                    };
                    (old.order.clone(), ko, old.created_at_ms)
                } else {
                    (order, k, t)
                };
                let (o, s) = &base.offers[ko];
                for _ in 0..rng.range(1, 4) {
                    let via = &items[pick(&mut rng, &index.referrals[ko])];
                    out.push(receipt(
                        &base.sellers[*s],
                        o,
                        &order,
                        rng.range(100, 100_000),
                        person(&mut rng).public(),
                        rng.chance(80).then_some(via),
                        at + rng.range(0, 3_600_000),
                    ));
                }
                if rng.chance(50) {
                    let via = items[pick(&mut rng, &index.referrals[ko])].id;
                    out.push(claim(person(&mut rng), o, &order, Some(via), t));
                }
            }
            60..=69 => {
                // A refund, of an old sale or of one of these.
                if !sales.is_empty() && rng.chance(30) {
                    let (r, s) = &sales[rng.below(sales.len() as u64) as usize];
                    out.push(refund(&base.sellers[*s], r, t));
                } else {
                    let (i, ko) = index.receipts[rng.below(index.receipts.len() as u64) as usize];
                    let s = base.offers[ko].1;
                    out.push(refund(&base.sellers[s], &items[i], t));
                }
            }
            70..=79 => out.push(settle(
                seller,
                person(&mut rng).public(),
                rng.range(1, 5_000),
                t,
            )),
            80..=89 => {
                // A claim for an old order, through some referral of its offer.
                let (i, ko) = index.receipts[rng.below(index.receipts.len() as u64) as usize];
                let Body::Receipt(old) = &items[i].body else {
                    unreachable!("indexed as a receipt")
                };
                let via = rng
                    .chance(70)
                    .then(|| items[pick(&mut rng, &index.referrals[ko])].id);
                out.push(claim(
                    person(&mut rng),
                    &base.offers[ko].0,
                    &old.order,
                    via,
                    t,
                ));
            }
            _ => {
                // A membership ended back in time: shares of sales long counted move.
                let m = &base.memberships[rng.below(base.memberships.len() as u64) as usize];
                let at = stream::time_of(rng.range(0, items.len() as u64) as usize);
                out.push(membership_end(&base.connector, m, at));
            }
        }
    }
    out.truncate(n);
    out
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

/// The kept ledgers (and equivocations, disputes) against the reference engine's; the ledger
/// of seller `recompute` also against the store's own recompute (a scan of everything it
/// holds, ~0.6 s on the base).
fn same_as(
    st: &Store,
    reference: &State,
    recompute: Option<usize>,
    what: &str,
) -> Result<(), TestCaseError> {
    for (n, s) in stream::base().seller_keys().iter().enumerate() {
        let kept = st
            .ledger(s)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(d) = ledger_difference(&kept, &reference.ledger(s)) {
            return Err(TestCaseError::fail(format!(
                "{what}: seller {n}: the kept ledger differs from a recompute: {d}"
            )));
        }
        let e = st
            .equivocations(s)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(d) = list_difference(&e, &reference.equivocations(s)) {
            return Err(TestCaseError::fail(format!(
                "{what}: seller {n}: equivocations differ from a recompute: {d}"
            )));
        }
        let d = st
            .disputes(s)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(d) = list_difference(&d, &reference.disputes(s)) {
            return Err(TestCaseError::fail(format!(
                "{what}: seller {n}: disputes differ from a recompute: {d}"
            )));
        }
        if recompute == Some(n) {
            let r = st
                .recompute_ledger(s, NOW)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Some(d) = ledger_difference(&kept, &r) {
                return Err(TestCaseError::fail(format!(
                    "{what}: seller {n}: the kept ledger differs from the store's recompute: {d}"
                )));
            }
        }
    }
    Ok(())
}

fn run_case(
    base_dir: &Path,
    items: &[Attestation],
    index: &BaseIndex,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let fail = |e: passalong_store::StoreError| TestCaseError::fail(e.to_string());
    let base = stream::base();
    let tmp = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let dir = tmp.path().join("store");
    copy_dir(base_dir, &dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut reference = State::new();
    for a in items {
        reference.insert_checked(a.clone(), NOW);
    }
    let mut st = Some(Store::open(&dir).map_err(fail)?);
    let mut every = passalong_store::CHECKPOINT_EVERY;
    for (n, op) in ops.iter().enumerate() {
        let s = st.as_ref().expect("open");
        match *op {
            Op::Ingest {
                seed,
                n: count,
                cut,
                shuffle,
            } => {
                let mut atts = extras(base, items, index, seed, count);
                if shuffle {
                    let mut rng = Rng::new(seed ^ 0x5EED);
                    for i in (1..atts.len()).rev() {
                        atts.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                }
                for chunk in atts.chunks(cut) {
                    s.ingest(&envs(chunk), NOW).map_err(fail)?;
                }
                for a in atts {
                    reference.insert_checked(a, NOW);
                }
            }
            Op::Checkpoint => s.checkpoint().map_err(fail)?,
            Op::CheckpointEvery(e) => {
                every = e;
                s.set_checkpoint_every(e);
            }
            Op::Reopen { clean } => {
                let s = st.take().expect("open");
                if clean {
                    s.close().map_err(fail)?;
                } else {
                    drop(s);
                }
                let s = Store::open(&dir).map_err(fail)?;
                s.set_checkpoint_every(every);
                same_as(&s, &reference, None, &format!("after op {n} (reopened)"))?;
                st = Some(s);
            }
        }
    }
    let s = st.take().expect("open");
    same_as(&s, &reference, Some(ops.len() % 3), "at the end")?;
    // And once more from what is on disk, as after a crash.
    drop(s);
    let s = Store::open(&dir).map_err(fail)?;
    same_as(&s, &reference, None, "reopened at the end")?;
    Ok(())
}

/// On a copy of one base store of 100,000 attestations (built once per run), random
/// sequences of new attestations of every kind, checkpoints (explicit and by the store, down
/// to every attestation) and reopening (closed, or dropped as by a crash): the kept ledgers,
/// equivocations and disputes equal the protocol engine's recompute after every reopening
/// and at the end, where the kept ledger of one seller also equals the store's own
/// recompute from everything it holds.
#[test]
fn incremental_ledger_equals_recompute_across_checkpoints_on_100k() {
    let started = Instant::now();
    let base = stream::base();
    let items = stream::items(base_items());
    let tmp = tempfile::tempdir().expect("a temporary dir");
    let base_dir = tmp.path().join("base");
    {
        let st = Store::open(&base_dir).expect("the base store");
        for chunk in items.chunks(2_048) {
            let acks = st.ingest(&envs(chunk), NOW).expect("the base's ingest");
            assert!(acks
                .iter()
                .all(|a| a.status == Status::Valid && a.not_kept.is_none()));
        }
        st.close().expect("the base store closes");
    }
    let built = started.elapsed();
    let index = BaseIndex::of(base, items);
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        source_file: Some(file!()),
        max_shrink_iters: 64,
        ..crate::proptest_config(6)
    });
    let result = runner.run(&prop::collection::vec(op(), 2..10), |ops| {
        run_case(&base_dir, items, &index, &ops)
    });
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
    eprintln!(
        "property test on {} items: base built in {built:.1?}, cases in {:.1?}",
        items.len(),
        started.elapsed() - built
    );
}
