//! End-to-end tests of the HTTP API (`docs/api.md`): each test starts the real server on a
//! loopback port over a temporary store and talks to it with plain HTTP/1.1 over a TCP socket,
//! checking status codes, the JSON bodies and the `{"error", "code"[, "reason"]}` error shape.

use std::net::SocketAddr;
use std::sync::Arc;

use passalong_api::{ledger_json, now_ms, AppState, Identities, Writer};
use passalong_protocol::attestation::{Body, Currency, Offer, Referral};
use passalong_protocol::link::ShareLink;
use passalong_protocol::{bundle, Attestation, Id, Keypair, Policy, PublicKey, Rule};
use passalong_store::Store;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "test-token-0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// A node under test and a tiny HTTP/1.1 client.

/// A running API server over a temporary store.
struct Node {
    addr: SocketAddr,
    store: Arc<Store>,
    key: PublicKey,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// An HTTP response.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts a success status and returns the JSON body.
    fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self.json()
    }
}

/// Asserts `{"error": non-empty text, "code": code}` (and nothing else) with `status`.
fn assert_error(r: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "error without a JSON content type: {:?} {}",
        r.header("content-type"),
        r.text()
    );
    let v = r.json();
    let o = v.as_object().expect("error body is an object");
    assert_eq!(o.get("code"), Some(&json!(code)), "body: {v}");
    assert!(
        o.get("error")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        "no error message: {v}"
    );
    let extra: Vec<&String> = o
        .keys()
        .filter(|k| !matches!(k.as_str(), "error" | "code" | "reason"))
        .collect();
    assert!(extra.is_empty(), "unexpected fields {extra:?}: {v}");
    if status != 422 {
        assert!(o.get("reason").is_none(), "reason outside a 422: {v}");
    }
    v
}

/// Asserts a 422 `invalid_attestation` error with `reason`.
fn assert_invalid(r: &Resp, reason: &str) {
    let v = assert_error(r, 422, "invalid_attestation");
    assert_eq!(v["reason"], json!(reason), "body: {v}");
}

async fn raw(addr: SocketAddr, head: String, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    // The server may answer (and close) before reading a refused body: a failed write is
    // fine as long as the response arrives.
    let _ = s.write_all(&req).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if !buf.is_empty() => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).expect("headers are UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        assert!(body.len() >= len, "short body: {} of {len}", body.len());
        body.truncate(len);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&b[..eol]).expect("chunk size is text");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size is hex");
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path().join("store")).expect("open store"));
        let keys = Keypair::from_seed([1; 32]);
        let key = keys.public();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = AppState::new(
            store.clone(),
            Writer::spawn(store.clone()),
            Identities::single(keys),
            TOKEN.to_string(),
            format!("http://{addr}"),
            dir.path().to_path_buf(),
        )
        .expect("state");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(passalong_api::serve(listener, state, async move {
            let _ = rx.await;
        }));
        Node {
            addr,
            store,
            key,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Stops the server and waits for it.
    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.expect("server task").expect("server result");
        }
    }

    async fn send(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> Resp {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
            self.addr,
            body.len()
        );
        raw(self.addr, head, body).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, "", b"").await
    }

    /// A POST with the right token and a JSON body.
    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.post_bytes(path, body.to_string().as_bytes()).await
    }

    /// A POST with the right token and raw bytes as a JSON body.
    async fn post_bytes(&self, path: &str, body: &[u8]) -> Resp {
        self.send(
            "POST",
            path,
            &format!("Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"),
            body,
        )
        .await
    }

    /// Publishes an offer by the node's identity; returns (id, link token).
    async fn publish(&self, rule: &str, pool_bps: u16) -> (Id, String) {
        let v = self
            .post(
                "/v1/offers",
                &json!({"title": "A record", "price_minor": 10000, "currency": "EUR",
                        "pool_bps": pool_bps, "rule": rule}),
            )
            .await
            .ok(201);
        let id = Id::from_hex(v["id"].as_str().expect("id")).expect("id is hex");
        (id, v["link"].as_str().expect("link").to_string())
    }

    /// Imports envelopes; returns the acks.
    async fn import(&self, atts: &[&Attestation]) -> Vec<Value> {
        let envs: Vec<String> = atts.iter().map(|a| hex::encode(&a.bytes)).collect();
        let v = self
            .post("/v1/attestations", &json!({ "envelopes": envs }))
            .await
            .ok(200);
        v["acks"].as_array().expect("acks").clone()
    }

    async fn ledger(&self) -> Value {
        self.get("/v1/ledger").await.ok(200)
    }
}

