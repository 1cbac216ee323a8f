//! The dashboard over real HTTP, without a browser: sign-in and sign-out, the session cookie,
//! CSRF, Host and Origin refusals, the security headers, and share pages for bad, unknown and
//! hostile links. (`node/tests/browser.rs` drives the same pages in Chromium.)

use std::net::SocketAddr;
use std::sync::Arc;

use passalong_api::{AppState, Identities, Writer};
use passalong_protocol::attestation::{Body, Offer};
use passalong_protocol::link::{ShareLink, ShortLink};
use passalong_protocol::{Attestation, Currency, Id, Keypair, Policy, Rule};
use passalong_store::Store;
use passalong_web::PublicUrl;

const TOKEN: &str = "web-test-token-0123456789abcdef";

struct Node {
    addr: SocketAddr,
    store: Arc<Store>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        Node::start_public(None)
    }

    /// A node reached from outside at `public` (its `public_url`).
    fn start_public(public: Option<&str>) -> Node {
        let public = public
            .map(|p| PublicUrl::parse(p).expect("public url"))
            .unwrap_or_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let store = Arc::new(Store::open(dir.path().join("store")).expect("store"));
        let (addr, listener) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            (l.local_addr().expect("addr"), l)
        });
        let s = store.clone();
        let path = dir.path().to_path_buf();
        rt.spawn(async move {
            let state = AppState::new(
                s.clone(),
                Writer::spawn(s),
                Identities::single(Keypair::from_seed([1; 32])),
                TOKEN.into(),
                public
                    .base
                    .clone()
                    .unwrap_or_else(|| format!("http://{addr}")),
                path.clone(),
            )
            .expect("state");
            let app = passalong_web::app(state, &public);
            let _ = passalong_web::serve(listener, app, std::future::pending()).await;
        });
        Node {
            addr,
            store,
            _rt: rt,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An agent that does not follow redirects (the tests look at them).
    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new().redirects(0).build()
    }

    /// Signs in like a browser; returns the session cookie.
    fn sign_in(&self) -> String {
        let a = Node::agent();
        let page = a.get(&self.url("/signin")).call().expect("signin page");
        let set = page
            .header("set-cookie")
            .expect("a sign-in cookie")
            .to_string();
        let csrf = cookie_value(&set, "pl_signin");
        let r = a
            .post(&self.url("/signin"))
            .set("Cookie", &format!("pl_signin={csrf}"))
            .send_form(&[("token", TOKEN), ("csrf", &csrf)])
            .expect("sign in");
        assert_eq!(r.status(), 303);
        assert_eq!(r.header("location"), Some("/"));
        let all: Vec<String> = r.all("set-cookie").iter().map(|s| s.to_string()).collect();
        let session = all
            .iter()
            .find(|c| c.starts_with("pl_session="))
            .expect("a session cookie");
        assert!(
            session.contains("HttpOnly") && session.contains("SameSite=Strict"),
            "{session}"
        );
        format!("pl_session={}", cookie_value(session, "pl_session"))
    }

    fn get(&self, path: &str, cookie: &str) -> (u16, String) {
        match Node::agent()
            .get(&self.url(path))
            .set("Cookie", cookie)
            .call()
        {
            Ok(r) => (r.status(), r.into_string().expect("body")),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().expect("body")),
            Err(e) => panic!("transport: {e}"),
        }
    }

    fn post_form(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> u16 {
        match Node::agent()
            .post(&self.url(path))
            .set("Cookie", cookie)
            .send_form(form)
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("transport: {e}"),
        }
    }

    /// A form post whose answer is a page: (status, body).
    fn post_page(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String) {
        match Node::agent()
            .post(&self.url(path))
            .set("Cookie", cookie)
            .send_form(form)
        {
            Ok(r) => (r.status(), r.into_string().expect("body")),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().expect("body")),
            Err(e) => panic!("transport: {e}"),
        }
    }

    /// A read of the API with the token.
    fn api_get(&self, path: &str) -> serde_json::Value {
        Node::agent()
            .get(&self.url(path))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .expect(path)
            .into_json()
            .expect("json")
    }

    fn offer(&self, title: &str) -> ShareLink {
        let k = Keypair::from_seed([1; 32]);
        let a = Attestation::sign(
            Body::Offer(Offer {
                seller: k.public(),
                title: title.into(),
                content_hash: None,
                price_minor: 1999,
                currency: Currency::parse("EUR").expect("EUR"),
                policy: Policy {
                    pool_bps: 1000,
                    connector_bps: 0,
                    rule: Rule::Direct,
                    max_depth: 16,
                    window_ms: 86_400_000,
                    require_purchase: false,
                },
                valid_from_ms: 0,
                valid_until_ms: None,
                created_at_ms: 1_767_225_600_000,
                checkout_url: Some("https://shop.example/buy?item=7".into()),
            }),
            &k,
        );
        let acks = self
            .store
            .ingest(&[&a.bytes], 1_767_225_600_000)
            .expect("ingest");
        assert_eq!(acks[0].status, passalong_store::Status::Valid);
        ShareLink::new(vec![a]).expect("link")
    }
}

