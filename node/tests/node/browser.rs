//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven over WebDriver, against two real daemons that gossip to each other:
//!
//! the seller signs in and publishes an offer with a checkout URL; its QR code, decoded from
//! a screenshot, is the link; a friend with her own node and browser profile opens the share
//! page, passes it along and gets her own link; its buy button goes to the checkout with the
//! token; the seller's checkout records the sale through the API with that token; both
//! dashboards show the sale, the chain and the shares in major units; the CSV downloads parse
//! and sum to the ledger; a settlement recorded in the form shows as settled. And the
//! refusals: a wrong token, a form without its CSRF token, a foreign Host, a foreign Origin.
//!
//! On a community node: a neighbour joins in her browser through an invite; the connector sees
//! her on its page, removes her after confirming; her session ends, and signed in again she
//! gets her pages read-only, her referral refused.
//!
//! Screenshots of the main pages go to `target/screenshots/`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// `chromedriver` on a free port, killed on drop; started again on another port if it dies
/// (or lost its port to another process before binding it) when a session is asked for.
pub(crate) struct Driver {
    process: std::sync::Mutex<DriverProcess>,
}

/// One run of `chromedriver`, with its log kept for the failure message.
struct DriverProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl DriverProcess {
    /// Started on a free port; started again (three tries in all) if it exits at its start.
    fn start() -> DriverProcess {
        let mut last = String::new();
        for _ in 0..3 {
            match DriverProcess::try_start() {
                Ok(p) => return p,
                Err(log) => {
                    eprintln!("chromedriver exited at its start:\n{log}");
                    last = log;
                }
            }
        }
        panic!("chromedriver exited at its start three times; its last log:\n{last}");
    }

    /// Started and listening, or the end of its log if it exited first.
    fn try_start() -> Result<DriverProcess, String> {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "passalong-chromedriver-{}-{port}.log",
            std::process::id()
        ));
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, with the browsers it starts: dropped, the driver ends
            // them all, even those of a test that failed before closing its sessions.
            .process_group(0)
            .spawn()
            .expect(
                "chromedriver is needed for the browser tests: apt-get install chromium chromium-driver",
            );
        let mut p = DriverProcess { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Listening on the port and still running: a listener there while it has exited is
        // another process's.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !p.running() {
            if !p.running() {
                return Err(tail(&p.log));
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(p)
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        // The whole group: killing chromedriver alone leaves its browsers running.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The end of a chromedriver log, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Driver {
    pub(crate) fn start() -> Driver {
        Driver {
            process: std::sync::Mutex::new(DriverProcess::start()),
        }
    }

    /// A new browser with its own fresh profile.
    pub(crate) async fn browser(&self, profile: &Path) -> Client {
        self.browser_with(profile, &["--window-size=1000,1400"])
            .await
    }

    /// A new browser with its own fresh profile and `extra` flags (window size, dark mode).
    async fn browser_with(&self, profile: &Path, extra: &[&str]) -> Client {
        self.browser_prefs(profile, extra, json!({})).await
    }

    /// A new browser with its own fresh profile whose downloads go to `downloads`, unasked,
    /// from `origin` too, which it takes as secure: Chromium blocks downloads over http but
    /// from loopback (a node's public_url on another address would be https).
    pub(crate) async fn browser_downloading(
        &self,
        profile: &Path,
        downloads: &Path,
        origin: &str,
    ) -> Client {
        let prefs = json!({
            "download.default_directory": downloads,
            "download.prompt_for_download": false,
        });
        let secure = format!("--unsafely-treat-insecure-origin-as-secure={origin}");
        self.browser_prefs(profile, &["--window-size=1000,1400", &secure], prefs)
            .await
    }

    /// A new browser with its own fresh profile, `extra` flags and Chromium preferences.
    async fn browser_prefs(&self, profile: &Path, extra: &[&str], prefs: Value) -> Client {
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "args": args, "binary": "/usr/bin/chromium", "prefs": prefs }),
        );
        for attempt in 1.. {
            let port = self.process.lock().expect("driver").port;
            let session =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await;
            let error = match session {
                Ok(client) => return client,
                Err(e) => e,
            };
            // A driver that died is started again, twice at most; a session refused by a
            // running driver is the test's failure.
            let mut process = self.process.lock().expect("driver");
            let log = tail(&process.log);
            assert!(
                attempt < 3 && !process.running(),
                "a WebDriver session of headless chromium: {error:?}\nchromedriver's log:\n{log}"
            );
            eprintln!("chromedriver on port {port} died ({error:?}); starting it again:\n{log}");
            *process = DriverProcess::start();
        }
        unreachable!("the loop returns or panics")
    }
}

