//! A community node's whole journey, with real processes and a real browser (issue 16): a
//! seller S whose offer gives a connector share; a community node K whose `public_url` is its
//! API; two neighbours hosted on K, Anna and Bea, each in her own Chromium profile, who join
//! through invites whose links are read from the QR codes on the connector's page; Cleo, who
//! joins with her own node (`community join URL`); and Dan, an outsider with a personal node.
//!
//! The offer goes along Anna → Bea → Cleo and Bea → Dan (in the browser for the hosted members,
//! with the CLI for the nodes); S's checkout records sales through the API. S's ledger pays K
//! the connector share of the sales whose nearest referrer is an admitted member, and each
//! member her hop share, to the minor unit as docs/payout-rules.md computes them. Anna then
//! exports her key with the `/account` button, starts a node of her own with `init
//! --import-key`, and a later sale through her referral credits the same key on her node and
//! on S's. K removes Bea on its page; she leaves with her key for a node of her own, and her
//! new referral, naming the community still, pays K nothing, while her earlier one still does.
//!
//! One scenario, [`journey`], on two layouts of hosts ([`Hosting`]): every process on this
//! host's loopback ([`Loopback`], this module's test, in a plain `cargo test`), or a small
//! internet of network namespaces ([`crate::nat::Internet`], `nat::a_community_node_hosts_…`,
//! root, `.ci/run`'s `--ignored nat::`) where K is public with a relay for its members, Cleo's
//! node is behind NAT, reaches K from her `membership.json` and the seller only through K's
//! relay, and Dan's is behind another NAT that K's relay refuses; the browsers run on this
//! host either way.
//!
//! Screenshots go to `target/screenshots/` (`neighbourhood-*.png`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use crate::browser::{
    api_addr, click, fill, qr_codes, shot, sign_in_operator, token, wait_text, Driver,
};
use crate::common::*;
use crate::nat::{on_host, referral_community, LogsOnPanic};

const ANNA_PASSWORD: &str = "correct horse battery";
const BEA_PASSWORD: &str = "staple gun lantern";

