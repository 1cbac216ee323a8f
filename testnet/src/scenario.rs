//! The scenario: who publishes, refers, sells, refunds and settles, with the faults injected
//! between its steps; then the wait for every node to hold the offline root.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use passalong_protocol::{Keypair, PublicKey, State};
use serde_json::{json, Value};

use crate::community::{self, Community, CONNECTOR_BPS};
use crate::node::Node;
use crate::watch::{quantile, Poller, Written};
use crate::Args;

/// The four payout rules, one offer each per seller.
const RULES: [&str; 4] = ["direct", "equal", "geometric:5000", "split-proof"];
/// The longest referral chain the scenario builds.
const MAX_HOPS: usize = 12;

/// A small deterministic generator (xorshift64*), so that a seed replays a scenario.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One step of the scenario; indices point into its offer's referrals and receipts.
enum Op {
    Refer { offer: usize, parent: Option<usize> },
    Receipt { offer: usize, via: usize },
    Refund { offer: usize, receipt: usize },
    Settle { seller: usize },
}

struct OfferState {
    seller: usize,
    id: String,
    link: String,
    refs: Vec<String>,
    receipts: Vec<String>,
}

/// The steps, offers interleaved round-robin; parents always come before children.
fn plan(args: &Args, offers: usize, rng: &mut Rng) -> Vec<Op> {
    let mut per_offer: Vec<Vec<Op>> = Vec::new();
    for o in 0..offers {
        let mut ops = Vec::new();
        let mut depth: Vec<usize> = Vec::new();
        for r in 0..args.referrals {
            let parent = if r == 0 {
                None
            } else if r < MAX_HOPS {
                Some(r - 1) // the first MAX_HOPS referrals form one chain
            } else {
                let p = rng.below(r + 1);
                (p < r && depth[p] < MAX_HOPS).then_some(p)
            };
            depth.push(parent.map_or(1, |p| depth[p] + 1));
            ops.push(Op::Refer { offer: o, parent });
        }
        for _ in 0..args.receipts {
            ops.push(Op::Receipt {
                offer: o,
                via: rng.below(args.referrals),
            });
        }
        for k in (0..args.receipts).step_by(4) {
            ops.push(Op::Refund {
                offer: o,
                receipt: k,
            });
        }
        per_offer.push(ops);
    }
    let mut out = Vec::new();
    let longest = per_offer.iter().map(Vec::len).max().unwrap_or(0);
    let mut iters: Vec<_> = per_offer.into_iter().map(Vec::into_iter).collect();
    for _ in 0..longest {
        for it in &mut iters {
            if let Some(op) = it.next() {
                out.push(op);
            }
        }
    }
    for seller in 0..args.sellers {
        out.push(Op::Settle { seller });
    }
    out
}

fn buyer(k: usize) -> String {
    Keypair::from_seed([(k % 251) as u8 + 1; 32])
        .public()
        .to_hex()
}

fn id_of(v: &Value) -> Result<String> {
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no id in {v}"))
}