/// A shop's checkout page: answers every request with a small page and reports the request
/// line's path.
fn checkout_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = "<!doctype html><title>Checkout</title><h1>Shop checkout</h1>";
            let mut s = &stream;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tx.send(path);
        }
    });
    (format!("http://{addr}/buy"), rx)
}

pub(crate) fn api_addr(d: &Daemon) -> String {
    std::fs::read_to_string(d.dir.join("api.addr"))
        .expect("api.addr")
        .trim()
        .to_string()
}

pub(crate) fn token(d: &Daemon) -> String {
    std::fs::read_to_string(d.dir.join("api-token"))
        .expect("api-token")
        .trim()
        .to_string()
}

pub(crate) fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

pub(crate) async fn shot(c: &Client, name: &str) -> Vec<u8> {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots().join(format!("{name}.png")), &png).expect("write screenshot");
    png
}

/// The QR codes in a PNG screenshot, decoded.
pub(crate) fn qr_codes(png_bytes: &[u8]) -> Vec<String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.line_size / w;
    let grey = |x: usize, y: usize| -> u8 {
        let i = y * info.line_size + x * channels;
        let px = &buf[i..i + channels.min(3)];
        (px.iter().map(|&v| u32::from(v)).sum::<u32>() / px.len() as u32) as u8
    };
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, grey);
    img.detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, text)| text))
        .collect()
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/signin"))
        .await
        .expect("signin page");
    let f = token_field(c).await;
    f.send_keys(token).await.expect("type token");
    f.send_keys("\u{E007}").await.expect("enter");
    wait_text(c, "h1", "Home").await;
}

/// Signs the browser `c` in to `k`'s dashboard at `base` with the operator's token.
pub(crate) async fn sign_in_operator(c: &Client, base: &str, k: &Daemon) {
    c.goto(&format!("{base}/signin/operator"))
        .await
        .expect("operator sign-in");
    let f = token_field(c).await;
    f.send_keys(&token(k)).await.expect("type token");
    f.send_keys("\u{E007}").await.expect("enter");
    wait_text(c, "h1", "Home").await;
}

/// The sign-in page's token field, once it is there (a CI run once found no field right after
/// the page's load; the page it got then is in the message).
async fn token_field(c: &Client) -> fantoccini::elements::Element {
    poll(c, "the sign-in page has no token field", async || {
        c.find(Locator::Id("token")).await.ok()
    })
    .await
}

/// Waits until the element `css` contains `text`; returns its text.
pub(crate) async fn wait_text(c: &Client, css: &str, text: &str) -> String {
    poll(c, &format!("{css} never showed {text:?}"), async || {
        let t = c.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
        t.contains(text).then_some(t)
    })
    .await
}