fn kp(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

/// A referral signed by `keys`.
fn referral(
    keys: &Keypair,
    offer: Id,
    parent: Option<Id>,
    recipient: Option<PublicKey>,
    at: u64,
) -> Attestation {
    Attestation::sign(
        Body::Referral(Referral {
            referrer: keys.public(),
            offer,
            parent,
            recipient,
            community: None,
            created_at_ms: at,
        }),
        keys,
    )
}

/// The offer attestation a share link starts with.
fn offer_of(link: &str) -> Attestation {
    ShareLink::parse(link)
        .expect("offer link parses")
        .attestations[0]
        .clone()
}

fn token_of(chain: Vec<Attestation>) -> String {
    ShareLink::new(chain).expect("a chain").token()
}

/// The ledger line of `who` (EUR), as (earned, refunded, settled, owed).
fn line(ledger: &Value, who: &PublicKey) -> (u64, u64, u64, i64) {
    let e = ledger["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["participant"] == json!(who.to_hex()))
        .unwrap_or_else(|| panic!("no line for {who} in {ledger}"));
    assert_eq!(e["currency"], json!("EUR"));
    let n = |f: &str| e[f].as_u64().unwrap_or_else(|| panic!("{f} in {e}"));
    (
        n("earned"),
        n("refunded"),
        n("settled"),
        e["owed"].as_i64().expect("owed"),
    )
}

/// The seller's ledger through the API equals the one recomputed from scratch.
async fn assert_ledger_recomputes(node: &Node) -> Value {
    let api = node.ledger().await;
    let kept = node.store.ledger(&node.key).expect("ledger");
    let fresh = node
        .store
        .recompute_ledger(&node.key, now_ms())
        .expect("recompute");
    assert_eq!(
        kept, fresh,
        "incremental ledger differs from the recomputed one"
    );
    assert_eq!(api, ledger_json(&fresh));
    api
}

// ---------------------------------------------------------------------------------------------
// Happy paths.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identity_and_status() {
    let node = Node::start().await;
    let id = node.get("/v1/id").await.ok(200);
    assert_eq!(id["public_key"], json!(node.key.to_hex()));
    assert_eq!(id["identities"], json!([node.key.to_hex()]));
    let st = node.get("/v1/status").await.ok(200);
    assert_eq!(st["version"], json!("0.1.0"));
    assert_eq!(st["public_key"], json!(node.key.to_hex()));
    assert_eq!(st["valid_attestations"], json!(0));
    assert_eq!(st["api"], json!(node.addr.to_string()));
    node.publish("direct", 1000).await;
    let st = node.get("/v1/status").await.ok(200);
    assert_eq!(st["valid_attestations"], json!(1));
    assert_eq!(st["markets"], json!(1));
    node.stop().await;
}

/// An OpenMetrics text exposition, checked line by line: every sample's family has a `# HELP`
/// and a `# TYPE` (counter or gauge) before it, a counter family `x` has the sample `x_total`
/// and a gauge's sample is its family's name, names and values parse, and `# EOF` ends it.
/// Returns (name with labels → value).
fn exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    assert!(text.ends_with("\n# EOF\n"), "no # EOF at the end:\n{text}");
    let mut helped = std::collections::HashSet::new();
    let mut typed = std::collections::HashMap::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().take_while(|l| *l != "# EOF") {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_name(name) && !help.is_empty(), "{line}");
            assert!(helped.insert(name.to_string()), "family twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert!(
                !name.ends_with("_total"),
                "a family is named without _total: {line}"
            );
            typed.insert(name.to_string(), kind.to_string());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let name = series.split('{').next().unwrap_or_default();
            assert!(valid_name(name), "{line}");
            let family = match name.strip_suffix("_total") {
                Some(f) if typed.get(f).is_some_and(|k| k == "counter") => f,
                _ => name,
            };
            let kind = typed.get(family).map(String::as_str);
            assert!(kind.is_some(), "sample before its TYPE: {line}");
            assert_eq!(
                kind == Some("counter"),
                family != name,
                "a counter's sample, and only a counter's, ends in _total: {line}"
            );
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}') && labels.contains("=\""),
                    "{line}"
                );
            }
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
            assert!(
                samples.insert(series.to_string(), v).is_none(),
                "twice: {line}"
            );
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_openmetrics_text_and_count_what_ingest_saw() {
    let node = Node::start().await;
    let r = node.get("/metrics").await; // no token: read-only
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let m = exposition(&r.text());
    assert_eq!(m["passalong_build_info{version=\"0.1.0\"}"], 1.0);
    assert_eq!(m["passalong_attestations_valid"], 0.0);
    assert_eq!(m["passalong_ingest_calls_total"], 0.0);
    assert!(m["process_resident_memory_bytes"] > 1e6);
    assert!(
        !m.contains_key("passalong_peers"),
        "no network on this node"
    );

    let (_, link) = node.publish("direct", 1000).await;
    let offer = offer_of(&link);
    let mut forged = referral(&kp(2), offer.id, None, None, now_ms()).bytes;
    let last = forged.len() - 1;
    forged[last] ^= 1; // its signature no longer verifies
    let acks = node
        .post(
            "/v1/attestations",
            &json!({"envelopes": [hex::encode(&offer.bytes), hex::encode(&forged)]}),
        )
        .await
        .ok(200);
    assert_eq!(acks["acks"][0]["duplicate"], json!(true));
    assert_eq!(acks["acks"][1]["status"], json!("invalid"));
    let m = exposition(&node.get("/metrics").await.text());
    let status = node.get("/v1/status").await.ok(200);
    assert_eq!(
        m["passalong_attestations_valid"],
        status["valid_attestations"].as_f64().unwrap()
    );
    assert_eq!(m["passalong_attestations_valid"], 1.0);
    assert_eq!(m["passalong_markets"], 1.0);
    assert_eq!(m["passalong_ingest_calls_total"], 2.0);
    assert!(m["passalong_ingest_seconds_total"] > 0.0);
    for (outcome, n) in [
        ("valid", 1.0),
        ("pending", 0.0),
        ("held", 0.0),
        ("invalid", 1.0),
        ("duplicate", 1.0),
    ] {
        let key = format!("passalong_ingested_total{{outcome=\"{outcome}\"}}");
        assert_eq!(m[&key], n, "{key}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offer_referral_chain_sales_ledger_and_export() {
    let node = Node::start().await;
    let (k2, k3, buyer) = (kp(2), kp(3), kp(9).public());
    let now = now_ms();

    // Publish: 201 with id, link and url; the link is the offer alone.
    let r = node
        .post(
            "/v1/offers",
            &json!({"title": "A record", "price_minor": 10000, "currency": "EUR",
                    "pool_bps": 1000, "rule": "geometric:5000", "connector_bps": 0,
                    "max_depth": 16, "window_ms": 2_592_000_000u64, "require_purchase": false,
                    "valid_from_ms": 0, "valid_until_ms": null, "content_hash": null}),
        )
        .await;
    let v = r.ok(201);
    let offer_id = Id::from_hex(v["id"].as_str().unwrap()).unwrap();
    let offer_link = v["link"].as_str().unwrap().to_string();
    assert!(offer_link.starts_with("pl1."));
    assert_eq!(
        v["url"],
        json!(format!("http://{}/l/{offer_link}", node.addr))
    );
    let offer = offer_of(&offer_link);
    assert_eq!(offer.id, offer_id);
    assert_eq!(ShareLink::parse(&offer_link).unwrap().attestations.len(), 1);
    let Body::Offer(o) = &offer.body else {
        panic!("not an offer")
    };
    assert_eq!(o.seller, node.key);

    // List: one offer, every documented field.
    let list = node.get("/v1/offers").await.ok(200);
    let offers = list["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 1);
    let o = &offers[0];
    assert_eq!(o["id"], json!(offer_id.to_hex()));
    assert_eq!(o["seller"], json!(node.key.to_hex()));
    assert_eq!(o["title"], json!("A record"));
    assert_eq!(o["price_minor"], json!(10000));
    assert_eq!(o["currency"], json!("EUR"));
    assert_eq!(o["rule"], json!("geometric:5000"));
    assert_eq!(o["pool_bps"], json!(1000));
    assert_eq!(o["connector_bps"], json!(0));
    assert_eq!(o["max_depth"], json!(16));
    assert_eq!(o["window_ms"], json!(2_592_000_000u64));
    assert_eq!(o["require_purchase"], json!(false));
    assert_eq!(o["valid_from_ms"], json!(0));
    assert_eq!(o["valid_until_ms"], Value::Null);
    assert!(o["created_at_ms"].as_u64().unwrap() >= now);
    assert_eq!(o["link"], json!(offer_link));
    let by_seller = node
        .get(&format!("/v1/offers?seller={}", node.key.to_hex()))
        .await
        .ok(200);
    assert_eq!(by_seller, list);
    let other = node
        .get(&format!("/v1/offers?seller={}", k2.public().to_hex()))
        .await
        .ok(200);
    assert_eq!(other, json!({"offers": []}));

    // Two referrals by other keys: k2 from the offer, k3 from k2's. Only k2's is imported
    // directly; k3's travels in the share link.
    let at = offer.body.created_at_ms();
    let r2 = referral(&k2, offer_id, None, None, at);
    let r3 = referral(&k3, offer_id, Some(r2.id), None, at);
    let acks = node.import(&[&r2]).await;
    assert_eq!(
        acks,
        vec![json!({"id": r2.id.to_hex(), "status": "valid", "duplicate": false})]
    );
    let link3 = token_of(vec![offer.clone(), r2.clone(), r3.clone()]);

    // The node passes it along from k3's link: the new link carries the whole chain.
    let v = node
        .post("/v1/referrals", &json!({ "from": link3 }))
        .await
        .ok(201);
    assert_eq!(v["imported"], json!(1), "only r3 was new: {v}");
    let mine = Id::from_hex(v["id"].as_str().unwrap()).unwrap();
    let my_link = v["link"].as_str().unwrap().to_string();
    assert_eq!(v["url"], json!(format!("http://{}/l/{my_link}", node.addr)));
    let parsed = ShareLink::parse(&my_link).unwrap();
    let ids: Vec<Id> = parsed.attestations.iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![offer_id, r2.id, r3.id, mine]);
    assert_eq!(parsed.referral(), Some(mine));
    let Body::Referral(rr) = &parsed.attestations[3].body else {
        panic!("not a referral")
    };
    assert_eq!(rr.referrer, node.key);
    assert_eq!(rr.parent, Some(r3.id));
    assert_eq!(rr.recipient, None);
    // The URL form parses too and names the same link.
    assert_eq!(
        ShareLink::parse(v["url"].as_str().unwrap()).unwrap(),
        parsed
    );

    // Sales. geometric:5000, pool 10 % of 10000 = 1000: hop 1 earns 500, hop 2 250, hop 3 125.
    // A: via k3's link (k3, k2): k3 500, k2 250.
    let a = node
        .post(
            "/v1/receipts",
            &json!({"offer": offer_id.to_hex(), "order": "A-1", "amount_minor": 10000,
                    "buyer": buyer.to_hex(), "via": link3}),
        )
        .await
        .ok(201);
    assert_eq!(a["status"], json!("valid"));
    assert_eq!(a["imported"], json!(0));
    let receipt_a = a["id"].as_str().unwrap().to_string();
    // B: via the node's own link as a URL (node, k3, k2): the seller's hop keeps its place
    // but earns nothing; k3 250, k2 125.
    let b = node
        .post(
            "/v1/receipts",
            &json!({"offer": offer_id.to_hex(), "order": "B-2", "amount_minor": 10000,
                    "buyer": buyer.to_hex(), "via": format!("http://{}/l/{my_link}", node.addr)}),
        )
        .await
        .ok(201);
    assert_eq!(b["status"], json!("valid"));
    // C: via r2's id: pool 200, k2 100.
    node.post(
        "/v1/receipts",
        &json!({"offer": offer_id.to_hex(), "order": "C-3", "amount_minor": 2000,
                "buyer": buyer.to_hex(), "via": r2.id.to_hex()}),
    )
    .await
    .ok(201);
    // D: no referral, nobody earns.
    node.post(
        "/v1/receipts",
        &json!({"offer": offer_id.to_hex(), "order": "D-4", "amount_minor": 5000,
                "buyer": buyer.to_hex()}),
    )
    .await
    .ok(201);

    let l = assert_ledger_recomputes(&node).await;
    assert_eq!(l["seller"], json!(node.key.to_hex()));
    assert_eq!(l["entries"].as_array().unwrap().len(), 2, "{l}");
    assert_eq!(line(&l, &k3.public()), (750, 0, 0, 750));
    assert_eq!(line(&l, &k2.public()), (475, 0, 0, 475));
    let parts: Vec<&str> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["participant"].as_str().unwrap())
        .collect();
    let mut sorted = parts.clone();
    sorted.sort();
    assert_eq!(parts, sorted, "entries sorted by participant");

    // Refund A: its shares move to the refunded column.
    let rf = node
        .post("/v1/refunds", &json!({ "receipt": receipt_a }))
        .await
        .ok(201);
    assert_eq!(rf["status"], json!("valid"));
    let l = assert_ledger_recomputes(&node).await;
    assert_eq!(line(&l, &k3.public()), (750, 500, 0, 250));
    assert_eq!(line(&l, &k2.public()), (475, 250, 0, 225));

    // Settle more than k3 is owed: owed goes negative. The settlement names the root of the
    // ledger it was computed against.
    let root_before = l["root"].clone();
    let st = node
        .post(
            "/v1/settlements",
            &json!({"participant": k3.public().to_hex(), "amount_minor": 1000,
                    "currency": "EUR", "reference": "SEPA-123"}),
        )
        .await
        .ok(201);
    assert_eq!(st["status"], json!("valid"));
    assert_eq!(st["ledger_root"], root_before);
    let l = assert_ledger_recomputes(&node).await;
    assert_eq!(line(&l, &k3.public()), (750, 500, 1000, -750));
    assert_eq!(line(&l, &k2.public()), (475, 250, 0, 225));
    assert_ne!(l["root"], root_before);
    let by_seller = node
        .get(&format!("/v1/ledger?seller={}", node.key.to_hex()))
        .await
        .ok(200);
    assert_eq!(by_seller, l);

    // Nothing equivocated, nothing disputed.
    assert_eq!(
        node.get("/v1/equivocations").await.ok(200),
        json!({"equivocations": []})
    );
    assert_eq!(
        node.get("/v1/disputes").await.ok(200),
        json!({"disputes": []})
    );

    // GET /v1/attestations/<id>.
    let g = node
        .get(&format!("/v1/attestations/{}", offer_id.to_hex()))
        .await
        .ok(200);
    assert_eq!(
        g,
        json!({"id": offer_id.to_hex(), "kind": "offer", "status": "valid",
               "envelope": hex::encode(&offer.bytes)})
    );
    let g = node
        .get(&format!("/v1/attestations/{}", r3.id.to_hex()))
        .await
        .ok(200);
    assert_eq!(g["kind"], json!("referral"));
    assert_eq!(g["envelope"], json!(hex::encode(&r3.bytes)));
    let g = node
        .get(&format!("/v1/attestations/{receipt_a}"))
        .await
        .ok(200);
    assert_eq!(g["kind"], json!("receipt"));
    assert_eq!(g["status"], json!("valid"));
    let env = hex::decode(g["envelope"].as_str().unwrap()).unwrap();
    let Body::Receipt(rc) = Attestation::decode(&env).unwrap().body else {
        panic!("not a receipt")
    };
    assert_eq!(rc.via, Some(r3.id));
    assert_eq!(rc.order, "A-1");

    // Export, JSON and binary: the same envelopes, every one of this market.
    let ej = node
        .get(&format!("/v1/export?seller={}", node.key.to_hex()))
        .await;
    assert_eq!(ej.status, 200, "{}", ej.text());
    assert!(ej
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let meta = ej.json();
    assert_eq!(meta["format"], json!("passalong-bundle"));
    assert_eq!(meta["seller"], json!(node.key.to_hex()));
    let from_json = bundle::decode(&ej.body).unwrap();
    let eb = node
        .get(&format!(
            "/v1/export?seller={}&format=binary",
            node.key.to_hex()
        ))
        .await;
    assert_eq!(eb.status, 200);
    assert_eq!(eb.header("content-type"), Some("application/octet-stream"));
    assert!(eb.body.starts_with(bundle::MAGIC));
    let from_bin = bundle::decode(&eb.body).unwrap();
    assert_eq!(from_json, from_bin);
    // offer, 3 referrals, 4 receipts, a refund, a settlement.
    assert_eq!(from_bin.len(), 10);
    let exported: Vec<Id> = from_bin
        .iter()
        .map(|e| Attestation::decode(e).unwrap().id)
        .collect();
    for id in [offer_id, r2.id, r3.id, mine] {
        assert!(exported.contains(&id), "{id} not exported");
    }
    let times: Vec<u64> = from_bin
        .iter()
        .map(|e| Attestation::decode(e).unwrap().body.created_at_ms())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    // A fresh store fed the export computes the same ledger.
    let dir = tempfile::tempdir().unwrap();
    let copy = Store::open(dir.path()).unwrap();
    let refs: Vec<&[u8]> = from_bin.iter().map(Vec::as_slice).collect();
    copy.ingest(&refs, now_ms()).unwrap();
    assert_eq!(
        ledger_json(&copy.ledger(&node.key).unwrap()),
        node.ledger().await
    );

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn referral_from_an_id_addressed_to_a_friend() {
    let node = Node::start().await;
    let (offer_id, link) = node.publish("direct", 1000).await;
    let offer = offer_of(&link);
    let k2 = kp(2);
    let k3 = kp(3);
    // From the offer's id: a root referral, addressed to k2.
    let v = node
        .post(
            "/v1/referrals",
            &json!({"from": offer_id.to_hex(), "to": k2.public().to_hex()}),
        )
        .await
        .ok(201);
    assert_eq!(v["imported"], json!(0));
    let mine = Id::from_hex(v["id"].as_str().unwrap()).unwrap();
    let parsed = ShareLink::parse(v["link"].as_str().unwrap()).unwrap();
    assert_eq!(parsed.attestations.len(), 2);
    let Body::Referral(r) = &parsed.attestations[1].body else {
        panic!("not a referral")
    };
    assert_eq!(r.parent, None);
    assert_eq!(r.recipient, Some(k2.public()));
    // k2 may refer onwards from it, k3 may not (an invalid import is an ack, not an error).
    let at = now_ms();
    let ok = referral(&k2, offer_id, Some(mine), None, at);
    let bad = referral(&k3, offer_id, Some(mine), None, at);
    let acks = node.import(&[&ok, &bad]).await;
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[0]["status"], json!("valid"));
    assert_eq!(acks[1]["status"], json!("invalid"));
    assert_eq!(acks[1]["reason"], json!("not_recipient"));
    assert!(acks[1]["message"].as_str().is_some());
    // The same again: duplicates.
    let acks = node.import(&[&ok]).await;
    assert_eq!(acks[0]["duplicate"], json!(true));
    assert_eq!(acks[0]["status"], json!("valid"));
    // From a referral id: it is the parent.
    let v = node
        .post("/v1/referrals", &json!({ "from": ok.id.to_hex() }))
        .await
        .ok(201);
    let chain = ShareLink::parse(v["link"].as_str().unwrap()).unwrap();
    let ids: Vec<Id> = chain.attestations.iter().map(|a| a.id).collect();
    assert_eq!(ids[..3], [offer.id, mine, ok.id]);
    assert_eq!(ids.len(), 4);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_reports_pending_and_held() {
    let node = Node::start().await;
    let (offer_id, _) = node.publish("direct", 1000).await;
    let k2 = kp(2);
    let now = now_ms();
    let parent = referral(&k2, offer_id, None, None, now - 2000);
    let child = referral(&kp(3), offer_id, Some(parent.id), None, now - 1000);
    let acks = node.import(&[&child]).await;
    assert_eq!(
        acks,
        vec![
            json!({"id": child.id.to_hex(), "status": "pending", "duplicate": false,
                    "missing": [parent.id.to_hex()]})
        ]
    );
    let g = node
        .get(&format!("/v1/attestations/{}", child.id.to_hex()))
        .await
        .ok(200);
    assert_eq!(g["status"], json!("pending"));
    // Dated an hour ahead: held until an hour minus the allowed skew.
    let later = referral(&kp(4), offer_id, None, None, now + 3_600_000);
    let acks = node.import(&[&later]).await;
    assert_eq!(acks[0]["status"], json!("held"));
    assert_eq!(acks[0]["until_ms"], json!(now + 3_600_000 - 120_000));
    assert_eq!(acks[0].get("not_kept"), None, "kept: within the horizon");
    // Dated two days ahead: answered held, but not kept (a storage bound, not a verdict).
    let far = referral(&kp(6), offer_id, None, None, now + 2 * 86_400_000);
    let acks = node.import(&[&far]).await;
    assert_eq!(acks[0]["status"], json!("held"));
    assert_eq!(acks[0]["not_kept"], json!("too_far_ahead"), "{acks:?}");
    node.get(&format!("/v1/attestations/{}", far.id.to_hex()))
        .await
        .ok(404);
    // Both in one import, child first: the child's ack is its final status.
    let p2 = referral(&k2, offer_id, None, None, now - 1500);
    let c2 = referral(&kp(5), offer_id, Some(p2.id), None, now - 500);
    let acks = node.import(&[&c2, &p2]).await;
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[0]["status"], json!("valid"), "{acks:?}");
    assert_eq!(acks[1]["status"], json!("valid"), "{acks:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_acks_what_it_unblocked() {
    let node = Node::start().await;
    let (offer_id, _) = node.publish("direct", 1000).await;
    let now = now_ms();
    let parent = referral(&kp(2), offer_id, None, None, now - 2000);
    let child = referral(&kp(3), offer_id, Some(parent.id), None, now - 1000);
    let acks = node.import(&[&child]).await;
    assert_eq!(acks[0]["status"], json!("pending"));
    let acks = node.import(&[&parent]).await;
    assert_eq!(
        acks,
        vec![
            json!({"id": parent.id.to_hex(), "status": "valid", "duplicate": false}),
            json!({"id": child.id.to_hex(), "status": "valid", "duplicate": false}),
        ]
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_sums_past_2_pow_53_are_exact_json_integers() {
    let node = Node::start().await;
    // The whole sale to one hop.
    let (offer_id, _) = node.publish("direct", 10000).await;
    let k2 = kp(2);
    let r2 = referral(&k2, offer_id, None, None, now_ms() - 1000);
    node.import(&[&r2]).await;
    for i in 0..10 {
        node.post(
            "/v1/receipts",
            &json!({"offer": offer_id.to_hex(), "order": format!("big-{i}"),
                    "amount_minor": 1_000_000_000_000_000u64, "buyer": kp(9).public().to_hex(),
                    "via": r2.id.to_hex()}),
        )
        .await
        .ok(201);
    }
    let r = node.get("/v1/ledger").await;
    assert!(
        r.text().contains("\"earned\":10000000000000000"),
        "{}",
        r.text()
    );
    let l = assert_ledger_recomputes(&node).await;
    assert_eq!(
        line(&l, &k2.public()),
        (10_000_000_000_000_000, 0, 0, 10_000_000_000_000_000)
    );
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_needs_the_token() {
    let node = Node::start().await;
    let (offer_id, link) = node.publish("direct", 1000).await;
    let k = kp(2).public().to_hex();
    let routes = [
        (
            "/v1/offers",
            json!({"title": "t", "price_minor": 1, "currency": "EUR", "pool_bps": 0,
                   "rule": "direct"}),
        ),
        ("/v1/referrals", json!({ "from": link })),
        (
            "/v1/receipts",
            json!({"offer": offer_id.to_hex(), "order": "o", "amount_minor": 1, "buyer": k}),
        ),
        ("/v1/refunds", json!({ "receipt": offer_id.to_hex() })),
        (
            "/v1/settlements",
            json!({"participant": k, "amount_minor": 1, "currency": "EUR", "reference": "r"}),
        ),
        ("/v1/attestations", json!({ "envelopes": [] })),
        ("/v1/community", json!({ "name": "Riverside" })),
        ("/v1/community/invites", json!({})),
        ("/v1/community/invites/00000000/revoke", json!(null)),
    ];
    let bad_auth = [
        String::new(),
        "Authorization: Bearer wrong-token\r\n".to_string(),
        format!("Authorization: Bearer {TOKEN}x\r\n"),
        format!("Authorization: bearer {TOKEN}\r\n"),
        format!("Authorization: Basic {TOKEN}\r\n"),
        format!("Authorization: {TOKEN}\r\n"),
        "Authorization: Bearer \r\n".to_string(),
    ];
    for (path, body) in &routes {
        for auth in &bad_auth {
            let r = node
                .send(
                    "POST",
                    path,
                    &format!("{auth}Content-Type: application/json\r\n"),
                    body.to_string().as_bytes(),
                )
                .await;
            assert_error(&r, 401, "unauthorized");
        }
        // The token is checked before the body is read.
        let r = node
            .send(
                "POST",
                path,
                "Content-Type: application/json\r\n",
                b"{not json",
            )
            .await;
        assert_error(&r, 401, "unauthorized");
    }
    // Nothing was written.
    let st = node.get("/v1/status").await.ok(200);
    assert_eq!(st["valid_attestations"], json!(1));
    // With the token, the same import goes through.
    assert_eq!(
        node.post("/v1/attestations", &json!({"envelopes": []}))
            .await
            .ok(200),
        json!({"envelopes": 0, "new": 0, "statuses": {}, "unblocked": 0, "acks": [],
            "errors": [], "truncated": false})
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_bodies_are_400() {
    let node = Node::start().await;
    let offer = json!({"title": "t", "price_minor": 100, "currency": "EUR", "pool_bps": 1000,
                       "rule": "direct"});
    for body in [
        &b"{not json"[..],
        b"",
        b"[]",
        b"null",
        b"{\"title\": \"t\"",
        b"{\"title\": \"t\", \"price_minor\": \"100\", \"currency\": \"EUR\", \"pool_bps\": 1, \"rule\": \"direct\"}",
        b"{\"title\": \"t\", \"price_minor\": -1, \"currency\": \"EUR\", \"pool_bps\": 1, \"rule\": \"direct\"}",
        b"{\"title\": \"t\", \"price_minor\": 1, \"currency\": \"EUR\", \"pool_bps\": 70000, \"rule\": \"direct\"}",
    ] {
        let r = node.post_bytes("/v1/offers", body).await;
        assert_error(&r, 400, "bad_request");
    }
    // A missing field, an unknown field.
    for (path, body) in [
        (
            "/v1/offers",
            json!({"title": "t", "price_minor": 100, "currency": "EUR", "rule": "direct"}),
        ),
        ("/v1/offers", {
            let mut o = offer.clone();
            o["colour"] = json!("red");
            o
        }),
        ("/v1/referrals", json!({"from": "x", "bogus": 1})),
        ("/v1/referrals", json!({})),
        (
            "/v1/receipts",
            json!({"offer": "00", "order": "o", "amount_minor": 1, "buyer": "00", "tip": 5}),
        ),
        ("/v1/refunds", json!({"receipt": "00", "why": "x"})),
        (
            "/v1/settlements",
            json!({"participant": "00", "amount_minor": 1, "currency": "EUR"}),
        ),
        ("/v1/attestations", json!({"envelopes": [], "x": 1})),
        ("/v1/attestations", json!({"envelopes": "00"})),
    ] {
        let r = node.post(path, &body).await;
        assert_error(&r, 400, "bad_request");
    }
    // A JSON body without a JSON content type.
    let r = node
        .send(
            "POST",
            "/v1/offers",
            &format!("Authorization: Bearer {TOKEN}\r\n"),
            offer.to_string().as_bytes(),
        )
        .await;
    assert_error(&r, 400, "bad_request");
    // Bad values: rule, currency, content hash, identity.
    for (field, value) in [
        ("rule", json!("pyramid")),
        ("rule", json!("geometric:10000")),
        ("rule", json!("geometric:")),
        ("rule", json!("")),
        ("currency", json!("eur")),
        ("currency", json!("EURO")),
        ("content_hash", json!("abc")),
        ("as", json!(kp(2).public().to_hex())),
        ("as", json!("zz")),
    ] {
        let mut o = offer.clone();
        o[field] = value;
        let r = node.post("/v1/offers", &o).await;
        assert_error(&r, 400, "bad_request");
    }
    // Nothing was published.
    assert_eq!(node.get("/v1/offers").await.ok(200), json!({"offers": []}));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_keys_ids_and_links_are_400() {
    let node = Node::start().await;
    let (offer_id, link) = node.publish("direct", 1000).await;
    let buyer = kp(9).public().to_hex();
    let oid = offer_id.to_hex();
    let bad_hex = [
        "zz".to_string(),
        "".to_string(),
        oid[..63].to_string(),
        format!("{oid}00"),
        format!("{}g", &oid[..63]),
    ];
    for h in &bad_hex {
        let cases = [
            (
                "/v1/receipts",
                json!({"offer": h, "order": "o", "amount_minor": 1, "buyer": buyer}),
            ),
            (
                "/v1/receipts",
                json!({"offer": oid, "order": "o", "amount_minor": 1, "buyer": h}),
            ),
            ("/v1/refunds", json!({ "receipt": h })),
            (
                "/v1/settlements",
                json!({"participant": h, "amount_minor": 1, "currency": "EUR",
                       "reference": "r"}),
            ),
            ("/v1/referrals", json!({"from": oid, "to": h})),
            ("/v1/referrals", json!({"from": oid, "community": h})),
        ];
        for (path, body) in cases {
            let r = node.post(path, &body).await;
            assert_error(&r, 400, "bad_request");
        }
        if !h.is_empty() {
            for path in [
                format!("/v1/ledger?seller={h}"),
                format!("/v1/offers?seller={h}"),
                format!("/v1/equivocations?seller={h}"),
                format!("/v1/disputes?seller={h}"),
                format!("/v1/export?seller={h}"),
                format!("/v1/attestations/{h}"),
            ] {
                let r = node.get(&path).await;
                assert_error(&r, 400, "bad_request");
            }
        }
    }
    let r = node
        .get(&format!(
            "/v1/export?seller={}&format=xml",
            node.key.to_hex()
        ))
        .await;
    assert_error(&r, 400, "bad_request");

    // Damaged and truncated links, in every place a link goes.
    let mid = link.len() / 2;
    let flipped = if &link[mid..=mid] == "A" { "B" } else { "A" };
    let damaged = format!("{}{flipped}{}", &link[..mid], &link[mid + 1..]);
    let truncated = link[..link.len() - 3].to_string();
    let bads = [
        damaged,
        truncated,
        "pl1.".to_string(),
        "pl2.AAAA".to_string(),
        "pl1.!!!!".to_string(),
        "not a link".to_string(),
    ];
    for bad in &bads {
        let r = node.post("/v1/referrals", &json!({ "from": bad })).await;
        assert_error(&r, 400, "bad_request");
        let r = node
            .post(
                "/v1/receipts",
                &json!({"offer": oid, "order": "o", "amount_minor": 1, "buyer": buyer,
                        "via": bad}),
            )
            .await;
        assert_error(&r, 400, "bad_request");
    }
    // A link of another offer as `via`.
    let (_, other_link) = node.publish("equal", 1000).await;
    let r = node
        .post(
            "/v1/receipts",
            &json!({"offer": oid, "order": "o", "amount_minor": 1, "buyer": buyer,
                    "via": other_link}),
        )
        .await;
    assert_error(&r, 400, "bad_request");
    // `via` a receipt: neither an offer nor a referral.
    let rc = node
        .post(
            "/v1/receipts",
            &json!({"offer": oid, "order": "o-1", "amount_minor": 1, "buyer": buyer}),
        )
        .await
        .ok(201);
    let r = node
        .post(
            "/v1/receipts",
            &json!({"offer": oid, "order": "o-2", "amount_minor": 1, "buyer": buyer,
                    "via": rc["id"]}),
        )
        .await;
    assert_error(&r, 400, "bad_request");
    // A receipt for something that is not an offer.
    let r = node
        .post(
            "/v1/receipts",
            &json!({"offer": rc["id"], "order": "o-3", "amount_minor": 1, "buyer": buyer}),
        )
        .await;
    assert_error(&r, 400, "bad_request");

    // Import: hex that is no envelope is acked invalid; non-hex is a 400.
    let acks = node
        .post(
            "/v1/attestations",
            &json!({"envelopes": ["00", "deadbeef", hex::encode([7u8; 200])]}),
        )
        .await
        .ok(200);
    let acks = acks["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 3);
    for a in acks {
        assert_eq!(a["status"], json!("invalid"), "{a}");
        assert!(a["reason"].as_str().unwrap().starts_with("decode."), "{a}");
        assert!(a["message"].as_str().is_some());
        assert!(Id::from_hex(a["id"].as_str().unwrap()).is_ok());
    }
    for envs in [json!(["xyz"]), json!(["0"]), json!(["00", "zz"])] {
        let r = node
            .post("/v1/attestations", &json!({ "envelopes": envs }))
            .await;
        assert_error(&r, 400, "bad_request");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_ids_and_routes_are_404() {
    let node = Node::start().await;
    let (offer_id, _) = node.publish("direct", 1000).await;
    let unknown = Id([0xab; 32]).to_hex();
    let buyer = kp(9).public().to_hex();
    for (path, body) in [
        (
            "/v1/receipts",
            json!({"offer": unknown, "order": "o", "amount_minor": 1, "buyer": buyer}),
        ),
        (
            "/v1/receipts",
            json!({"offer": offer_id.to_hex(), "order": "o", "amount_minor": 1,
                   "buyer": buyer, "via": unknown}),
        ),
        ("/v1/refunds", json!({ "receipt": unknown })),
        ("/v1/referrals", json!({ "from": unknown })),
    ] {
        let r = node.post(path, &body).await;
        assert_error(&r, 404, "not_found");
    }
    let r = node.get(&format!("/v1/attestations/{unknown}")).await;
    assert_error(&r, 404, "not_found");
    for path in [
        "/",
        "/v1",
        "/v1/nope",
        "/v2/offers",
        "/v1/attestations/",
        "/l/",
    ] {
        let r = node.get(path).await;
        assert_error(&r, 404, "not_found");
    }
    let r = node.post("/v1/nope", &json!({})).await;
    assert_error(&r, 404, "not_found");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_method_is_a_json_error() {
    let node = Node::start().await;
    for (method, path) in [
        ("GET", "/v1/receipts"),
        ("POST", "/v1/ledger"),
        ("DELETE", "/v1/offers"),
    ] {
        let r = node.send(method, path, "", b"").await;
        assert!(
            r.status == 404 || r.status == 405,
            "{method} {path}: {}",
            r.status
        );
        let v = r.json();
        assert!(v["code"].is_string() && v["error"].is_string(), "{v}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_query_strings_are_json_errors() {
    let node = Node::start().await;
    let k = node.key.to_hex();
    for path in [
        format!("/v1/ledger?seller={k}&seller={k}"),
        "/v1/export".to_string(),
    ] {
        let r = node.get(&path).await;
        assert_error(&r, 400, "bad_request");
    }
    node.stop().await;
}

/// An offer with a checkout URL is published as a version-2 envelope and listed with its URL;
/// one without keeps version 1 and lists `null`; a URL that breaks the protocol's rule is 422
/// with the rule's reason, and nothing is signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_with_a_checkout_url() {
    let node = Node::start().await;
    let url = "https://shop.example/records/a-record?ref=passalong#buy";
    let offer = |extra: Value| {
        let mut o = json!({"title": "A record", "price_minor": 2000, "currency": "EUR",
                           "pool_bps": 1000, "rule": "direct"});
        for (k, v) in extra.as_object().expect("object") {
            o[k] = v.clone();
        }
        o
    };
    let with = node
        .post("/v1/offers", &offer(json!({ "checkout_url": url })))
        .await
        .ok(201);
    let without = node
        .post("/v1/offers", &offer(json!({"title": "Another record"})))
        .await
        .ok(201);
    for (v, version) in [(&with, 2), (&without, 1)] {
        let id = v["id"].as_str().expect("id");
        let a = node.get(&format!("/v1/attestations/{id}")).await.ok(200);
        assert_eq!(a["status"], json!("valid"));
        let env = hex::decode(a["envelope"].as_str().expect("envelope")).expect("hex");
        assert_eq!(env[0], version, "envelope version");
        let decoded = passalong_protocol::validation::check(&env).expect("valid envelope");
        let Body::Offer(o) = decoded.body else {
            panic!("not an offer")
        };
        assert_eq!(o.checkout_url.as_deref(), (version == 2).then_some(url));
    }
    let listed = node.get("/v1/offers").await.ok(200);
    let by_id = |id: &Value| {
        listed["offers"]
            .as_array()
            .expect("offers")
            .iter()
            .find(|o| &o["id"] == id)
            .cloned()
            .expect("listed")
    };
    assert_eq!(by_id(&with["id"])["checkout_url"], json!(url));
    assert_eq!(by_id(&without["id"])["checkout_url"], Value::Null);

    for (bad, reason) in [
        ("ftp://shop.example/a-record", "bad_checkout_url"),
        ("https://shop.example/a record", "bad_checkout_url"),
        ("https://shop.example/\u{1}", "bad_checkout_url"),
        ("https://user@shop.example/", "bad_checkout_url"),
        ("shop.example/a-record", "bad_checkout_url"),
    ] {
        let r = node
            .post("/v1/offers", &offer(json!({ "checkout_url": bad })))
            .await;
        assert_invalid(&r, reason);
    }
    let long = format!("https://shop.example/{}", "a".repeat(492));
    let r = node
        .post("/v1/offers", &offer(json!({ "checkout_url": long })))
        .await;
    assert_invalid(&r, "too_long");
    let listed = node.get("/v1/offers").await.ok(200);
    assert_eq!(listed["offers"].as_array().expect("offers").len(), 2);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_attestations_are_422() {
    let node = Node::start().await;
    let buyer = kp(9).public().to_hex();
    // Pool and connector shares over 100 %, and other limits.
    for (pool, connector, extra) in [
        (9000, 2000, json!({})),
        (10001, 0, json!({})),
        (1000, 0, json!({"max_depth": 0})),
        (1000, 0, json!({"max_depth": 17})),
        (1000, 0, json!({"window_ms": 0})),
        (1000, 0, json!({"price_minor": 0})),
        (1000, 0, json!({"title": ""})),
        (1000, 0, json!({"valid_from_ms": 10, "valid_until_ms": 5})),
    ] {
        let mut o = json!({"title": "t", "price_minor": 100, "currency": "EUR",
                           "pool_bps": pool, "connector_bps": connector, "rule": "direct"});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        let r = node.post("/v1/offers", &o).await;
        assert_invalid(&r, "out_of_range");
    }
    let r = node
        .post(
            "/v1/offers",
            &json!({"title": "t".repeat(300), "price_minor": 100, "currency": "EUR",
                    "pool_bps": 1, "rule": "direct"}),
        )
        .await;
    assert_invalid(&r, "too_long");

    // A receipt for another seller's offer.
    let k2 = kp(2);
    let foreign = Attestation::sign(
        Body::Offer(Offer {
            seller: k2.public(),
            title: "theirs".into(),
            content_hash: None,
            price_minor: 100,
            currency: Currency::parse("EUR").unwrap(),
            policy: Policy {
                pool_bps: 1000,
                connector_bps: 0,
                rule: Rule::Direct,
                max_depth: 16,
                window_ms: 1_000_000,
                require_purchase: false,
            },
            valid_from_ms: 0,
            valid_until_ms: None,
            created_at_ms: now_ms() - 1000,
            checkout_url: None,
        }),
        &k2,
    );
    assert_eq!(node.import(&[&foreign]).await[0]["status"], json!("valid"));
    let r = node
        .post(
            "/v1/receipts",
            &json!({"offer": foreign.id.to_hex(), "order": "x", "amount_minor": 100,
                    "buyer": buyer}),
        )
        .await;
    assert_invalid(&r, "wrong_author");

    // A referral from a link addressed to someone else.
    let (offer_id, link) = node.publish("direct", 1000).await;
    let offer = offer_of(&link);
    let to_k3 = referral(&k2, offer_id, None, Some(kp(3).public()), now_ms() - 1000);
    let addressed = token_of(vec![offer.clone(), to_k3.clone()]);
    let r = node
        .post("/v1/referrals", &json!({ "from": addressed }))
        .await;
    assert_invalid(&r, "not_recipient");
    // The link itself was fine and is now stored; from its id, the same refusal.
    let r = node
        .post("/v1/referrals", &json!({ "from": to_k3.id.to_hex() }))
        .await;
    assert_invalid(&r, "not_recipient");

    // A link carrying a forged referral (signed by k2, claiming k3) is refused whole.
    let forged_body = Body::Referral(Referral {
        referrer: kp(3).public(),
        offer: offer_id,
        parent: None,
        recipient: None,
        community: None,
        created_at_ms: now_ms() - 1000,
    });
    let forged = Attestation::sign(forged_body, &k2);
    let r = node
        .post(
            "/v1/referrals",
            &json!({ "from": token_of(vec![offer.clone(), forged.clone()]) }),
        )
        .await;
    assert_invalid(&r, "signature");
    let r = node
        .post(
            "/v1/receipts",
            &json!({"offer": offer_id.to_hex(), "order": "f", "amount_minor": 100,
                    "buyer": buyer, "via": token_of(vec![offer, forged])}),
        )
        .await;
    assert_invalid(&r, "signature");

    // Receipt and settlement limits; refunding an offer.
    let r = node
        .post(
            "/v1/receipts",
            &json!({"offer": offer_id.to_hex(), "order": "", "amount_minor": 100,
                    "buyer": buyer}),
        )
        .await;
    assert_invalid(&r, "out_of_range");
    let r = node
        .post(
            "/v1/receipts",
            &json!({"offer": offer_id.to_hex(), "order": "big", "amount_minor":
                    1_000_000_000_000_001u64, "buyer": buyer}),
        )
        .await;
    assert_invalid(&r, "out_of_range");
    let r = node
        .post(
            "/v1/settlements",
            &json!({"participant": node.key.to_hex(), "amount_minor": 5, "currency": "EUR",
                    "reference": "self"}),
        )
        .await;
    assert_invalid(&r, "out_of_range");
    let r = node
        .post("/v1/refunds", &json!({ "receipt": offer_id.to_hex() }))
        .await;
    assert_invalid(&r, "wrong_kind");
    // Refunding another seller's receipt (imported) is wrong_author.
    let theirs = Attestation::sign(
        Body::Receipt(passalong_protocol::Receipt {
            seller: k2.public(),
            offer: foreign.id,
            order: "theirs-1".into(),
            amount_minor: 100,
            buyer: kp(9).public(),
            via: None,
            created_at_ms: now_ms() - 500,
        }),
        &k2,
    );
    assert_eq!(node.import(&[&theirs]).await[0]["status"], json!("valid"));
    let r = node
        .post("/v1/refunds", &json!({ "receipt": theirs.id.to_hex() }))
        .await;
    assert_invalid(&r, "wrong_author");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn body_limits() {
    let node = Node::start().await;
    // Just over 64 KiB on an ordinary write: 413.
    let big = json!({"title": "x".repeat(70 * 1024), "price_minor": 1, "currency": "EUR",
                     "pool_bps": 0, "rule": "direct"});
    for path in [
        "/v1/offers",
        "/v1/referrals",
        "/v1/receipts",
        "/v1/settlements",
    ] {
        let r = node.post(path, &big).await;
        assert_error(&r, 413, "too_large");
    }
    // A body of exactly 64 KiB is read (and refused for what it says, not its size).
    let mut exact = format!("{{\"receipt\": \"{}\"", "0".repeat(64));
    exact.push_str(&" ".repeat(64 * 1024 - exact.len() - 1));
    exact.push('}');
    assert_eq!(exact.len(), 64 * 1024);
    let r = node.post_bytes("/v1/refunds", exact.as_bytes()).await;
    assert_error(&r, 404, "not_found");
    // Imports may be bigger: 300 KB of envelopes is fine.
    let envs: Vec<String> = (0..150u8).map(|i| hex::encode([i; 1000])).collect();
    let v = node
        .post("/v1/attestations", &json!({ "envelopes": envs }))
        .await
        .ok(200);
    assert_eq!(v["envelopes"], 150);
    assert_eq!(v["statuses"]["invalid"], 150);
    assert_eq!(v["acks"].as_array().unwrap().len(), 100);
    assert_eq!(v["errors"].as_array().unwrap().len(), 100);
    assert_eq!(v["truncated"], true);
    // … up to 16 MiB.
    let huge = format!(
        "{{\"envelopes\": [\"{}\"]}}",
        "00".repeat(8 * 1024 * 1024 + 16)
    );
    let r = node.post_bytes("/v1/attestations", huge.as_bytes()).await;
    assert_error(&r, 413, "too_large");
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Group commit.

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_receipts_are_group_committed_and_the_ledger_adds_up() {
    let node = Arc::new(Node::start().await);
    let (offer_id, link) = node.publish("equal", 1000).await;
    let offer = offer_of(&link);
    let (k2, k3) = (kp(2), kp(3));
    let at = offer.body.created_at_ms();
    let r2 = referral(&k2, offer_id, None, None, at);
    let r3 = referral(&k3, offer_id, Some(r2.id), None, at);
    node.import(&[&r2]).await;
    // r3 travels only in the link: the concurrent requests that carry it import it together.
    let via3 = token_of(vec![offer, r2.clone(), r3]);
    let buyer = kp(9).public().to_hex();

    const N: u64 = 200;
    let mut tasks = Vec::new();
    for i in 0..N {
        let node = node.clone();
        // Even orders come through k3's link (k3, k2), odd ones through r2's id (k2 alone).
        let via = if i % 2 == 0 {
            via3.clone()
        } else {
            r2.id.to_hex()
        };
        let body = json!({"offer": offer_id.to_hex(), "order": format!("order-{i}"),
                          "amount_minor": 1000 + i, "buyer": buyer, "via": via});
        tasks.push(tokio::spawn(async move {
            let r = node.post("/v1/receipts", &body).await;
            (i, r.status, r.text())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut imported = 0;
    for t in tasks {
        let (i, status, text) = t.await.unwrap();
        assert_eq!(status, 201, "receipt {i}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], json!("valid"));
        imported += v["imported"].as_u64().unwrap();
        assert!(ids.insert(v["id"].as_str().unwrap().to_string()), "{v}");
    }
    assert_eq!(imported, 1, "r3 is new to exactly one request");
    let st = node.get("/v1/status").await.ok(200);
    assert_eq!(
        st["valid_attestations"],
        json!(3 + N),
        "offer, 2 referrals, N receipts"
    );

    // equal, pool 10 %: through (k3, k2) each earns floor(pool / 2); through k2 alone, the pool.
    let pool = |i: u64| (1000 + i) / 10;
    let k3_earned: u64 = (0..N).step_by(2).map(|i| pool(i) / 2).sum();
    let k2_earned: u64 = k3_earned + (1..N).step_by(2).map(pool).sum::<u64>();
    let l = assert_ledger_recomputes(&node).await;
    assert_eq!(l["entries"].as_array().unwrap().len(), 2);
    assert_eq!(line(&l, &k2.public()), (k2_earned, 0, 0, k2_earned as i64));
    assert_eq!(line(&l, &k3.public()), (k3_earned, 0, 0, k3_earned as i64));
    match Arc::try_unwrap(node) {
        Ok(n) => n.stop().await,
        Err(_) => panic!("node still shared"),
    }
}

// ---------------------------------------------------------------------------------------------
// The node never makes its own key equivocate: repeats answer what it signed, conflicts are 409.

impl Node {
    /// Valid attestations in the store.
    async fn valid_count(&self) -> u64 {
        self.get("/v1/status").await.ok(200)["valid_attestations"]
            .as_u64()
            .expect("valid_attestations")
    }

    /// A POST with the token and an `Idempotency-Key`.
    async fn post_keyed(&self, path: &str, key: &str, body: &Value) -> Resp {
        self.send(
            "POST",
            path,
            &format!(
                "Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nIdempotency-Key: {key}\r\n"
            ),
            body.to_string().as_bytes(),
        )
        .await
    }
}

/// Asserts a 409 `conflict` whose message names `existing`; returns the message.
fn assert_conflict(r: &Resp, existing: &str) -> String {
    let v = assert_error(r, 409, "conflict");
    let msg = v["error"].as_str().expect("message").to_string();
    assert!(
        msg.contains(existing),
        "the message names {existing}: {msg}"
    );
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_receipt_answers_the_existing_one_and_a_conflicting_one_is_409() {
    let node = Node::start().await;
    let (offer_id, link) = node.publish("direct", 1000).await;
    let offer = offer_of(&link);
    let k2 = kp(2);
    let r2 = referral(&k2, offer_id, None, None, offer.body.created_at_ms());
    node.import(&[&r2]).await;
    let buyer = kp(9).public().to_hex();
    let sale = json!({"offer": offer_id.to_hex(), "order": "A-1", "amount_minor": 2000,
                      "buyer": buyer, "via": r2.id.to_hex()});
    let first = node.post("/v1/receipts", &sale).await.ok(201);
    assert_eq!(first["existing"], json!(false));
    let id = first["id"].as_str().unwrap().to_string();
    let count = node.valid_count().await;
    let ledger = node.ledger().await;

    // The same sale again (a checkout that retries), and through k2's link rather than its id:
    // the same receipt, 200.
    let again = node.post("/v1/receipts", &sale).await.ok(200);
    assert_eq!(
        again,
        json!({"id": id, "status": "valid", "imported": 0, "existing": true})
    );
    let mut by_link = sale.clone();
    by_link["via"] = json!(token_of(vec![offer, r2.clone()]));
    assert_eq!(
        node.post("/v1/receipts", &by_link).await.ok(200)["id"],
        json!(id)
    );

    // Another amount, buyer or referral for the same order: refused, naming the receipt.
    for (field, value) in [
        ("amount_minor", json!(2500)),
        ("buyer", json!(kp(8).public().to_hex())),
        ("via", Value::Null),
    ] {
        let mut other = sale.clone();
        other[field] = value;
        let msg = assert_conflict(&node.post("/v1/receipts", &other).await, &id);
        assert!(msg.contains(field) && msg.contains("A-1"), "{msg}");
    }
    // Invalid content is still 422, not a conflict.
    let mut zero = sale.clone();
    zero["amount_minor"] = json!(0);
    assert_invalid(&node.post("/v1/receipts", &zero).await, "out_of_range");

    // Nothing was signed: one receipt, no equivocation, the same ledger.
    assert_eq!(node.valid_count().await, count);
    assert_eq!(
        node.get("/v1/equivocations").await.ok(200),
        json!({"equivocations": []})
    );
    assert_eq!(assert_ledger_recomputes(&node).await, ledger);
    // Another order is another sale.
    let mut next = sale.clone();
    next["order"] = json!("A-2");
    let v = node.post("/v1/receipts", &next).await.ok(201);
    assert_ne!(v["id"], json!(id));
    assert_eq!(node.valid_count().await, count + 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_repeats_of_one_sale_sign_one_receipt() {
    let node = Arc::new(Node::start().await);
    let (offer_id, _) = node.publish("direct", 1000).await;
    let count = node.valid_count().await;
    let sale = json!({"offer": offer_id.to_hex(), "order": "C-1", "amount_minor": 700,
                      "buyer": kp(9).public().to_hex()});
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (node, sale) = (node.clone(), sale.clone());
            tokio::spawn(async move {
                let r = node.post("/v1/receipts", &sale).await;
                (r.status, r.json())
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert!(status == 200 || status == 201, "{status}: {v}");
        assert_eq!(v["existing"], json!(status == 200), "{v}");
        created += usize::from(status == 201);
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        (created, ids.len()),
        (1, 1),
        "one receipt signed, every answer names it"
    );
    assert_eq!(node.valid_count().await, count + 1);
    assert_eq!(
        node.get("/v1/equivocations").await.ok(200),
        json!({"equivocations": []})
    );
    match Arc::try_unwrap(node) {
        Ok(n) => n.stop().await,
        Err(_) => panic!("node still shared"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_and_settlements_repeat_idempotently_and_conflicting_settlements_are_409() {
    let node = Node::start().await;
    let (offer_id, _) = node.publish("direct", 1000).await;
    let k2 = kp(2);
    let r2 = referral(&k2, offer_id, None, None, now_ms() - 1000);
    node.import(&[&r2]).await;
    let receipt = node
        .post(
            "/v1/receipts",
            &json!({"offer": offer_id.to_hex(), "order": "R-1", "amount_minor": 10000,
                    "buyer": kp(9).public().to_hex(), "via": r2.id.to_hex()}),
        )
        .await
        .ok(201)["id"]
        .clone();

    // One refund per receipt.
    let rf = node
        .post("/v1/refunds", &json!({ "receipt": receipt }))
        .await
        .ok(201);
    assert_eq!(rf["existing"], json!(false));
    let count = node.valid_count().await;
    let again = node
        .post("/v1/refunds", &json!({ "receipt": receipt }))
        .await
        .ok(200);
    assert_eq!(
        again,
        json!({"id": rf["id"], "status": "valid", "existing": true})
    );
    assert_eq!(node.valid_count().await, count);
    assert_eq!(line(&node.ledger().await, &k2.public()), (1000, 1000, 0, 0));

    // A settlement is identified by its reference.
    let pay = json!({"participant": k2.public().to_hex(), "amount_minor": 300,
                     "currency": "EUR", "reference": "SEPA-9"});
    let st = node.post("/v1/settlements", &pay).await.ok(201);
    assert_eq!(st["existing"], json!(false));
    let sid = st["id"].as_str().unwrap().to_string();
    let count = node.valid_count().await;
    let ledger = node.ledger().await;
    // Repeated (the root has changed since: the answer is still the first settlement's).
    let again = node.post("/v1/settlements", &pay).await.ok(200);
    assert_eq!(
        again,
        json!({"id": sid, "status": "valid", "ledger_root": st["ledger_root"], "existing": true})
    );
    // The same reference for another payment: refused, naming the settlement.
    for (field, value) in [
        ("amount_minor", json!(301)),
        ("currency", json!("USD")),
        ("participant", json!(kp(3).public().to_hex())),
        ("period_start_ms", json!(5)),
    ] {
        let mut other = pay.clone();
        other[field] = value;
        let msg = assert_conflict(&node.post("/v1/settlements", &other).await, &sid);
        assert!(msg.contains(field) && msg.contains("SEPA-9"), "{msg}");
    }
    // A period end given must match; the default (now) matches any.
    let mut end = pay.clone();
    end["period_end_ms"] = json!(1);
    assert_conflict(&node.post("/v1/settlements", &end).await, &sid);
    assert_eq!(node.valid_count().await, count);
    assert_eq!(node.ledger().await, ledger);
    assert_eq!(line(&ledger, &k2.public()), (1000, 1000, 300, -300));
    // Another reference is another payment.
    let mut next = pay.clone();
    next["reference"] = json!("SEPA-10");
    let v = node.post("/v1/settlements", &next).await.ok(201);
    assert_ne!(v["id"], json!(sid));
    assert_eq!(node.valid_count().await, count + 1);
    assert_eq!(
        node.get("/v1/equivocations").await.ok(200),
        json!({"equivocations": []})
    );
    assert_ledger_recomputes(&node).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_answers_its_first_receipt_and_refuses_another_body() {
    let node = Node::start().await;
    let (offer_id, _) = node.publish("direct", 1000).await;
    let buyer = kp(9).public().to_hex();
    let sale = |order: &str, amount: u64| json!({"offer": offer_id.to_hex(), "order": order, "amount_minor": amount, "buyer": buyer});
    let first = node
        .post_keyed("/v1/receipts", "checkout-7f3a", &sale("K-1", 900))
        .await
        .ok(201);
    let id = first["id"].as_str().unwrap().to_string();
    let count = node.valid_count().await;
    // The same key and body: the first answer.
    let again = node
        .post_keyed("/v1/receipts", "checkout-7f3a", &sale("K-1", 900))
        .await
        .ok(200);
    assert_eq!(
        again,
        json!({"id": id, "status": "valid", "imported": 0, "existing": true})
    );
    // The same key with another body (another order, or another amount): 409, nothing signed.
    for body in [sale("K-2", 900), sale("K-1", 901)] {
        let msg = assert_conflict(
            &node
                .post_keyed("/v1/receipts", "checkout-7f3a", &body)
                .await,
            &id,
        );
        assert!(msg.contains("Idempotency-Key"), "{msg}");
    }
    assert_eq!(node.valid_count().await, count);
    assert_eq!(node.store.receipt_of_order(&node.key, "K-2").unwrap(), None);
    // A new key for a sale already recorded without one: the existing receipt, and the key
    // names it from then on.
    let plain = node.post("/v1/receipts", &sale("K-3", 50)).await.ok(201);
    let v = node
        .post_keyed("/v1/receipts", "checkout-late", &sale("K-3", 50))
        .await
        .ok(200);
    assert_eq!(v["id"], plain["id"]);
    assert_conflict(
        &node
            .post_keyed("/v1/receipts", "checkout-late", &sale("K-4", 50))
            .await,
        plain["id"].as_str().unwrap(),
    );
    // A refused request leaves its key unused.
    let r = node
        .post_keyed("/v1/receipts", "checkout-bad", &sale("K-5", 0))
        .await;
    assert_invalid(&r, "out_of_range");
    node.post_keyed("/v1/receipts", "checkout-bad", &sale("K-5", 5))
        .await
        .ok(201);
    // Keys are 1 to 255 printable ASCII characters.
    for bad in ["", &"k".repeat(256)] {
        let r = node.post_keyed("/v1/receipts", bad, &sale("K-6", 5)).await;
        assert_error(&r, 400, "bad_request");
    }
    node.post_keyed("/v1/receipts", &"k".repeat(255), &sale("K-6", 5))
        .await
        .ok(201);
    assert_eq!(
        node.get("/v1/equivocations").await.ok(200),
        json!({"equivocations": []})
    );
    node.stop().await;
}

/// `GET /v1/earnings`: the sales that paid the node's identity, newest first, as a hop (its
/// place, 1 = nearest the buyer) or as the connector of hop 1's community (`hop: null`); not
/// its own sales as the seller, nor sales that paid it nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn earnings_list_the_sales_that_paid_me() {
    use passalong_protocol::attestation::{Community, Membership, Receipt};
    let node = Node::start().await;
    let (me, seller, k2, k3) = (kp(1), kp(5), kp(2), kp(3));
    let t0 = now_ms() - 60_000;
    let eur = Currency::parse("EUR").unwrap();
    let sign = |body: Body, k: &Keypair| Attestation::sign(body, k);
    // The node's identity is the connector of a community with k2 and k3 as members.
    let community = sign(
        Body::Community(Community {
            connector: me.public(),
            name: "Neighbours".into(),
            created_at_ms: t0,
        }),
        &me,
    );
    let member = |k: &Keypair| {
        sign(
            Body::Membership(Membership::admit(me.public(), community.id, k, t0 + 1)),
            &me,
        )
    };
    let (m2, m3) = (member(&k2), member(&k3));
    // Another seller's offer: pool 10 % geometric (hop 1 500, hop 2 250), connector 1 % (100).
    let offer = sign(
        Body::Offer(Offer {
            seller: seller.public(),
            title: "Their record".into(),
            content_hash: None,
            price_minor: 10_000,
            currency: eur,
            policy: Policy {
                pool_bps: 1000,
                connector_bps: 100,
                rule: Rule::Geometric { r_bps: 5000 },
                max_depth: 16,
                window_ms: 86_400_000,
                require_purchase: false,
            },
            valid_from_ms: 0,
            valid_until_ms: None,
            created_at_ms: t0,
            checkout_url: None,
        }),
        &seller,
    );
    let refer = |k: &Keypair, parent: Option<Id>, community: Option<Id>, at: u64| {
        sign(
            Body::Referral(Referral {
                referrer: k.public(),
                offer: offer.id,
                parent,
                recipient: None,
                community,
                created_at_ms: at,
            }),
            k,
        )
    };
    let mine = refer(&me, None, None, t0 + 2);
    let r2 = refer(&k2, Some(mine.id), Some(community.id), t0 + 3);
    let r3 = refer(&k3, None, Some(community.id), t0 + 4);
    let sale = |order: &str, via: Option<Id>, at: u64| {
        sign(
            Body::Receipt(Receipt {
                seller: seller.public(),
                offer: offer.id,
                order: order.into(),
                amount_minor: 10_000,
                buyer: kp(9).public(),
                via,
                created_at_ms: at,
            }),
            &seller,
        )
    };
    let a = sale("a", Some(mine.id), t0 + 10); // me hop 1: 500
    let b = sale("b", Some(r2.id), t0 + 11); // k2 hop 1 (member), me hop 2: 250 + connector 100
    let c = sale("c", Some(r3.id), t0 + 12); // k3 hop 1 (member): me as connector, 100
    let d = sale("d", None, t0 + 13); // nobody
    let all = [
        &community, &m2, &m3, &offer, &mine, &r2, &r3, &a, &b, &c, &d,
    ];
    for ack in node.import(&all).await {
        assert_eq!(ack["status"], json!("valid"), "{ack}");
    }
    // The node's own sale through k3's link pays k3, not the node (the seller).
    let (own, own_link) = node.publish("geometric:5000", 1000).await;
    let r = referral(&k3, own, None, None, now_ms() - 1000);
    let via = token_of(vec![offer_of(&own_link), r]);
    node.post(
        "/v1/receipts",
        &json!({"offer": own.to_hex(), "order": "own-1", "amount_minor": 10000,
                "buyer": kp(8).public().to_hex(), "via": via}),
    )
    .await
    .ok(201);

    let v = node.get("/v1/earnings").await.ok(200);
    assert_eq!(
        v["earnings"][0],
        json!({"receipt": c.id.to_hex(), "order": "c", "offer": offer.id.to_hex(),
               "title": "Their record", "seller": seller.public().to_hex(), "currency": "EUR",
               "amount_minor": 10000, "hop": null, "share_minor": 100,
               "created_at_ms": t0 + 12})
    );
    let typed: passalong_api::earnings::Earnings = serde_json::from_value(v.clone()).unwrap();
    let got: Vec<(String, Option<u8>, u64)> = typed
        .earnings
        .iter()
        .map(|e| (e.order.clone(), e.hop, e.share_minor))
        .collect();
    let expected = vec![
        ("c".to_string(), None, 100),
        ("b".to_string(), Some(2), 350),
        ("a".to_string(), Some(1), 500),
    ];
    assert_eq!(got, expected);
    // The ledger agrees: 950 earned from that seller.
    let ledger = node
        .get(&format!("/v1/ledger?seller={}", seller.public().to_hex()))
        .await
        .ok(200);
    assert_eq!(line(&ledger, &me.public()).0, 950);

    let limited = node.get("/v1/earnings?limit=2").await.ok(200);
    assert_eq!(limited["earnings"].as_array().unwrap().len(), 2);
    assert_eq!(limited["earnings"][1]["order"], json!("b"));
    let theirs = node
        .get(&format!("/v1/earnings?seller={}", seller.public().to_hex()))
        .await
        .ok(200);
    assert_eq!(theirs, v);
    let as_me = node
        .get(&format!("/v1/earnings?as={}", me.public().to_hex()))
        .await
        .ok(200);
    assert_eq!(as_me, v);
    let own_market = node
        .get(&format!("/v1/earnings?seller={}", node.key.to_hex()))
        .await
        .ok(200);
    assert_eq!(own_market, json!({"earnings": []}));

    assert_error(
        &node.get("/v1/earnings?seller=zz").await,
        400,
        "bad_request",
    );
    assert_error(
        &node
            .get(&format!("/v1/earnings?as={}", kp(7).public().to_hex()))
            .await,
        400,
        "bad_request",
    );
    assert_error(&node.get("/v1/earnings?limit=-1").await, 400, "bad_request");
    assert_error(
        &node.get("/v1/earnings?colour=red").await,
        400,
        "bad_request",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_links_resolve_where_the_chain_is_held() {
    let node = Node::start().await;
    let (offer, _) = node.publish("geometric:5000", 1000).await;
    let v = node
        .post("/v1/referrals", &json!({"from": offer.to_hex()}))
        .await
        .ok(201);
    let short = v["short"].as_str().expect("short").to_string();
    assert!(short.starts_with("pl1s."), "{short}");
    assert!(v["short_url"]
        .as_str()
        .expect("short_url")
        .ends_with(&short));
    let full = ShareLink::parse(v["link"].as_str().expect("link")).expect("full link");
    // The short link stands for the same chain: referring from it extends that chain.
    let r = node
        .post("/v1/referrals", &json!({"from": short}))
        .await
        .ok(201);
    let mine = ShareLink::parse(r["link"].as_str().expect("link")).expect("link");
    assert_eq!(mine.attestations[..2], full.attestations[..]);
    // A short link whose chain this node does not hold: 404 saying so, and the node now
    // follows the market so that anti-entropy brings it.
    let stranger = Keypair::from_seed([77; 32]).public();
    let unknown = passalong_protocol::link::ShortLink {
        market: stranger,
        id: Id([5; 32]),
    };
    let r = node
        .post("/v1/referrals", &json!({"from": unknown.token()}))
        .await;
    let e = assert_error(&r, 404, "not_found");
    assert!(
        e["error"]
            .as_str()
            .expect("error")
            .contains("follows the seller's market"),
        "{e}"
    );
    assert!(node.store.followed().expect("followed").contains(&stranger));
    // A damaged short link is a 400.
    let mut damaged = short.clone();
    damaged.truncate(short.len() - 3);
    let r = node.post("/v1/referrals", &json!({"from": damaged})).await;
    assert_error(&r, 400, "bad_request");
}

/// Junk envelopes cost an answer of bounded size: counts of every outcome and the first 100
/// acks and errors (one ack per envelope made 5 MB of junk a 198 MB answer and 2.68 GB of
/// memory); an honest import in the same request still counts and stores every envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_junk_import_gets_a_bounded_summary() {
    let node = Node::start().await;
    let (offer_id, link) = node.publish("equal", 1000).await;
    let offer = offer_of(&link);
    let now = now_ms();
    let honest: Vec<Attestation> = (0..600u64)
        .map(|i| {
            referral(
                &kp(10 + (i % 200) as u8),
                offer_id,
                None,
                None,
                now - 1000 - i,
            )
        })
        .collect();
    const JUNK: usize = 100_000;
    let mut envs: Vec<String> = Vec::with_capacity(JUNK + honest.len() + 1);
    envs.push(hex::encode(&offer.bytes));
    for (i, a) in honest.iter().enumerate() {
        envs.push(hex::encode(&a.bytes));
        for j in 0..JUNK / honest.len() {
            envs.push(format!("{:08x}", i * 1000 + j));
        }
    }
    let total = envs.len();
    let body = json!({ "envelopes": envs }).to_string();
    assert!(body.len() > 700_000, "{}", body.len());
    let r = node.post_bytes("/v1/attestations", body.as_bytes()).await;
    assert!(
        r.body.len() < 64 * 1024,
        "a {} B answer to {} envelopes",
        r.body.len(),
        total
    );
    let v = r.ok(200);
    assert_eq!(v["envelopes"], json!(total));
    let junk = total - honest.len() - 1;
    assert_eq!(v["statuses"]["invalid"], json!(junk), "{}", v["statuses"]);
    assert_eq!(v["statuses"]["valid"], json!(honest.len() + 1));
    assert_eq!(
        v["new"],
        json!(total - 1),
        "the offer was held already: {v}"
    );
    assert_eq!(v["acks"].as_array().unwrap().len(), 100);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    // Errors name their envelope by its place in the request.
    assert_eq!(errors[0]["index"], json!(2));
    assert!(errors[0]["reason"].as_str().unwrap().starts_with("decode."));
    assert_eq!(v["truncated"], json!(true));
    for a in &honest {
        let g = node
            .get(&format!("/v1/attestations/{}", a.id.to_hex()))
            .await
            .ok(200);
        assert_eq!(g["status"], json!("valid"));
    }
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A community node (issue 16): founding the community, invites.

/// `GET path` with the token (a read that is not public).
async fn get_private(node: &Node, path: &str) -> Resp {
    node.send(
        "GET",
        path,
        &format!("Authorization: Bearer {TOKEN}\r\n"),
        b"",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_community_is_founded_once_by_the_nodes_key() {
    let node = Node::start().await;
    let none = assert_error(&node.get("/v1/community").await, 404, "not_found");
    assert!(
        none["error"].as_str().unwrap().contains("community create"),
        "{none}"
    );
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "  "}),
    ] {
        assert_error(&node.post("/v1/community", &bad).await, 400, "bad_request");
    }
    assert_error(
        &node
            .post("/v1/community", &json!({"name": "R", "connector": "x"}))
            .await,
        400,
        "bad_request",
    );
    // Asked twice at once: one community is founded, the other request refused.
    let body = json!({"name": " Riverside "});
    let (a, b) = tokio::join!(
        node.post("/v1/community", &body),
        node.post("/v1/community", &body)
    );
    let (won, lost) = if a.status == 201 { (a, b) } else { (b, a) };
    let e = assert_error(&lost, 409, "conflict");
    assert!(e["error"].as_str().unwrap().contains("Riverside"), "{e}");
    let v = won.ok(201);
    assert_eq!(v["name"], json!("Riverside"), "trimmed: {v}");
    assert_eq!(v["connector"], json!(node.key.to_hex()));
    assert_eq!(v["open_invites"], json!(0));
    let id = Id::from_hex(v["id"].as_str().unwrap()).unwrap();
    // The attestation is the truth: stored, valid, by the node's key.
    let att = node.store.attestation(&id).unwrap().expect("stored");
    match &att.body {
        Body::Community(c) => {
            assert_eq!((c.connector, c.name.as_str()), (node.key, "Riverside"));
            assert_eq!(c.created_at_ms, v["created_at_ms"].as_u64().unwrap());
        }
        other => panic!("not a community: {other:?}"),
    }
    assert_eq!(node.get("/v1/community").await.ok(200), v);
    // One community per node.
    let e = assert_error(
        &node.post("/v1/community", &json!({"name": "Other"})).await,
        409,
        "conflict",
    );
    assert!(e["error"].as_str().unwrap().contains("Riverside"), "{e}");
    let communities = node
        .store
        .market_of_kind(&node.key, passalong_protocol::Kind::Community)
        .unwrap();
    assert_eq!(communities.len(), 1, "one Community signed");
    // It survives a restart: the file names it.
    let reopened = passalong_api::community::CommunityNode::open(node._dir.path()).unwrap();
    assert_eq!(reopened.current().map(|c| c.id), Some(id));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invites_are_made_listed_and_revoked_and_their_tokens_never_kept() {
    let node = Node::start().await;
    assert_error(
        &node.post("/v1/community/invites", &json!({})).await,
        404,
        "not_found",
    );
    node.post("/v1/community", &json!({"name": "Riverside"}))
        .await
        .ok(201);
    let before = now_ms();
    let anna = node
        .post(
            "/v1/community/invites",
            &json!({"note": "for Anna", "expires_in_ms": 3_600_000}),
        )
        .await
        .ok(201);
    let ben = node.post("/v1/community/invites", &json!({})).await.ok(201);
    let after = now_ms();
    let token = anna["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("inv1.") && token.len() == 37, "{token}");
    assert_eq!(
        anna["url"],
        json!(format!("http://{}/join/{token}", node.addr))
    );
    assert_eq!(anna["note"], json!("for Anna"));
    let expires = anna["expires_ms"].as_u64().unwrap();
    assert!((before + 3_600_000..=after + 3_600_000).contains(&expires));
    let week = 7 * 86_400_000;
    let expires = ben["expires_ms"].as_u64().unwrap();
    assert!((before + week..=after + week).contains(&expires), "7 days");
    assert_ne!(anna["id"], ben["id"]);
    assert_eq!(
        node.get("/v1/community").await.ok(200)["open_invites"],
        json!(2)
    );

    // The list needs the token (a community node is reached from outside), and shows no token.
    assert_error(
        &node.get("/v1/community/invites").await,
        401,
        "unauthorized",
    );
    let list = get_private(&node, "/v1/community/invites").await;
    assert!(!list.text().contains(&token[5..]));
    let list = list.ok(200);
    let invites = list["invites"].as_array().unwrap();
    assert_eq!(invites.len(), 2);
    assert_eq!(invites[0]["id"], anna["id"]);
    assert_eq!(invites[0]["state"], json!("open"));
    assert_eq!(invites[0]["note"], json!("for Anna"));
    assert!(invites[0].get("token").is_none());
    // Nor does the file.
    let file = node._dir.path().join("community").join("invites.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&token[5..]) && text.contains("for Anna"));

    let id = anna["id"].as_str().unwrap();
    let revoke = format!("/v1/community/invites/{id}/revoke");
    assert_eq!(
        node.post(&revoke, &json!(null)).await.ok(200),
        json!({"id": id, "revoked": true})
    );
    node.post(&revoke, &json!(null)).await.ok(200);
    let list = get_private(&node, "/v1/community/invites").await.ok(200);
    let revoked = &list["invites"][0];
    assert_eq!(revoked["state"], json!("revoked"));
    assert!(revoked["closed_ms"].as_u64().unwrap() >= before);
    assert_eq!(
        node.get("/v1/community").await.ok(200)["open_invites"],
        json!(1)
    );
    let reopened = passalong_api::community::CommunityNode::open(node._dir.path()).unwrap();
    assert_eq!(reopened.invites().len(), 2, "kept on disk");

    // Bad input is refused clearly.
    let other = if id == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    let other = if other == ben["id"].as_str().unwrap() {
        "ffffffff"
    } else {
        other
    };
    assert_error(
        &node
            .post(
                &format!("/v1/community/invites/{other}/revoke"),
                &json!(null),
            )
            .await,
        404,
        "not_found",
    );
    for bad in ["zz", "0000", "000000000"] {
        assert_error(
            &node
                .post(&format!("/v1/community/invites/{bad}/revoke"), &json!(null))
                .await,
            400,
            "bad_request",
        );
    }
    for bad in [
        json!({"expires_in_ms": 0}),
        json!({"expires_in_ms": 366u64 * 86_400_000}),
        json!({"note": "x".repeat(201)}),
        json!({"note": "a\u{1b}[31m"}),
        json!({"token": "inv1.00"}),
    ] {
        assert_error(
            &node.post("/v1/community/invites", &bad).await,
            400,
            "bad_request",
        );
    }
    assert_eq!(
        node.get("/v1/community").await.ok(200)["open_invites"],
        json!(1)
    );
    node.stop().await;
}