fn cookie_value(set_cookie: &str, name: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix(&format!("{name}=")))
        .expect("cookie value")
        .to_string()
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

#[test]
fn sign_in_sign_out_and_the_session_cookie() {
    let node = Node::start();
    // Not signed in: to the sign-in page.
    let (status, _) = node.get("/", "");
    assert_eq!(status, 303);
    let cookie = node.sign_in();
    let (status, home) = node.get("/", &cookie);
    assert_eq!(status, 200);
    assert!(home.contains("What I earned"));
    // A made-up session is not one.
    let (status, _) = node.get("/", &format!("pl_session={}", "ab".repeat(32)));
    assert_eq!(status, 303);
    // Sign-out needs the form's CSRF token, then ends the session.
    assert_eq!(node.post_form("/signout", &cookie, &[]), 403);
    let csrf = csrf_of(&home);
    assert_eq!(node.post_form("/signout", &cookie, &[("csrf", &csrf)]), 303);
    assert_eq!(node.get("/", &cookie).0, 303, "the session ended");
}

#[test]
fn the_sign_in_form_refuses_a_wrong_token_and_a_missing_form_token() {
    let node = Node::start();
    let a = Node::agent();
    let page = a.get(&node.url("/signin")).call().expect("page");
    let csrf = cookie_value(page.header("set-cookie").expect("cookie"), "pl_signin");
    let r = a
        .post(&node.url("/signin"))
        .set("Cookie", &format!("pl_signin={csrf}"))
        .send_form(&[("token", "wrong"), ("csrf", &csrf)]);
    match r {
        Err(ureq::Error::Status(401, r)) => {
            let body = r.into_string().expect("body");
            assert!(body.contains("not this node's API token"));
            assert!(!body.contains(TOKEN));
        }
        other => panic!("expected 401, got {other:?}"),
    }
    // Without the double-submit cookie (a form posted from elsewhere): refused.
    let r = a
        .post(&node.url("/signin"))
        .send_form(&[("token", TOKEN), ("csrf", &csrf)]);
    assert!(matches!(r, Err(ureq::Error::Status(403, _))), "{r:?}");
}