/// Tries `probe` every 200 ms until it gives a value, for up to 30 s; then fails with `what`
/// and the page's source.
async fn poll<T>(c: &Client, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; page: {}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn fill(c: &Client, id: &str, text: &str) {
    let e = c.find(Locator::Id(id)).await.expect(id);
    e.clear().await.expect("clear");
    e.send_keys(text).await.expect("type");
}

/// The session cookie a browser holds for its node (WebDriver sees HttpOnly cookies).
async fn session_cookie(c: &Client) -> String {
    let cookie = c
        .get_named_cookie("pl_session")
        .await
        .expect("a session cookie");
    format!("pl_session={}", cookie.value())
}

fn get_with_cookie(base: &str, path: &str, cookie: &str) -> String {
    ureq::get(&format!("{base}{path}"))
        .set("Cookie", cookie)
        .call()
        .expect("GET")
        .into_string()
        .expect("body")
}

/// Sums a CSV column of major-unit amounts as minor units (two decimals, EUR).
fn minor(text: &str) -> i64 {
    let (int, frac) = text.split_once('.').expect("two decimals");
    int.parse::<i64>().expect("int") * 100 + frac.parse::<i64>().expect("frac")
}

fn ledger_json(base: &str, seller: &str) -> Value {
    ureq::get(&format!("{base}/v1/ledger?seller={seller}"))
        .call()
        .expect("ledger")
        .into_json()
        .expect("json")
}

fn status(r: Result<ureq::Response, ureq::Error>) -> u16 {
    match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("transport error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_passes_an_offer_along_and_buys_in_the_browser() {
    let tmp = tempfile::tempdir().expect("tmp");
    let seller = Daemon::start_with(&tmp.path().join("seller"), &["--sync-interval-secs", "2"]);
    let friend = Daemon::start_with(
        &tmp.path().join("friend"),
        &[
            "--bootstrap",
            &seller.p2p_addr(),
            "--sync-interval-secs",
            "2",
        ],
    );
    let (s_base, f_base) = (
        format!("http://{}", api_addr(&seller)),
        format!("http://{}", api_addr(&friend)),
    );
    let (s_key, f_key) = (seller.public_key(), friend.public_key());
    let (checkout, bought) = checkout_server();
    let driver = Driver::start();

    // The seller signs in (a wrong token first) and publishes an offer with a checkout URL.
    let sb = driver.browser(&tmp.path().join("profile-seller")).await;
    sb.goto(&format!("{s_base}/")).await.expect("home");
    assert!(sb
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/signin"));
    shot(&sb, "signin").await;
    fill(&sb, "token", "not-the-token").await;
    sb.find(Locator::Css("form button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_text(&sb, ".error", "not this node's API token").await;
    sign_in(&sb, &s_base, &token(&seller)).await;

    sb.goto(&format!("{s_base}/offers")).await.expect("offers");
    fill(&sb, "title", "A record <live>").await;
    fill(&sb, "price", "20.00").await;
    fill(&sb, "checkout_url", &checkout).await;
    fill(&sb, "pool_percent", "10").await;
    // Preview first: the shares of a sample sale, computed on the server.
    sb.find(Locator::Css("button[formaction='/offers/preview']"))
        .await
        .expect("preview button")
        .click()
        .await
        .expect("click");
    let preview = wait_text(&sb, "#preview", "How a sale pays").await;
    // Pool 10 % of 20.00 = 2.00, halving: hop 1 1.00, hop 2 0.50.
    assert!(
        preview.contains("Hop 1 (nearest the buyer) 1.00 EUR"),
        "{preview}"
    );
    assert!(preview.contains("Hop 2 0.50 EUR"), "{preview}");
    shot(&sb, "offers-preview").await;
    sb.find(Locator::Id("publish"))
        .await
        .expect("publish")
        .click()
        .await
        .expect("click");
    wait_text(&sb, "h1", "A record <live>").await;
    let offer_link = wait_text(&sb, "#my-link", "/l/pl1.").await;
    let png = shot(&sb, "offer").await;
    // The QR code is the short link (its size does not grow with the chain); it opens the
    // same offer on this node.
    let offer_short = wait_text(&sb, "#my-short-link", "/l/pl1s.").await;
    let codes = qr_codes(&png);
    assert!(
        codes.contains(&offer_short),
        "the QR code read from the screenshot is the short link: {codes:?} vs {offer_short}"
    );
    sb.goto(&offer_short).await.expect("short link");
    wait_text(&sb, "h1", "A record <live>").await;

    // The friend opens the share page on her own node, passes it along, gets her own link.
    let fb = driver.browser(&tmp.path().join("profile-friend")).await;
    sign_in(&fb, &f_base, &token(&friend)).await;
    let offer_token = offer_link.split("/l/").nth(1).expect("token").to_string();
    fb.goto(&format!("{f_base}/l/{offer_token}"))
        .await
        .expect("share page");
    wait_text(&fb, "h1", "A record <live>").await;
    wait_text(&fb, "main", "20.00 EUR").await;
    shot(&fb, "share-page").await;
    fb.find(Locator::Css("a[href^='/pass']"))
        .await
        .expect("pass along")
        .click()
        .await
        .expect("click");
    wait_text(&fb, "main", "If a friend buys through your link").await;
    fb.find(Locator::Id("refer"))
        .await
        .expect("refer")
        .click()
        .await
        .expect("click");
    let my_link = wait_text(&fb, "#my-link", "/l/pl1.").await;
    assert_ne!(my_link, offer_link);
    let png = shot(&fb, "pass-along").await;
    let my_short = wait_text(&fb, "#my-short-link", "/l/pl1s.").await;
    assert!(
        qr_codes(&png).contains(&my_short),
        "her QR code is her short link"
    );
    fb.goto(&my_short).await.expect("her short link");
    wait_text(&fb, "main", "Passed along by 1 person").await;

    // Her link's share page: the buy button goes to the checkout with her token.
    let my_token = my_link.split("/l/").nth(1).expect("token").to_string();
    fb.goto(&my_link).await.expect("her share page");
    wait_text(&fb, "main", "Passed along by 1 person").await;
    fb.find(Locator::Id("buy"))
        .await
        .expect("buy")
        .click()
        .await
        .expect("click");
    let path = bought
        .recv_timeout(Duration::from_secs(20))
        .expect("the checkout was opened");
    assert_eq!(path, format!("/buy?passalong={my_token}"));
    wait_text(&fb, "h1", "Shop checkout").await;

    // The checkout records the sale through the seller's API with that token.
    let buyer = "4".repeat(64);
    let offer_id = ureq::get(&format!("{s_base}/v1/offers"))
        .call()
        .expect("offers")
        .into_json::<Value>()
        .expect("json")["offers"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = ureq::post(&format!("{s_base}/v1/receipts"))
        .set("Authorization", &format!("Bearer {}", token(&seller)))
        .send_json(
            json!({"offer": offer_id, "order": "A-1", "amount_minor": 2000,
                          "buyer": buyer, "via": my_token}),
        )
        .expect("receipt");
    assert_eq!(r.status(), 201);

    // Both dashboards show the sale, the chain and the shares in major units.
    sb.goto(&format!("{s_base}/offers/{offer_id}"))
        .await
        .expect("offer page");
    let sales = wait_text(&sb, "main", "A-1").await;
    assert!(
        sales.contains("20.00 EUR") && sales.contains("hop 1"),
        "{sales}"
    );
    shot(&sb, "offer-sales").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        fb.goto(&format!("{f_base}/")).await.expect("home");
        let t = fb
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text");
        if t.contains("Latest sales that paid me") && t.contains("A record <live>") {
            assert!(
                t.contains("1.00 EUR"),
                "her share: half the 2.00 EUR pool: {t}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sale never reached the friend's node: {t}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shot(&fb, "home").await;

    // The CSV downloads parse and sum to the ledger.
    let cookie = session_cookie(&sb).await;
    let ledger = ledger_json(&s_base, &s_key);
    let csv = get_with_cookie(&s_base, &format!("/ledger/{s_key}/ledger.csv"), &cookie);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("currency,participant,name,earned,refunded,settled,owed")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        ledger["entries"].as_array().expect("entries").len()
    );
    let earned_csv: i64 = rows.iter().map(|r| minor(r[3])).sum();
    let earned_json: i64 = ledger["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["earned"].as_i64().expect("n"))
        .sum();
    assert_eq!(earned_csv, earned_json);
    assert!(
        rows.iter().any(|r| r[1] == f_key && r[6] == "1.00"),
        "{csv}"
    );
    let payouts = get_with_cookie(&s_base, &format!("/ledger/{s_key}/payouts.csv"), &cookie);
    assert_eq!(
        payouts,
        format!("participant,name,currency,amount\n{f_key},,EUR,1.00\n")
    );

    // The refusals: a form without its CSRF token, a foreign Host, a foreign Origin.
    let r = ureq::post(&format!("{s_base}/contacts"))
        .set("Cookie", &cookie)
        .send_form(&[("key", f_key.as_str()), ("name", "Anna")]);
    assert_eq!(status(r), 403, "a form without its CSRF token");
    let r = ureq::get(&format!("{s_base}/signin"))
        .set("Host", "evil.example")
        .call();
    assert_eq!(status(r), 403, "a foreign Host (DNS rebinding)");
    let r = ureq::post(&format!("{s_base}/v1/offers"))
        .set("Authorization", &format!("Bearer {}", token(&seller)))
        .set("Origin", "http://evil.example")
        .send_json(json!({"title": "x", "price_minor": 1, "currency": "EUR", "pool_bps": 0, "rule": "direct"}));
    assert_eq!(status(r), 403, "a write from a foreign origin");
    assert_eq!(
        ureq::get(&format!("{s_base}/v1/offers"))
            .call()
            .expect("offers")
            .into_json::<Value>()
            .expect("json")["offers"]
            .as_array()
            .expect("offers")
            .len(),
        1,
        "nothing was signed"
    );

    // The seller's ledger page, with the payout batch.
    sb.goto(&format!("{s_base}/ledger/{s_key}"))
        .await
        .expect("ledger page");
    wait_text(&sb, "main", "What I owe").await;
    shot(&sb, "ledger").await;
    // A payment recorded in the form shows as settled, and nothing is owed after it.
    fill(&sb, "amount", "1.00").await;
    fill(&sb, "reference", "bank transfer 17").await;
    sb.find(Locator::Css("form[action='/settlements'] button"))
        .await
        .expect("settle button")
        .click()
        .await
        .expect("click");
    wait_text(&sb, "main", "You owe nothing right now").await;
    let ledger = ledger_json(&s_base, &s_key);
    assert_eq!(
        line(&ledger, &f_key),
        Some((100, 0, 100, 0)),
        "settled in the ledger"
    );
    let row = wait_text(&sb, "#ledger", "1.00 EUR").await;
    assert!(
        row.contains("1.00 EUR 0.00 EUR 1.00 EUR 0.00 EUR"),
        "earned, refunded, settled, owed: {row}"
    );

    // Every page loads only from the node itself (the CSP would block anything else, and
    // the browser reports what it fetched).
    for path in [
        "/",
        "/offers",
        &format!("/offers/{offer_id}"),
        "/pass",
        "/network",
        "/contacts",
        "/disputes",
    ] {
        sb.goto(&format!("{s_base}{path}")).await.expect("page");
        let fetched = sb
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name)",
                vec![],
            )
            .await
            .expect("resources");
        for url in fetched.as_array().expect("list") {
            let url = url.as_str().expect("url");
            assert!(url.starts_with(&s_base), "{path} fetched {url}");
        }
    }

    // On a phone in dark mode: dark colours, nothing wider than the screen.
    let phone = driver
        .browser_with(
            &tmp.path().join("profile-phone"),
            &["--window-size=390,844", "--force-dark-mode"],
        )
        .await;
    sign_in(&phone, &s_base, &token(&seller)).await;
    for (path, name) in [
        ("/".to_string(), "phone-home-dark"),
        (format!("/offers/{offer_id}"), "phone-offer-dark"),
    ] {
        phone.goto(&format!("{s_base}{path}")).await.expect("page");
        wait_text(&phone, "h1", "").await;
        let bg = phone
            .execute(
                "return getComputedStyle(document.body).backgroundColor",
                vec![],
            )
            .await
            .expect("style");
        assert_eq!(bg, json!("rgb(19, 21, 23)"), "dark background on {path}");
        shot(&phone, name).await;
        let wide = phone
            .execute(
                "return [...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 5)",
                vec![],
            )
            .await
            .expect("width");
        assert_eq!(wide, json!([]), "{path}: elements wider than a phone");
        let fits = phone
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth",
                vec![],
            )
            .await
            .expect("width");
        assert_eq!(
            fits,
            json!(true),
            "{path} scrolls sideways (tables may, in their box)"
        );
    }

    let _ = (sb.close().await, fb.close().await, phone.close().await);
    drop(driver);
}

/// Clicks the element `css`.
pub(crate) async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_removes_a_member_in_the_browser_and_she_signs_in_read_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let k = Daemon::start_with(&tmp.path().join("community"), &["--offline"]);
    let base = format!("http://{}", api_addr(&k));
    k.json(&["community", "create", "--name", "Riverside"]);
    let invite = k.json(&["community", "invite", "--note", "Anna"]);
    let driver = Driver::start();

    // Anna joins in her browser.
    let ab = driver.browser(&tmp.path().join("profile-anna")).await;
    ab.goto(invite["url"].as_str().expect("url"))
        .await
        .expect("join page");
    wait_text(&ab, "h1", "Join Riverside").await;
    fill(&ab, "login", "anna").await;
    fill(&ab, "password", "correct horse battery").await;
    fill(&ab, "password2", "correct horse battery").await;
    click(&ab, "#join").await;
    wait_text(&ab, "h1", "Home").await;
    wait_text(&ab, "header nav", "Account").await;

    // The connector sees her on its page, and removes her after confirming.
    let cb = driver.browser(&tmp.path().join("profile-connector")).await;
    sign_in_operator(&cb, &base, &k).await;
    cb.goto(&format!("{base}/community"))
        .await
        .expect("community");
    let members = wait_text(&cb, "#members", "anna").await;
    assert!(
        members.contains("hosted here") && members.contains("admitted"),
        "{members}"
    );
    wait_text(&cb, "#earnings", "What you earned as connector").await;
    wait_text(&cb, "#activity", "joined").await;
    shot(&cb, "community-members").await;
    click(&cb, "#members button.remove").await;
    wait_text(&cb, "#confirm-remove", "cannot be undone").await;
    shot(&cb, "community-remove-confirm").await;
    click(&cb, "#confirm").await;
    wait_text(&cb, "#removed", "was removed from the community").await;
    let members = wait_text(&cb, "#members", "removed").await;
    assert!(members.contains("0 admitted now"), "{members}");
    shot(&cb, "community-removed").await;

    // Her session ended; she signs in again and gets her pages, read-only.
    ab.goto(&format!("{base}/")).await.expect("home");
    assert!(ab
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/signin"));
    fill(&ab, "login", "anna").await;
    let p = ab.find(Locator::Id("password")).await.expect("password");
    p.send_keys("correct horse battery").await.expect("type");
    p.send_keys("\u{E007}").await.expect("enter");
    wait_text(&ab, "h1", "Home").await;
    wait_text(&ab, "#read-only", "read-only").await;
    ab.goto(&format!("{base}/account")).await.expect("account");
    wait_text(&ab, "#status", "The connector removed you").await;
    shot(&ab, "account-read-only").await;
    ab.goto(&format!("{base}/pass")).await.expect("pass");
    fill(&ab, "link", "pl1.anything").await;
    click(&ab, "#refer").await;
    wait_text(&ab, ".error", "read-only").await;
    shot(&ab, "read-only-refused").await;
    let listed = k.json(&["community", "members"]);
    assert_eq!(listed["members"][0]["status"], "removed");
    assert!(listed["members"][0]["last_signin_ms"].as_u64().is_some());
    let _ = (ab.close().await, cb.close().await);
}