/// Plays the scenario and returns the summary.
pub fn play(args: &Args, bin: &Path, root: &Path, timeout: Duration) -> Result<Value> {
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // The community nodes come right after the sellers.
    let connectors = args.sellers..args.sellers + args.communities.unwrap_or(0);
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..args.nodes {
        let mut boots = Vec::new();
        if i > 0 {
            boots.push(nodes[0].p2p_addr());
        }
        if i > 1 {
            boots.push(nodes[1 + rng.below(i - 1)].p2p_addr());
        }
        let mut n = Node::new(i, root, bin, boots)?;
        if connectors.contains(&i) {
            community::prepare(bin, &n.dir, &args.member_kdf)?;
        }
        n.start()?;
        nodes.push(n);
    }
    let seller_keys: Vec<String> = nodes[..args.sellers]
        .iter()
        .map(|n| n.public_key.clone())
        .collect();
    for n in &nodes {
        for k in &seller_keys {
            n.post("/v1/markets/follow", &json!({ "market": k }))?;
        }
    }
    wait_until(Duration::from_secs(20), || {
        nodes.iter().all(|n| {
            n.get("/v1/peers")
                .is_ok_and(|v| v["peers"].as_array().is_some_and(|p| !p.is_empty()))
        })
    })
    .context("the nodes did not connect within 20 s")?;

    let mut preloaded = None;
    if args.preload > 0 {
        let t = Instant::now();
        let (market, envs) = crate::preload::preload(&nodes[0], args.preload, now_ms()?)?;
        eprintln!(
            "preloaded {} attestations into node 0 in {} ms",
            envs.len(),
            t.elapsed().as_millis()
        );
        preloaded = Some((market, envs));
    }

    let written = Written::default();
    let mut pollers: Vec<Option<Poller>> = nodes
        .iter()
        .map(|n| Some(Poller::spawn(n.api.clone(), n.index, written.clone())))
        .collect();

    // Offers: one per rule per seller.
    let mut offers: Vec<OfferState> = Vec::new();
    for (s, seller) in nodes[..args.sellers].iter().enumerate() {
        for rule in RULES {
            let mut offer = json!({"title": format!("{rule} item of seller {s}"), "price_minor": 10_000,
                                   "currency": "EUR", "pool_bps": 2_000, "rule": rule});
            if !connectors.is_empty() {
                offer["connector_bps"] = json!(CONNECTOR_BPS);
            }
            let v = seller.post("/v1/offers", &offer)?;
            let id = id_of(&v)?;
            written.push(&id, s, s);
            offers.push(OfferState {
                seller: s,
                link: v["link"].as_str().unwrap_or_default().to_string(),
                id,
                refs: Vec::new(),
                receipts: Vec::new(),
            });
        }
    }

    // The communities: founded, joined by their members, who pass an offer along each.
    let t = Instant::now();
    let mut communities: Vec<Community> = Vec::new();
    for (c, k) in connectors.clone().enumerate() {
        let mut com = community::found(&nodes[k], c, args.hosted)?;
        for j in 0..com.members.len() {
            let o = (c * args.hosted + j) % offers.len();
            let id = id_of(&com.refer(&nodes[k], j, &offers[o].link)?)?;
            written.push(&id, k, offers[o].seller);
            com.members[j].first = Some((o, id));
        }
        communities.push(com);
    }
    // The last node that is neither a seller nor a community node joins the last community
    // with its own key (`community join`), and names it in its referrals from then on.
    let spare = (args.sellers..args.nodes)
        .rev()
        .find(|i| !connectors.contains(i));
    if let (Some(i), Some(com)) = (spare, communities.last_mut()) {
        com.join_own_node(&nodes[com.node], &nodes[i])?;
        let o = (connectors.len() * args.hosted) % offers.len();
        let v = nodes[i].post(
            "/v1/referrals",
            &json!({ "from": offers[o].link, "community": com.id }),
        )?;
        let id = id_of(&v)?;
        written.push(&id, i, offers[o].seller);
        if let Some(m) = com.own_member(i) {
            m.referrals.push(id);
            m.first = Some((o, v["link"].as_str().unwrap_or_default().to_string()));
        }
    }
    let communities_ms = t.elapsed().as_millis() as u64;

    let ops = plan(args, offers.len(), &mut rng);
    let n_ops = ops.len();
    let mut faults: Vec<String> = Vec::new();
    let mut killed: Option<usize> = None;
    let mut partitioned: Vec<(usize, usize)> = Vec::new();
    let mut garbage_thread = None;
    let mut hostile_threads = Vec::new();
    let mut removal: Option<Removal> = None;
    let started = Instant::now();
    for (step, op) in ops.into_iter().enumerate() {
        if args.garbage && step == n_ops / 4 {
            let boots = vec![nodes[0].p2p_addr(), nodes[args.nodes - 1].p2p_addr()];
            let markets: Vec<PublicKey> = seller_keys
                .iter()
                .filter_map(|k| PublicKey::from_hex(k).ok())
                .collect();
            let sample = envelope(&nodes[0], &offers[0].id)?;
            let flood = args.flood;
            garbage_thread = Some(std::thread::spawn(move || {
                crate::garbage::run(boots, markets, sample, flood, 0, 0)
            }));
            faults.push("garbage".into());
        }
        if args.hostile > 0 && step == n_ops / 4 {
            let markets: Vec<PublicKey> = seller_keys
                .iter()
                .filter_map(|k| PublicKey::from_hex(k).ok())
                .collect();
            let sample = envelope(&nodes[0], &offers[0].id)?;
            for t in 1..=args.hostile {
                // Node 0 first: every hostile peer tries to surround it.
                let boots = vec![
                    nodes[0].p2p_addr(),
                    nodes[1 + t % (args.nodes - 1).max(1)].p2p_addr(),
                ];
                let (markets, sample, flood) = (markets.clone(), sample.clone(), args.flood);
                hostile_threads.push(std::thread::spawn(move || {
                    crate::garbage::run(boots, markets, sample, flood, 3, t as u8)
                }));
            }
            faults.push(format!("{} hostile peers", args.hostile));
        }
        if args.kill && step == n_ops / 3 {
            // Never a seller (the seller's checkout must answer) nor the bootstrap hub, nor a
            // community node (its members' sessions would end).
            let candidates: Vec<usize> = (args.sellers.max(1)..args.nodes)
                .filter(|i| !connectors.contains(i))
                .collect();
            if let Some(&k) = candidates.get(rng.below(candidates.len())) {
                nodes[k].kill9();
                if let Some(p) = pollers[k].take() {
                    p.finish(); // its samples would measure the downtime
                }
                killed = Some(k);
                faults.push(format!("kill node{k}"));
            }
        }
        if args.partition && step == n_ops / 2 {
            for a in (0..args.nodes).filter(|i| i % 2 == 0) {
                for b in (0..args.nodes).filter(|i| i % 2 == 1) {
                    partitioned.push((a, b));
                }
            }
            set_blocked(&nodes, &partitioned, true)?;
            faults.push("partition".into());
        }
        if step == n_ops / 2 && !communities.is_empty() {
            removal = Some(midway(
                &mut nodes,
                &mut pollers,
                &mut communities,
                &offers,
                &written,
                &seller_keys,
                root,
            )?);
        }
        if step == n_ops * 3 / 4 {
            if !partitioned.is_empty() {
                set_blocked(&nodes, &partitioned, false)?;
                partitioned.clear();
                faults.push("heal".into());
            }
            if let Some(k) = killed {
                nodes[k].start()?;
                faults.push(format!("restart node{k}"));
            }
        }
        match op {
            Op::Refer { offer, parent } => {
                let o = &offers[offer];
                let from = parent.map_or(o.link.clone(), |p| o.refs[p].clone());
                // A live node, or a hosted member with her session (a community node's own
                // key refers nothing: what it earns is the connector's share alone).
                let alive: Vec<usize> = (0..args.nodes)
                    .filter(|&i| nodes[i].alive() && !connectors.contains(&i))
                    .collect();
                let hosted: Vec<(usize, usize)> = communities
                    .iter()
                    .enumerate()
                    .flat_map(|(c, com)| com.admitted().map(move |j| (c, j)))
                    .collect();
                let pick = rng.below(alive.len() + hosted.len());
                let (v, who) = match pick.checked_sub(alive.len()).map(|h| hosted[h]) {
                    Some((c, j)) => {
                        let k = communities[c].node;
                        (communities[c].refer(&nodes[k], j, &from)?, k)
                    }
                    None => {
                        let who = alive[pick];
                        let mut body = json!({ "from": from });
                        let own = communities
                            .iter()
                            .position(|com| com.own.iter().any(|m| m.node == who));
                        if let Some(c) = own {
                            body["community"] = json!(communities[c].id);
                        }
                        let v = nodes[who].post("/v1/referrals", &body)?;
                        if let Some(m) = own.and_then(|c| communities[c].own_member(who)) {
                            m.referrals.push(id_of(&v)?);
                        }
                        (v, who)
                    }
                };
                written.push(&id_of(&v)?, who, offers[offer].seller);
                let link = v["link"].as_str().unwrap_or_default().to_string();
                offers[offer].refs.push(link);
            }
            Op::Receipt { offer, via } => {
                let o = &offers[offer];
                let k = o.receipts.len();
                let v = nodes[o.seller].post(
                    "/v1/receipts",
                    &json!({"offer": o.id, "order": format!("o{offer}-{k}"), "amount_minor": 10_000,
                            "buyer": buyer(k + offer), "via": o.refs[via]}),
                )?;
                let id = id_of(&v)?;
                written.push(&id, o.seller, o.seller);
                offers[offer].receipts.push(id);
            }
            Op::Refund { offer, receipt } => {
                let o = &offers[offer];
                if let Some(r) = o.receipts.get(receipt) {
                    let v = nodes[o.seller].post("/v1/refunds", &json!({ "receipt": r }))?;
                    written.push(&id_of(&v)?, o.seller, o.seller);
                }
            }
            Op::Settle { seller } => {
                let participant = nodes[(seller + 1) % args.nodes].public_key.clone();
                let v = nodes[seller].post(
                    "/v1/settlements",
                    &json!({"participant": participant, "amount_minor": 100, "currency": "EUR",
                            "reference": format!("T-{seller}")}),
                )?;
                written.push(&id_of(&v)?, seller, seller);
            }
        }
    }
    let scenario_ms = started.elapsed().as_millis() as u64;
    let last_write = Instant::now();

    let mut garbage = Value::Null;
    if let Some(t) = garbage_thread {
        let g = t
            .join()
            .map_err(|_| anyhow!("the garbage peer panicked"))??;
        garbage = json!({"peer_id": g.peer_id, "sent": g.sent, "peers": g.peers});
    }
    let mut hostile = Vec::new();
    for t in hostile_threads {
        let g = t.join().map_err(|_| anyhow!("a hostile peer panicked"))??;
        hostile
            .push(json!({"peer_id": g.peer_id, "sent": g.sent, "spam": g.spam, "peers": g.peers}));
    }

    // What the protocol crate computes offline from every attestation written.
    let all = written.all();
    let mut envelopes = Vec::with_capacity(all.len());
    for w in &all {
        envelopes.push(envelope(&nodes[w.writer], &w.id)?);
    }
    // The communities and their memberships and ends, which the connector shares depend on.
    for com in &communities {
        for id in &com.attestations {
            envelopes.push(envelope(&nodes[com.node], id)?);
        }
    }
    let state = State::from_envelopes(envelopes.iter().map(Vec::as_slice), now_ms()?);
    // Each market's (attestation count, ledger root): the count catches a market whose
    // ledger is still empty.
    let expected: HashMap<String, (usize, String)> = seller_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let pk = PublicKey::from_hex(k).unwrap_or(PublicKey([0; 32]));
            let count = all.iter().filter(|w| w.market == i).count();
            (k.clone(), (count, hex::encode(state.ledger(&pk).root())))
        })
        .collect();

    // Hostile peers' valid spam is part of the first seller's market wherever it got in:
    // there the nodes must agree on the root (spam referrals pay nobody) and with each other
    // on the count, not with the scenario's count.
    let spammed = (args.hostile > 0).then(|| seller_keys[0].clone());
    let agree = |n: &Node| -> bool { holds(n, &expected, spammed.as_deref()) };
    let converged = wait_until(timeout, || {
        nodes.iter().all(&agree)
            && spammed
                .as_deref()
                .is_none_or(|m| same_count(&nodes, m).is_some())
    })
    .is_ok();
    let spam_held = spammed.as_deref().and_then(|m| same_count(&nodes, m));
    for h in &mut hostile {
        let id = h["peer_id"].as_str().unwrap_or_default().to_string();
        let banned_by = nodes
            .iter()
            .filter(|n| {
                n.get("/v1/peers").is_ok_and(|v| {
                    v["banned"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|p| *p == id.as_str()))
                })
            })
            .count();
        h["banned_by"] = json!(banned_by);
    }
    let hostile_banned = hostile.iter().all(|h| h["banned_by"].as_u64() > Some(0));
    let max_disk_kib = nodes.iter().map(|n| disk_kib(&n.dir)).max().unwrap_or(0);
    let convergence_ms = last_write.elapsed().as_millis() as u64;
    let disagreeing: Vec<usize> = nodes
        .iter()
        .filter(|n| !agree(n))
        .map(|n| n.index)
        .collect();
    let (communities_summary, removed_member, communities_ok) = community_summary(
        &nodes,
        &communities,
        removal.as_ref(),
        &state,
        &envelopes,
        &seller_keys,
    )?;

    let mut delays: Vec<u64> = pollers
        .into_iter()
        .flatten()
        .flat_map(Poller::finish)
        .collect();
    delays.sort_unstable();
    let p99_ok = args.max_p99_ms.is_none_or(|m| quantile(&delays, 0.99) <= m);

    let banned_by = match garbage["peer_id"].as_str() {
        Some(g) => nodes
            .iter()
            .filter(|n| {
                n.get("/v1/peers").is_ok_and(|v| {
                    v["banned"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|p| p == g))
                })
            })
            .count(),
        None => 0,
    };
    if let Value::Object(m) = &mut garbage {
        m.insert("banned_by".into(), json!(banned_by));
    }
    let per_node: Vec<Value> = nodes
        .iter()
        .filter_map(|n| Some((n.rss_kib(), n.get("/v1/peers").ok()?)))
        .map(|(rss, v)| json!({"received": v["stats"]["gossip_received"], "rejected": v["stats"]["gossip_rejected"],
                        "peers": v["peers"].as_array().map_or(0, Vec::len), "banned": v["banned"],
                        "rss_kib": rss}))
        .collect();
    let bytes: u64 = nodes
        .iter()
        .filter_map(|n| n.get("/v1/peers").ok())
        .map(|v| v["stats"]["bytes_in"].as_u64().unwrap_or(0))
        .sum();
    let max_rss_kib = nodes.iter().filter_map(Node::rss_kib).max().unwrap_or(0);

    let mut late = Value::Null;
    let mut late_converged = true;
    if args.late_joiner && converged {
        let boots = vec![nodes[0].p2p_addr()];
        let mut n = Node::new(nodes.len(), root, bin, boots)?;
        n.start()?;
        let mut expected_late = expected.clone();
        if let Some((market, envs)) = &preloaded {
            let st = State::from_envelopes(envs.iter().map(Vec::as_slice), now_ms()?);
            expected_late.insert(
                market.to_hex(),
                (envs.len(), hex::encode(st.ledger(market).root())),
            );
        }
        let t0 = Instant::now();
        let cpu0 = n.cpu_ms();
        for k in expected_late.keys() {
            n.post("/v1/markets/follow", &json!({ "market": k }))?;
        }
        late_converged =
            wait_until(timeout, || holds(&n, &expected_late, spammed.as_deref())).is_ok();
        let ms = t0.elapsed().as_millis() as u64;
        // What the catch-up cost the joiner: its CPU, and the envelopes it was sent twice.
        let cpu_ms = n.cpu_ms().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
        let duplicates = n.metric("passalong_ingested_total{outcome=\"duplicate\"}");
        late = json!({"caught_up": late_converged, "ms": ms, "cpu_ms": cpu_ms,
                      "duplicates": duplicates,
                      "rss_kib": n.rss_kib(),
                      "attestations": all.len() + preloaded.as_ref().map_or(0, |p| p.1.len())});
        faults.push("late joiner".into());
        nodes.push(n);
    }
    let max_rss_kib = nodes
        .iter()
        .filter_map(Node::rss_kib)
        .max()
        .unwrap_or(0)
        .max(max_rss_kib);
    let rss_ok = args.max_rss_mib.is_none_or(|m| max_rss_kib <= m * 1024);
    let disk_ok = args.max_disk_mib.is_none_or(|m| max_disk_kib <= m * 1024);
    for n in &mut nodes {
        n.stop();
    }
    Ok(json!({
        "nodes": args.nodes,
        "converged": converged && late_converged && rss_ok && disk_ok
            && (!args.garbage || banned_by > 0) && hostile_banned && p99_ok && communities_ok,
        "p99_within_bound": p99_ok,
        "rss_within_bound": rss_ok,
        "disk_within_bound": disk_ok,
        "roots_agree": converged,
        "disagreeing": disagreeing,
        "attestations": all.len(),
        "scenario_ms": scenario_ms,
        "p50_ms": quantile(&delays, 0.5),
        "p99_ms": quantile(&delays, 0.99),
        "samples": delays.len(),
        "convergence_ms": convergence_ms,
        "bytes": bytes,
        "max_rss_kib": max_rss_kib,
        "faults": faults,
        "garbage": garbage,
        "hostile": hostile,
        "spam_market_attestations": spam_held,
        "max_disk_kib": max_disk_kib,
        "late_joiner": late,
        "communities": communities_summary,
        "communities_ms": communities_ms,
        "removed_member": removed_member,
        "per_node": per_node,
    }))
}