#[test]
fn every_answer_carries_the_security_headers_and_foreign_hosts_and_origins_are_refused() {
    let node = Node::start();
    for path in ["/signin", "/v1/status", "/assets/style.css"] {
        let r = Node::agent().get(&node.url(path)).call().expect(path);
        let csp = r.header("content-security-policy").expect("CSP");
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    for path in ["/", "/v1/status", "/l/pl1.x"] {
        let r = Node::agent()
            .get(&node.url(path))
            .set("Host", "evil.example")
            .call();
        assert!(
            matches!(r, Err(ureq::Error::Status(403, _))),
            "{path}: {r:?}"
        );
    }
    let r = Node::agent()
        .get(&node.url("/v1/status"))
        .set("Host", &format!("localhost:{}", node.addr.port()))
        .call();
    assert!(r.is_ok(), "localhost is a loopback name");
    let cookie = node.sign_in();
    let (_, page) = node.get("/contacts", &cookie);
    let csrf = csrf_of(&page);
    let key = "2".repeat(64);
    let from = |origin: &str| match Node::agent()
        .post(&node.url("/contacts"))
        .set("Cookie", &cookie)
        .set("Origin", origin)
        .send_form(&[("csrf", &csrf), ("key", &key), ("name", "Anna")])
    {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(from("http://evil.example"), 403);
    assert_eq!(from("null"), 403);
    assert_eq!(from(&format!("http://{}", node.addr)), 303);
    let (_, contacts) = node.get("/contacts", &cookie);
    assert!(contacts.contains("Anna") && contacts.contains(&key));
}

#[test]
fn share_pages_escape_what_a_seller_wrote_and_explain_bad_links() {
    let node = Node::start();
    let link = node.offer("<script>alert(1)</script> \u{202e}drocer A");
    let (status, page) = node.get(&format!("/l/{}", link.token()), "");
    assert_eq!(status, 200, "no sign-in needed");
    assert!(!page.contains("<script>alert"), "escaped");
    assert!(page.contains("&lt;script&gt;"));
    assert!(!page.contains('\u{202e}'), "no right-to-left override");
    assert!(page.contains("19.99"));
    assert!(
        page.contains(&format!(
            "https://shop.example/buy?item=7&amp;passalong={}",
            link.token()
        )),
        "the buy button carries the token"
    );
    // The short link opens on the node that holds the chain.
    let short = ShortLink::of(&link);
    let (status, page) = node.get(&format!("/l/{}", short.token()), "");
    assert_eq!(status, 200);
    assert!(page.contains("19.99"));
    // Damaged, and unknown here.
    let (status, page) = node.get("/l/pl1.AAAA", "");
    assert_eq!(status, 400);
    assert!(page.contains("damaged"), "{page}");
    let unknown = ShortLink {
        market: Keypair::from_seed([9; 32]).public(),
        id: Id([3; 32]),
    };
    let (status, page) = node.get(&format!("/l/{}", unknown.token()), "");
    assert_eq!(status, 404);
    assert!(page.contains("full link"), "{page}");
}

#[test]
fn an_equivocation_shows_both_receipts_as_evidence() {
    use passalong_protocol::attestation::Receipt;
    let node = Node::start();
    let link = node.offer("A record");
    let seller = Keypair::from_seed([1; 32]);
    let receipt = |amount: u64| {
        Attestation::sign(
            Body::Receipt(Receipt {
                seller: seller.public(),
                offer: link.offer(),
                order: "A-1".into(),
                amount_minor: amount,
                buyer: Keypair::from_seed([4; 32]).public(),
                via: None,
                created_at_ms: 1_767_225_700_000,
            }),
            &seller,
        )
    };
    let (a, b) = (receipt(1999), receipt(2999));
    node.store
        .ingest(&[&a.bytes, &b.bytes], 1_767_225_800_000)
        .expect("ingest");
    let cookie = node.sign_in();
    let (status, page) = node.get("/disputes", &cookie);
    assert_eq!(status, 200);
    assert!(page.contains("Equivocation"), "{page}");
    let (counted, other) = if a.id < b.id {
        (a.id, b.id)
    } else {
        (b.id, a.id)
    };
    let at = |id: &Id| page.find(&id.to_hex()).unwrap_or(usize::MAX);
    assert!(
        at(&counted) < at(&other),
        "the counted receipt (smaller id) first, both shown"
    );
    assert!(at(&other) < usize::MAX);
    let (_, network) = node.get("/network", &cookie);
    assert!(
        network.contains("offline"),
        "a node without the network says so"
    );
}

#[test]
fn behind_a_public_url_links_use_it_and_the_dashboard_answers_to_its_host() {
    let node = Node::start_public(Some("https://shop.example"));
    let r = Node::agent()
        .get(&node.url("/signin"))
        .set("Host", "shop.example")
        .call()
        .expect("the public host is ours");
    let cookie = r.header("set-cookie").expect("cookie");
    assert!(
        cookie.contains("Secure"),
        "https: cookies are Secure: {cookie}"
    );
    let v: serde_json::Value = Node::agent()
        .post(&node.url("/v1/offers"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(serde_json::json!({"title": "A record", "price_minor": 100,
            "currency": "EUR", "pool_bps": 1000, "rule": "direct"}))
        .expect("publish")
        .into_json()
        .expect("json");
    for key in ["url", "short_url"] {
        let url = v[key].as_str().expect("url");
        assert!(
            url.starts_with("https://shop.example/l/pl1"),
            "{key}: {url}"
        );
    }
    let r = Node::agent()
        .get(&node.url("/signin"))
        .set("Host", "other.example")
        .call();
    assert!(matches!(r, Err(ureq::Error::Status(403, _))));
}

/// The text of the element with id `id` (no nested tags).
fn text_of(page: &str, id: &str) -> String {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let start = at + page[at..].find('>').expect("tag end") + 1;
    let end = start + page[start..].find('<').expect("text end");
    page[start..end].to_string()
}

#[test]
fn the_connector_founds_a_community_and_makes_and_revokes_invites_on_its_page() {
    let node = Node::start();
    let cookie = node.sign_in();
    let (status, page) = node.get("/community", &cookie);
    assert_eq!(status, 200);
    assert!(page.contains("runs no community yet"), "{page}");
    assert!(
        page.contains("href=\"/community\""),
        "the operator's menu has it"
    );
    let csrf = csrf_of(&page);
    assert_eq!(
        node.post_form("/community", &cookie, &[("name", "Riverside")]),
        403,
        "no CSRF token"
    );
    let (status, page) = node.post_page("/community", &cookie, &[("csrf", &csrf), ("name", "")]);
    assert_eq!(status, 400);
    assert!(page.contains("1 to 64 bytes"), "{page}");
    assert_eq!(
        node.post_form(
            "/community",
            &cookie,
            &[("csrf", &csrf), ("name", "Riverside")]
        ),
        303
    );
    let (_, page) = node.get("/community", &cookie);
    assert!(page.contains("Community Riverside") && page.contains("No open invite."));

    let (status, shown) = node.post_page(
        "/community/invites",
        &cookie,
        &[("csrf", &csrf), ("note", "Anna <3"), ("days", "7")],
    );
    assert_eq!(status, 200);
    let link = text_of(&shown, "invite-link");
    let prefix = format!("http://{}/join/inv1.", node.addr);
    assert!(link.starts_with(&prefix), "{link}");
    let token = link.rsplit('/').next().unwrap().to_string();
    assert!(
        shown.contains("<svg") && shown.contains("data-version"),
        "a QR code"
    );
    assert!(
        shown.contains(&format!("data-copy=\"{link}\"")),
        "a copy button"
    );
    assert!(shown.contains("Anna &lt;3") && !shown.contains("Anna <3"));

    // Listed as open, without its token, here and in the API.
    let (_, page) = node.get("/community", &cookie);
    assert!(!page.contains(&token), "the token is shown once");
    let listed = node.api_get("/v1/community/invites");
    let id = listed["invites"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed["invites"][0]["state"], "open");
    assert!(page.contains(&id) && page.contains("Revoke"));
    let (status, _) = node.post_page(
        "/community/invites",
        &cookie,
        &[("csrf", &csrf), ("note", ""), ("days", "3650")],
    );
    assert_eq!(status, 400, "only the durations offered");

    assert_eq!(
        node.post_form("/community/invites/revoke", &cookie, &[("id", &id)]),
        403
    );
    assert_eq!(
        node.post_form(
            "/community/invites/revoke",
            &cookie,
            &[("csrf", &csrf), ("id", &id)]
        ),
        303
    );
    let (_, page) = node.get("/community", &cookie);
    assert!(page.contains("No open invite.") && page.contains("revoked"));
    assert_eq!(
        node.api_get("/v1/community/invites")["invites"][0]["state"],
        "revoked"
    );
    // Signed out, the page is the sign-in's.
    assert_eq!(node.get("/community", "").0, 303);
}