/// Polls `f` every 250 ms until it holds, for at most `secs`.
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// [`with_password`], which must succeed.
fn with_password_ok(cmd: Command, dir: &Path, args: &[&str], password: &str) -> Output {
    let out = with_password(cmd, dir, args, password);
    assert!(
        out.status.success(),
        "passalong {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The earned amounts of `who` (name, key) in `seller`'s ledger on `d`.
fn earnings(d: &Daemon, seller: &str, who: &[(&str, &str)]) -> Vec<(String, Option<i64>)> {
    let ledger = d.json(&["ledger", "--seller", seller]);
    who.iter()
        .map(|(name, key)| (name.to_string(), line(&ledger, key).map(|l| l.0)))
        .collect()
}

/// Waits until `d`'s ledger of `seller` shows exactly `want` (name, key, earned) — the
/// connector's share depends on Memberships and Ends that arrive from K.
fn wait_ledger(d: &Daemon, seller: &str, want: &[(&str, &str, i64)]) {
    let who: Vec<(&str, &str)> = want.iter().map(|(n, k, _)| (*n, *k)).collect();
    let expected: Vec<(String, Option<i64>)> = want
        .iter()
        .map(|(n, _, e)| (n.to_string(), Some(*e)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = earnings(d, seller, &who);
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger never showed {expected:?}; it shows {got:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The seller's checkout (on its host) confirms a sale through its API, with the buyer's
/// share link token.
fn sale(s: &Daemon, offer: &str, order: &str, amount_minor: u64, via: &str) {
    let (url, auth) = (
        format!("http://{}/v1/receipts", api_addr(s)),
        format!("Bearer {}", token(s)),
    );
    let receipt = json!({"offer": offer, "order": order, "amount_minor": amount_minor,
                         "buyer": "3".repeat(64), "via": via});
    let status = on_host(s, move || {
        ureq::post(&url)
            .set("Authorization", &auth)
            .send_json(receipt)
            .expect("receipt")
            .status()
    });
    assert_eq!(status, 201);
}

/// The token of a share link's URL (`…/l/<token>`).
fn token_of(url: &str) -> String {
    url.split("/l/").nth(1).expect("a share link").to_string()
}

/// The connector makes an invite on its page; its link is read from the QR code in a
/// screenshot, and is the link the page shows.
async fn invite(cb: &Client, base: &str, note: &str, name: &str) -> String {
    cb.goto(&format!("{base}/community"))
        .await
        .expect("community");
    fill(cb, "note", note).await;
    click(cb, "#invite").await;
    let shown = wait_text(cb, "#invite-link", "/join/").await;
    let png = shot(cb, name).await;
    let codes = qr_codes(&png);
    assert_eq!(codes, vec![shown.clone()], "the QR code is the invite link");
    assert!(shown.starts_with(base), "at public_url: {shown}");
    codes.into_iter().next().expect("one code")
}

/// A neighbour opens her invite in her own browser and joins as a hosted member.
async fn join(b: &Client, url: &str, login: &str, password: &str, name: &str) {
    b.goto(url).await.expect("join page");
    wait_text(b, "h1", "Join Riverside").await;
    fill(b, "login", login).await;
    fill(b, "password", password).await;
    fill(b, "password2", password).await;
    shot(b, name).await;
    click(b, "#join").await;
    wait_text(b, "h1", "Home").await;
    wait_text(b, "header nav", "Account").await;
}

/// A hosted member opens a share link's page on K, passes it along through her community
/// and gets her own link (its URL).
async fn pass_along(b: &Client, base: &str, link_token: &str, name: &str) -> String {
    b.goto(&format!("{base}/l/{link_token}"))
        .await
        .expect("share page");
    wait_text(b, "h1", "A lamp").await;
    click(b, "a[href^='/pass']").await;
    wait_text(b, "#through", "Through Riverside").await;
    click(b, "#refer").await;
    let url = wait_text(b, "#my-link", "/l/pl1.").await;
    shot(b, name).await;
    url
}

/// A node of the journey other than K: where it runs and whom it knows when it starts is its
/// [`Hosting`]'s.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node {
    /// S, the seller.
    Seller,
    /// Cleo's own node, a member's.
    Cleo,
    /// Dan's, an outsider's.
    Dan,
    /// The node Anna runs with her exported key; it knows K from the key file only.
    AnnasOwn,
    /// The node Bea runs after her removal.
    BeasOwn,
}

/// Where the journey's daemons run (the browsers run on this host).
pub(crate) trait Hosting {
    /// Starts K, the community node, in `dir` (initialised) with more flags of `run`;
    /// returns it and its public_url, which this host's browsers and every node's CLI reach.
    fn community_node(&mut self, dir: &Path, flags: &[&str]) -> (Daemon, String);
    /// Starts `who` in `dir` with more flags of `run`, once K runs.
    fn node(&self, who: Node, dir: &Path, flags: &[&str]) -> Daemon;
    /// Checks what holds once Cleo's node has joined through her invite (and may restart it).
    fn joined(&self, _c: &mut Daemon) {}
    /// Checks, once every ledger agrees, what the network did: S, Cleo's node, Dan's.
    fn behind_nat(&self, _s: &Daemon, _c: &Daemon, _d: &Daemon) {}
}

/// Every daemon on this host's loopback, K's API at its public_url; every node but Anna's
/// own (which knows K from her key file) bootstraps from K.
#[derive(Default)]
pub(crate) struct Loopback {
    k_addr: String,
}

impl Hosting for Loopback {
    fn community_node(&mut self, dir: &Path, flags: &[&str]) -> (Daemon, String) {
        let api = format!("127.0.0.1:{}", free_port());
        let base = format!("http://{api}");
        let k = Daemon::start_with(
            dir,
            &[&["--api", &api, "--public-url", &base], flags].concat(),
        );
        self.k_addr = k.p2p_addr();
        (k, base)
    }

    fn node(&self, who: Node, dir: &Path, flags: &[&str]) -> Daemon {
        match who {
            Node::AnnasOwn => Daemon::start_with(dir, flags),
            _ => Daemon::start_with(dir, &[&["--bootstrap", &self.k_addr[..]], flags].concat()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_node_hosts_neighbours_pays_its_connector_and_lets_them_leave() {
    journey(&mut Loopback::default()).await;
}

/// Issue 16's must-show scenario on `net`'s hosts (see the module's doc).
pub(crate) async fn journey(net: &mut impl Hosting) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let sync = ["--sync-interval-secs", "1"];
    let _logs = LogsOnPanic(
        ["k", "s", "c", "d", "anna-node", "bea-node"]
            .iter()
            .map(|n| tmp.path().join(format!("{n}.log")))
            .collect(),
    );

    // K: the community node, at its public_url, with the cheap password cost and its relay
    // for members only.
    let k_dir = tmp.path().join("k");
    assert!(cli_in(&k_dir, &["init"]).status.success());
    let config = std::fs::read_to_string(k_dir.join("config.toml")).expect("config");
    let edited = config
        .replace("member_kdf = \"member\"", "member_kdf = \"minimum\"")
        .replace("# relay_members_only = true", "relay_members_only = true");
    assert!(
        edited.contains("member_kdf = \"minimum\"") && edited.contains("\nrelay_members_only"),
        "the config names member_kdf and relay_members_only"
    );
    std::fs::write(k_dir.join("config.toml"), edited).expect("config");
    let (k, base) = net.community_node(&k_dir, &sync);
    let connector = k.public_key();
    let s = net.node(Node::Seller, &tmp.path().join("s"), &sync);
    let mut c = net.node(Node::Cleo, &tmp.path().join("c"), &sync);
    let d = net.node(Node::Dan, &tmp.path().join("d"), &sync);
    let (seller, cleo, dan) = (s.public_key(), c.public_key(), d.public_key());
    let driver = Driver::start();

    // The connector founds the community on its page and invites three neighbours.
    let cb = driver.browser(&tmp.path().join("profile-k")).await;
    sign_in_operator(&cb, &base, &k).await;
    cb.goto(&format!("{base}/community"))
        .await
        .expect("community");
    fill(&cb, "name", "Riverside").await;
    click(&cb, "#found").await;
    wait_text(&cb, "h1", "Community Riverside").await;
    let for_anna = invite(&cb, &base, "Anna from number 12", "neighbourhood-invite").await;
    let for_bea = invite(&cb, &base, "Bea", "neighbourhood-invite-2").await;
    let for_cleo = invite(&cb, &base, "Cleo (own node)", "neighbourhood-invite-3").await;

    // Anna and Bea join in their own browsers; Cleo with her own node and key.
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let ab = driver
        .browser_downloading(&tmp.path().join("profile-anna"), &downloads, &base)
        .await;
    let bb = driver.browser(&tmp.path().join("profile-bea")).await;
    join(&ab, &for_anna, "anna", ANNA_PASSWORD, "neighbourhood-join").await;
    join(&bb, &for_bea, "bea", BEA_PASSWORD, "neighbourhood-join-2").await;
    let joined = c.json(&["community", "join", &for_cleo]);
    assert_eq!(joined["connector"], connector.as_str());
    let community = joined["community"].as_str().expect("id").to_string();
    net.joined(&mut c);
    let members = k.json(&["community", "members"]);
    let key_of = |login: &str| -> String {
        members["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["login"] == login)
            .and_then(|m| m["key"].as_str())
            .unwrap_or_else(|| panic!("{login} is a member: {members}"))
            .to_string()
    };
    let (anna, bea) = (key_of("anna"), key_of("bea"));
    assert_eq!(members["members"].as_array().map(Vec::len), Some(3));

    // S sells a lamp: a 10 % pool halved hop by hop, 5 % for the connector.
    let offer = s.json(&[
        "offer",
        "publish",
        "--title",
        "A lamp",
        "--price",
        "10000",
        "--currency",
        "EUR",
        "--pool-bps",
        "1000",
        "--rule",
        "geometric:5000",
        "--connector-bps",
        "500",
    ]);
    let offer_id = offer["id"].as_str().expect("id").to_string();
    let offer_link = offer["link"].as_str().expect("link").to_string();

    // Anna → Bea → Cleo, and Bea → Dan.
    let anna_url = pass_along(&ab, &base, &offer_link, "neighbourhood-pass-anna").await;
    let bea_url = pass_along(&bb, &base, &token_of(&anna_url), "neighbourhood-pass-bea").await;
    assert!(anna_url.starts_with(&base) && bea_url.starts_with(&base));
    let cleo_ref = c.json(&["refer", &bea_url]);
    let cleo_link = cleo_ref["link"].as_str().expect("link").to_string();
    let dan_ref = d.json(&["refer", &bea_url]);
    let dan_link = dan_ref["link"].as_str().expect("link").to_string();
    // Cleo's node names her community by itself; Dan's names none.
    let named = |d: &Daemon, r: &Value| {
        referral_community(d, r["id"].as_str().expect("id")).expect("it holds the referral")
    };
    assert_eq!(named(&c, &cleo_ref).as_deref(), Some(community.as_str()));
    assert_eq!(named(&d, &dan_ref), None);

    // Pool = floor(amount × 1000 / 10000), halved: hop 1 floor(pool / 2), hop 2 half the
    // rest, …; the connector floor(amount × 500 / 10000) when hop 1's referrer is admitted
    // and her referral names the community.
    // S-1, 99.99 via Cleo: pool 999 → Cleo 499, Bea 250, Anna 125; K 499.
    sale(&s, &offer_id, "S-1", 9999, &cleo_link);
    // S-2, 100.00 via Dan (no community): Dan 500, Bea 250, Anna 125; K nothing.
    sale(&s, &offer_id, "S-2", 10000, &dan_link);
    // S-3, 80.00 via Bea: pool 800 → Bea 400, Anna 200; K 400.
    sale(&s, &offer_id, "S-3", 8000, &token_of(&bea_url));
    wait_ledger(
        &s,
        &seller,
        &[
            ("K", &connector, 899),
            ("Anna", &anna, 450),
            ("Bea", &bea, 900),
            ("Cleo", &cleo, 499),
            ("Dan", &dan, 500),
        ],
    );
    // S holds Cleo's referral as her node made it.
    assert_eq!(named(&s, &cleo_ref).as_deref(), Some(community.as_str()));
    let paid = started.elapsed();

    // Anna exports her key with the button on /account (sealed at the export cost).
    ab.goto(&format!("{base}/account")).await.expect("account");
    wait_text(&ab, "#export", "Export my key").await;
    let p = ab
        .find(Locator::Css("#export input[name=password]"))
        .await
        .expect("password field");
    p.send_keys(ANNA_PASSWORD).await.expect("type");
    shot(&ab, "neighbourhood-export").await;
    click(&ab, "#export-key").await;
    let key_file = downloads.join("passalong-anna.key");
    wait_for("her key file to download", 60, || {
        std::fs::read_to_string(&key_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some()
    });
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(&key_file).expect("key file")).expect("json");
    assert_eq!(file["public_key"], anna.as_str());

    // Her own node: the key, her history, and a later sale's share under the same key.
    let n_dir = tmp.path().join("anna-node");
    let out = with_password_ok(
        Command::new(BIN),
        &n_dir,
        &[
            "init",
            "--import-key",
            key_file.to_str().expect("path"),
            "--json",
        ],
        ANNA_PASSWORD,
    );
    let imported: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(imported["public_key"], anna.as_str());
    assert_eq!(imported["community"], community.as_str());
    let n = net.node(Node::AnnasOwn, &n_dir, &sync);
    assert_eq!(n.public_key(), anna);
    // S-4, 100.00 via Anna (still admitted): Anna 500; K 500.
    sale(&s, &offer_id, "S-4", 10000, &token_of(&anna_url));
    wait_ledger(
        &s,
        &seller,
        &[("K", &connector, 1399), ("Anna", &anna, 950)],
    );
    wait_ledger(
        &n,
        &seller,
        &[
            ("K", &connector, 1399),
            ("Anna", &anna, 950),
            ("Bea", &bea, 900),
        ],
    );

    // The connector removes Bea on its page; her session ends.
    cb.goto(&format!("{base}/community"))
        .await
        .expect("community");
    let listed = wait_text(&cb, "#members", "bea").await;
    assert!(listed.contains("own node"), "{listed}");
    shot(&cb, "neighbourhood-members").await;
    click(&cb, &format!("tr[data-key='{bea}'] button.remove")).await;
    wait_text(&cb, "#confirm-remove", "cannot be undone").await;
    click(&cb, "#confirm").await;
    wait_text(&cb, "#removed", "was removed from the community").await;
    wait_text(&cb, "#members", "2 admitted now").await;
    bb.goto(&format!("{base}/")).await.expect("home");
    assert!(bb
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/signin"));

    // She leaves with her key (a removed member may export it) for a node of her own, and
    // passes Anna's link along again, naming the community still.
    let bea_key = tmp.path().join("bea.key");
    with_password_ok(
        k.command(),
        &k.dir,
        &[
            "member",
            "export-key",
            "--login",
            "bea",
            "--out",
            bea_key.to_str().expect("path"),
        ],
        BEA_PASSWORD,
    );
    let m_dir = tmp.path().join("bea-node");
    with_password_ok(
        Command::new(BIN),
        &m_dir,
        &["init", "--import-key", bea_key.to_str().expect("path")],
        BEA_PASSWORD,
    );
    let m = net.node(Node::BeasOwn, &m_dir, &sync);
    assert_eq!(m.public_key(), bea);
    let again = m.json(&["refer", &anna_url, "--community", &community]);
    assert_eq!(named(&m, &again).as_deref(), Some(community.as_str()));
    let bea_again = again["link"].as_str().expect("link").to_string();
    // S-5, 100.00 via her new referral: Bea 500, Anna 250; K nothing (she was removed).
    sale(&s, &offer_id, "S-5", 10000, &bea_again);
    // S-6, 60.00 via her earlier one: pool 600 → Bea 300, Anna 150; K 300.
    sale(&s, &offer_id, "S-6", 6000, &token_of(&bea_url));
    let last = [
        ("K", connector.as_str(), 1699),
        ("Anna", anna.as_str(), 1350),
        ("Bea", bea.as_str(), 1700),
        ("Cleo", cleo.as_str(), 499),
        ("Dan", dan.as_str(), 500),
    ];
    wait_ledger(&s, &seller, &last);
    // K computes the same, and so do Cleo's and Dan's nodes; K's page shows what it earned.
    wait_ledger(&k, &seller, &last);
    wait_ledger(&c, &seller, &last);
    wait_ledger(&d, &seller, &last);
    // Behind NAT, what the network did meanwhile.
    net.behind_nat(&s, &c, &d);
    cb.goto(&format!("{base}/community"))
        .await
        .expect("community");
    wait_text(&cb, "#earnings", "16.99 EUR").await;
    shot(&cb, "neighbourhood-earnings").await;

    let _ = (cb.close().await, ab.close().await, bb.close().await);
    drop(driver);
    eprintln!(
        "the community journey took {:?} (the first sales paid after {paid:?})",
        started.elapsed()
    );
}