/// Whether `n` holds every expected (market → root).
fn holds(n: &Node, expected: &HashMap<String, (usize, String)>, spammed: Option<&str>) -> bool {
    let Ok(v) = n.get("/v1/markets") else {
        return false;
    };
    let held: HashMap<String, (usize, String)> = v["markets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["market"].as_str().unwrap_or_default().to_string(),
                (
                    m["attestations"].as_u64().unwrap_or(0) as usize,
                    m["root"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    expected.iter().all(|(k, r)| match held.get(k) {
        Some(h) if spammed == Some(k.as_str()) => h.1 == r.1 && h.0 >= r.0,
        h => h == Some(r),
    })
}

/// The attestation count every node reports for `market`, if they all report the same.
fn same_count(nodes: &[Node], market: &str) -> Option<u64> {
    let counts: Vec<u64> = nodes
        .iter()
        .filter_map(|n| n.get("/v1/markets").ok())
        .filter_map(|v| {
            v["markets"]
                .as_array()?
                .iter()
                .find(|m| m["market"] == market)?["attestations"]
                .as_u64()
        })
        .collect();
    (counts.len() == nodes.len() && counts.windows(2).all(|w| w[0] == w[1])).then(|| counts[0])
}

/// The size of the files under `dir`, in KiB.
fn disk_kib(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total / 1024
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64)
}

fn envelope(n: &Node, id: &str) -> Result<Vec<u8>> {
    let v = n.get(&format!("/v1/attestations/{id}"))?;
    hex::decode(v["envelope"].as_str().unwrap_or_default()).context("envelope hex")
}

fn set_blocked(nodes: &[Node], pairs: &[(usize, usize)], block: bool) -> Result<()> {
    let path = if block {
        "/v1/peers/block"
    } else {
        "/v1/peers/unblock"
    };
    for &(a, b) in pairs {
        for (x, y) in [(a, b), (b, a)] {
            if nodes[x].alive() {
                nodes[x].post(path, &json!({ "peer": nodes[y].peer_id }))?;
            }
        }
    }
    Ok(())
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            return Err(anyhow!("timed out"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The summary as a table.
pub fn table(s: &Value) -> String {
    let rows = [
        ("nodes", s["nodes"].to_string()),
        ("converged", s["converged"].to_string()),
        ("attestations", s["attestations"].to_string()),
        ("scenario", format!("{} ms", s["scenario_ms"])),
        ("propagation p50", format!("{} ms", s["p50_ms"])),
        ("propagation p99", format!("{} ms", s["p99_ms"])),
        (
            "convergence after last write",
            format!("{} ms", s["convergence_ms"]),
        ),
        ("payload bytes received", s["bytes"].to_string()),
        ("largest node RSS", format!("{} KiB", s["max_rss_kib"])),
        ("faults", s["faults"].to_string()),
        ("garbage peer", s["garbage"].to_string()),
        ("late joiner", s["late_joiner"].to_string()),
    ];
    let mut t = String::new();
    for (k, v) in rows {
        t.push_str(&format!("{k:<30} {v}\n"));
    }
    for (c, com) in s["communities"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let v = format!(
            "node{}: {} members ({} admitted), {} referrals by them, connector earned {} (its node says {})",
            com["node"],
            com["members"],
            com["admitted"],
            com["member_referrals"],
            com["connector_earned_minor"],
            com["node_says_earned_minor"]
        );
        t.push_str(&format!("{:<30} {v}\n", format!("community {c}")));
    }
    let r = &s["removed_member"];
    if !r.is_null() {
        let v = format!(
            "{}: connector share of a sale through her referral from before {}, from after {}",
            r["login"].as_str().unwrap_or_default(),
            r["connector_share_before_minor"],
            r["connector_share_after_minor"]
        );
        t.push_str(&format!("{:<30} {v}\n", "removed member"));
    }
    t
}

/// The first community's removal midway, and the sales that show what it changed.
struct Removal {
    /// The community (index) and the member removed.
    community: usize,
    member: usize,
    /// From when her referrals pay the connector nothing.
    ends_at_ms: u64,
    /// Her own node (index), started with her exported key.
    own_node: usize,
    /// The seller (node index) of the offer both her referrals pass along.
    seller: usize,
    /// Her referral from before the removal, and the sale through it after.
    before: (String, String),
    /// Her referral from after the removal, and the sale through it.
    after: (String, String),
    /// Per community, a sale through its first member's first referral (the first one's is
    /// `before`'s).
    sales: Vec<String>,
    /// Per community, a sale through each own-node member's first referral.
    own_sales: Vec<Vec<String>>,
    /// How long it all took (the removal, her export, her node's start, the sales), ms.
    ms: u64,
}

/// Midway: the first community removes its first member, who leaves with her key for a node
/// of her own (see `community.rs`; it joins the testnet's nodes, follows every market and
/// must reach the offline roots too) and passes her first offer along again from there,
/// naming the community. Then a sale through each community's first member's first referral
/// (the removed member's from before the removal among them), and one through her referral
/// from after.
#[allow(clippy::too_many_arguments)]
fn midway(
    nodes: &mut Vec<Node>,
    pollers: &mut Vec<Option<Poller>>,
    communities: &mut [Community],
    offers: &[OfferState],
    written: &Written,
    seller_keys: &[String],
    root: &Path,
) -> Result<Removal> {
    let t = Instant::now();
    let k = communities[0].node;
    let ends_at_ms = communities[0].remove(&nodes[k], 0)?;
    let (o, before) = communities[0].members[0]
        .first
        .clone()
        .ok_or_else(|| anyhow!("the removed member made no referral"))?;
    let seller = offers[o].seller;
    let mut boots = vec![nodes[0].p2p_addr(), nodes[seller].p2p_addr()];
    boots.dedup();
    let own = communities[0].own_node(&nodes[k], 0, nodes.len(), root, boots)?;
    for key in seller_keys {
        own.post("/v1/markets/follow", &json!({ "market": key }))?;
    }
    let v = own.post(
        "/v1/referrals",
        &json!({ "from": offers[o].link, "community": communities[0].id }),
    )?;
    let after = id_of(&v)?;
    let after_link = v["link"].as_str().unwrap_or_default().to_string();
    written.push(&after, own.index, seller);
    let own_node = own.index;
    // Her node's propagation is not measured: its poller would time its catching up.
    nodes.push(own);
    pollers.push(None);
    let sale = |o: usize, order: String, via: &str| -> Result<String> {
        let s = offers[o].seller;
        let v = nodes[s].post(
            "/v1/receipts",
            &json!({"offer": offers[o].id, "order": order, "amount_minor": 10_000,
                    "buyer": buyer(200), "via": via}),
        )?;
        let id = id_of(&v)?;
        written.push(&id, s, s);
        Ok(id)
    };
    let mut sales = Vec::with_capacity(communities.len());
    for (c, com) in communities.iter().enumerate() {
        let (o, via) = com.members[0]
            .first
            .clone()
            .ok_or_else(|| anyhow!("community {c}'s first member made no referral"))?;
        sales.push(sale(o, format!("community-{c}-first-referral"), &via)?);
    }
    let mut own_sales = Vec::with_capacity(communities.len());
    for (c, com) in communities.iter().enumerate() {
        let mut these = Vec::new();
        for m in &com.own {
            if let Some((o, link)) = &m.first {
                let order = format!("community-{c}-node{}-first-referral", m.node);
                these.push(sale(*o, order, link)?);
            }
        }
        own_sales.push(these);
    }
    // Her link carries the chain: the seller's checkout imports it.
    let after_sale = sale(o, "community-0-after-removal".into(), &after_link)?;
    Ok(Removal {
        community: 0,
        member: 0,
        ends_at_ms,
        own_node,
        seller,
        before: (before, sales[0].clone()),
        after: (after, after_sale),
        sales,
        own_sales,
        ms: t.elapsed().as_millis() as u64,
    })
}

/// Per community, what its connector earned offline and what its node says (they must be the
/// same, and more than nothing); and the removed member's two sales: the one through her
/// referral from before the removal paid the connector, the one through her referral from
/// after paid it nothing. The summaries and whether every check holds.
fn community_summary(
    nodes: &[Node],
    communities: &[Community],
    removal: Option<&Removal>,
    state: &State,
    envelopes: &[Vec<u8>],
    seller_keys: &[String],
) -> Result<(Vec<Value>, Value, bool)> {
    let sellers: Vec<PublicKey> = seller_keys
        .iter()
        .filter_map(|k| PublicKey::from_hex(k).ok())
        .collect();
    let mut ok = true;
    let mut out = Vec::new();
    let named = community::named(envelopes);
    for (c, com) in communities.iter().enumerate() {
        let connector = PublicKey::from_hex(&com.connector)?;
        let id = passalong_protocol::Id::from_hex(&com.id)?;
        let referrals: Vec<&String> = com
            .members
            .iter()
            .flat_map(|m| &m.referrals)
            .chain(com.own.iter().flat_map(|m| &m.referrals))
            .collect();
        let naming = referrals
            .iter()
            .filter(|r| named.get(r.as_str()) == Some(&Some(id)))
            .count();
        ok &= naming == referrals.len();
        let offline = community::earned(state, &sellers, &connector);
        let on_node = community::earned_on(&nodes[com.node]).ok();
        ok &= on_node == Some(offline) && offline > 0;
        let sale = removal.and_then(|r| r.sales.get(c));
        let first_sale_share = match sale {
            Some(r) => Some(community::share_of(
                envelopes,
                r,
                &sellers,
                &connector,
                now_ms()?,
            )?),
            None => None,
        };
        ok &= first_sale_share.is_some_and(|s| s > 0);
        let mut own_shares = Vec::new();
        for r in removal
            .and_then(|r| r.own_sales.get(c))
            .into_iter()
            .flatten()
        {
            let share = community::share_of(envelopes, r, &sellers, &connector, now_ms()?)?;
            ok &= share > 0;
            own_shares.push(share as u64);
        }
        ok &= own_shares.len() == com.own.len();
        out.push(json!({
            "node": com.node,
            "id": com.id,
            "connector": com.connector,
            "members": com.members.len(),
            "admitted": com.admitted().count(),
            "removed": com.members.iter().filter(|m| m.removed).map(|m| m.login.clone()).collect::<Vec<_>>(),
            "own_node_members": com.own.iter().map(|m| json!({"node": m.node, "key": m.key,
                "membership": m.membership, "referrals": m.referrals.len()})).collect::<Vec<_>>(),
            "member_referrals": referrals.len(),
            "member_referrals_naming_it": naming,
            "rss_after_joins_kib": com.rss_after_joins_kib,
            "connector_earned_minor": offline as u64,
            "node_says_earned_minor": on_node.map(|e| e as u64),
            "first_sale_connector_share_minor": first_sale_share.map(|s| s as u64),
            "own_node_first_sale_connector_share_minor": own_shares,
        }));
    }
    let removed = match removal {
        None => Value::Null,
        Some(r) => {
            let com = &communities[r.community];
            let connector = PublicKey::from_hex(&com.connector)?;
            let share = |receipt: &str| -> Result<u128> {
                community::share_of(envelopes, receipt, &sellers, &connector, now_ms()?)
            };
            let (before, after) = (share(&r.before.1)?, share(&r.after.1)?);
            let paid_nothing_after = before > 0 && after == 0;
            ok &= paid_nothing_after;
            json!({
                "community": r.community,
                "login": com.members[r.member].login,
                "member": com.members[r.member].key,
                "seller": r.seller,
                "ends_at_ms": r.ends_at_ms,
                "own_node": r.own_node,
                "ms": r.ms,
                "referral_before": r.before.0,
                "sale_before": r.before.1,
                "connector_share_before_minor": before as u64,
                "referral_after": r.after.0,
                "sale_after": r.after.1,
                "connector_share_after_minor": after as u64,
                "paid_nothing_after": paid_nothing_after,
            })
        }
    };
    Ok((out, removed, ok))
}
