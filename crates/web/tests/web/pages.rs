//! The dashboard over real HTTP, without a browser: sign-in and sign-out, the session cookie,
//! CSRF, Host and Origin refusals, the security headers, and share pages for bad, unknown and
//! hostile links. (`node/tests/node/browser.rs` drives the same pages in Chromium.)

use std::net::SocketAddr;
use std::sync::Arc;

use passalong_api::{AppState, Identities, Writer};
use passalong_protocol::attestation::{Body, Offer};
use passalong_protocol::link::{ShareLink, ShortLink};
use passalong_protocol::{Attestation, Currency, Id, Keypair, Policy, Rule};
use passalong_store::Store;
use passalong_web::PublicUrl;

use crate::support::seller;

const TOKEN: &str = "web-test-token-0123456789abcdef";

struct Node {
    addr: SocketAddr,
    store: Arc<Store>,
    /// The node's state, as its handlers share it (sessions, the sign-in gate, the community).
    state: AppState,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        Node::start_public(None)
    }

    /// A node reached from outside at `public` (its `public_url`).
    fn start_public(public: Option<&str>) -> Node {
        Node::start_with(public, |_| {})
    }

    /// A node whose state `tweak` adjusts before it serves.
    fn start_with(
        public: Option<&str>,
        tweak: impl FnOnce(&mut AppState) + Send + 'static,
    ) -> Node {
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
        let (state_tx, state_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let mut state = AppState::new(
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
            // Hosted members' keys sealed at the cheapest cost accepted: tests stay fast.
            state.member_kdf = passalong_accounts::KdfParams::MINIMUM;
            tweak(&mut state);
            state_tx.send(state.clone()).expect("the test waits");
            let app = passalong_web::app(state, &public);
            let _ = passalong_web::serve(listener, app, std::future::pending()).await;
        });
        let state = state_rx.recv().expect("the node's state");
        Node {
            addr,
            store,
            state,
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

    /// Signs the operator in like a browser; returns the session cookie.
    fn sign_in(&self) -> String {
        let a = Node::agent();
        let page = a
            .get(&self.url("/signin/operator"))
            .call()
            .expect("signin page");
        let set = page
            .header("set-cookie")
            .expect("a sign-in cookie")
            .to_string();
        let csrf = cookie_value(&set, "pl_signin");
        let r = a
            .post(&self.url("/signin/operator"))
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
        assert!(
            session.contains("Max-Age=604800"),
            "an operator's session lasts 7 days: {session}"
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

    /// A write to the API with the token.
    fn api_post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        Node::agent()
            .post(&self.url(path))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(body)
            .expect(path)
            .into_json()
            .expect("json")
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
    let page = a.get(&node.url("/signin/operator")).call().expect("page");
    let csrf = cookie_value(page.header("set-cookie").expect("cookie"), "pl_signin");
    let r = a
        .post(&node.url("/signin/operator"))
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
    for path in ["/signin/operator", "/signin"] {
        let r = a
            .post(&node.url(path))
            .send_form(&[("token", TOKEN), ("csrf", &csrf)]);
        assert!(
            matches!(r, Err(ureq::Error::Status(403, _))),
            "{path}: {r:?}"
        );
    }
    // A personal node has no members: its /signin is the token form, and the token posted
    // there (as scripts did before the member form came) still signs the operator in.
    let page = a.get(&node.url("/signin")).call().expect("page");
    let csrf = cookie_value(page.header("set-cookie").expect("cookie"), "pl_signin");
    let body = page.into_string().expect("body");
    assert!(body.contains("id=\"token\"") && !body.contains("id=\"login\""));
    let r = a
        .post(&node.url("/signin"))
        .set("Cookie", &format!("pl_signin={csrf}"))
        .send_form(&[("token", TOKEN), ("csrf", &csrf)])
        .expect("signed in");
    assert_eq!((r.status(), r.header("location")), (303, Some("/")));
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
    // Reached from outside, private reads need the token (or a member's session).
    let r = Node::agent().get(&node.url("/v1/contacts")).call();
    assert!(matches!(r, Err(ureq::Error::Status(401, _))), "{r:?}");
    assert!(node.api_get("/v1/contacts")["contacts"].is_array());
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

/// A seller's offer (not the node's) that pays a connector share; stored on the node.
fn seller_offer(node: &Node) -> ShareLink {
    let a = crate::support::lamp_offer();
    let acks = node
        .store
        .ingest(&[&a.bytes], crate::support::OFFERED_AT_MS)
        .expect("ingest");
    assert_eq!(acks[0].status, passalong_store::Status::Valid);
    ShareLink::new(vec![a]).expect("link")
}

/// The join form of `token`: (status, page, its double-submit cookie).
fn join_form(node: &Node, token: &str) -> (u16, String, Option<String>) {
    let r = match Node::agent()
        .get(&node.url(&format!("/join/{token}")))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport: {e}"),
    };
    let cookie = r
        .header("set-cookie")
        .map(|c| format!("pl_join={}", cookie_value(c, "pl_join")));
    (r.status(), r.into_string().expect("body"), cookie)
}

/// The referral at the end of the full link a pass-along page shows.
fn my_referral(
    page: &str,
) -> (
    passalong_protocol::Attestation,
    passalong_protocol::attestation::Referral,
) {
    let url = text_of(page, "my-link");
    let token = url.split("/l/").nth(1).expect("a share page URL");
    let link = ShareLink::parse(token).expect("my link parses");
    let last = link.attestations.last().expect("a chain").clone();
    match &last.body {
        Body::Referral(r) => {
            let r = r.clone();
            (last, r)
        }
        other => panic!("not a referral: {other:?}"),
    }
}

#[test]
fn a_neighbour_joins_with_an_invite_and_passes_an_offer_along_as_herself() {
    let node = Node::start();
    // A node that runs no community knows no invite (and tells a visitor nothing more).
    let (status, page, _) = join_form(&node, "inv1.00000000000000000000000000000000");
    assert_eq!(status, 404);
    assert!(page.contains("not known here") && !page.contains("community create"));
    let community = node.api_post("/v1/community", serde_json::json!({"name": "Riverside"}));
    let community = Id::from_hex(community["id"].as_str().unwrap()).unwrap();
    let invite = node.api_post("/v1/community/invites", serde_json::json!({"note": "Anna"}));
    let token = invite["token"].as_str().unwrap().to_string();
    let offer = seller_offer(&node);

    let (status, page, csrf_cookie) = join_form(&node, &token);
    assert_eq!(status, 200);
    assert!(page.contains("Join Riverside") && page.contains("No one can recover"));
    let csrf_cookie = csrf_cookie.expect("a form cookie");
    let csrf = csrf_of(&page);
    let path = format!("/join/{token}");
    let post = |form: &[(&str, &str)]| node.post_page(&path, &csrf_cookie, form);
    let (status, page) = post(&[
        ("csrf", &csrf),
        ("login", "Anna"),
        ("password", "correct horse battery"),
        ("password2", "correct horse batterY"),
    ]);
    assert_eq!(status, 400);
    assert!(page.contains("passwords differ") && page.contains("value=\"Anna\""));
    let (status, page) = post(&[
        ("csrf", &csrf),
        ("login", "Anna"),
        ("password", "short"),
        ("password2", "short"),
    ]);
    assert_eq!(status, 400);
    assert!(page.contains("10 to 256 bytes"), "{page}");
    let (status, page) = post(&[
        ("csrf", &csrf),
        ("login", "an na"),
        ("password", "correct horse battery"),
        ("password2", "correct horse battery"),
    ]);
    assert_eq!(status, 400);
    assert!(page.contains("letters a-z"), "{page}");
    // Without the form's cookie (posted from elsewhere): refused.
    let (status, _) = node.post_page(
        &path,
        "",
        &[
            ("csrf", &csrf),
            ("login", "anna"),
            ("password", "correct horse battery"),
            ("password2", "correct horse battery"),
        ],
    );
    assert_eq!(status, 403);

    let r = Node::agent()
        .post(&node.url(&path))
        .set("Cookie", &csrf_cookie)
        .send_form(&[
            ("csrf", &csrf),
            ("login", "Anna"),
            ("password", "correct horse battery"),
            ("password2", "correct horse battery"),
        ])
        .expect("join");
    assert_eq!((r.status(), r.header("location")), (303, Some("/")));
    let session = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("pl_session="))
        .expect("signed in")
        .to_string();
    assert!(session.contains("Max-Age=86400") && session.contains("HttpOnly"));
    let anna = format!("pl_session={}", cookie_value(&session, "pl_session"));

    // Her key is her own: sealed in her file, never among the node's identities.
    let members = node._dir.path().join("community").join("members");
    let files: Vec<_> = std::fs::read_dir(&members)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let her =
        passalong_protocol::PublicKey::from_hex(files[0].file_stem().unwrap().to_str().unwrap())
            .unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(file["login"], "anna");
    assert_eq!(
        file["key"]["kdf"]["m_kib"],
        19 * 1024,
        "the configured cost"
    );
    let id: serde_json::Value = Node::agent()
        .get(&node.url("/v1/id"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(
        id["identities"],
        serde_json::json!([Keypair::from_seed([1; 32]).public().to_hex()])
    );
    // So the node's token cannot sign as her.
    let r = Node::agent()
        .post(&node.url("/v1/referrals"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(serde_json::json!({"from": offer.token(), "as": her.to_hex()}));
    assert!(matches!(r, Err(ureq::Error::Status(400, _))), "{r:?}");
    // The connector admitted her: a Membership her key consented to, in the connector's market.
    let connector = Keypair::from_seed([1; 32]).public();
    let memberships = node
        .store
        .market_of_kind(&connector, passalong_protocol::Kind::Membership)
        .unwrap();
    assert_eq!(memberships.len(), 1);
    match &memberships[0].body {
        Body::Membership(m) => assert_eq!((m.member, m.community), (her, community)),
        other => panic!("{other:?}"),
    }
    assert_eq!(file["membership"], memberships[0].id.to_hex());

    // She is signed in as herself, without the connector's pages.
    let (status, home) = node.get("/", &anna);
    assert_eq!(status, 200);
    assert!(home.contains(&her.to_hex()) && !home.contains("href=\"/community\""));
    assert_eq!(node.get("/community", &anna).0, 403);

    // She passes the offer along: her key signs, and the referral names her community.
    let (_, pass) = node.get("/pass", &anna);
    assert!(text_of(&pass, "through").starts_with("Through "), "{pass}");
    assert!(pass.contains("Riverside"));
    let csrf = csrf_of(&pass);
    let (status, done) =
        node.post_page("/pass", &anna, &[("csrf", &csrf), ("link", &offer.token())]);
    assert_eq!(status, 200, "{done}");
    let (att, referral) = my_referral(&done);
    assert_eq!(referral.referrer, her);
    assert_eq!(referral.community, Some(community));
    assert_eq!(referral.offer, offer.offer());
    assert_eq!(
        node.store.attestation(&att.id).unwrap().map(|a| a.bytes),
        Some(att.bytes.clone()),
        "stored as valid: her key's signature checked"
    );

    // The operator's session still signs as the node, naming no community.
    let op = node.sign_in();
    let (_, pass) = node.get("/pass", &op);
    assert!(!pass.contains("id=\"through\""));
    let (_, done) = node.post_page(
        "/pass",
        &op,
        &[("csrf", &csrf_of(&pass)), ("link", &offer.token())],
    );
    let (_, referral) = my_referral(&done);
    assert_eq!((referral.referrer, referral.community), (connector, None));

    // The invite worked once.
    let (status, page, _) = join_form(&node, &token);
    assert_eq!(status, 410);
    assert!(page.contains("used already"), "{page}");
    let (status, _) = post(&[
        ("csrf", &csrf_cookie["pl_join=".len()..]),
        ("login", "ben"),
        ("password", "correct horse battery"),
        ("password2", "correct horse battery"),
    ]);
    assert_eq!(status, 410);
    let listed = node.api_get("/v1/community/invites");
    assert_eq!(listed["invites"][0]["state"], "used");
    assert_eq!(listed["invites"][0]["member"], her.to_hex());
    let used = listed["invites"][0]["id"].as_str().unwrap();
    let r = Node::agent()
        .post(&node.url(&format!("/v1/community/invites/{used}/revoke")))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    assert!(matches!(r, Err(ureq::Error::Status(409, _))), "{r:?}");
    assert_eq!(std::fs::read_dir(&members).unwrap().count(), 1);
    let (status, _, _) = join_form(&node, "inv1.00000000000000000000000000000000");
    assert_eq!(status, 404);
    assert_eq!(node.api_get("/v1/community")["members"], 1);
}

const PASSWORD: &str = "correct horse battery";

/// A member's sign-in as a browser posts it, from `from` as the proxy says (X-Forwarded-For).
struct SignInAnswer {
    status: u16,
    retry_after: Option<u64>,
    /// `pl_session=…`, with its attributes, when a session started.
    session: Option<String>,
    body: String,
    took: std::time::Duration,
}

impl Node {
    fn member_sign_in(&self, login: &str, password: &str, from: Option<&str>) -> SignInAnswer {
        let a = Node::agent();
        let page = a.get(&self.url("/signin")).call().expect("signin page");
        let csrf = cookie_value(page.header("set-cookie").expect("cookie"), "pl_signin");
        let mut req = a
            .post(&self.url("/signin"))
            .set("Cookie", &format!("pl_signin={csrf}"));
        if let Some(ip) = from {
            req = req.set("X-Forwarded-For", &format!("10.9.9.9, {ip}"));
        }
        let started = std::time::Instant::now();
        let r = match req.send_form(&[("login", login), ("password", password), ("csrf", &csrf)]) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport: {e}"),
        };
        let took = started.elapsed();
        SignInAnswer {
            status: r.status(),
            retry_after: r.header("retry-after").map(|v| v.parse().expect("seconds")),
            session: r
                .all("set-cookie")
                .into_iter()
                .find(|c| c.starts_with("pl_session="))
                .map(str::to_string),
            body: r.into_string().expect("body"),
            took,
        }
    }

    /// The key the session of `cookie` holds, weakly: it is gone once no session holds it.
    fn key_of(&self, cookie: &str) -> std::sync::Weak<passalong_accounts::MemberKey> {
        let id = passalong_web::session::SessionId::from_hex(&cookie["pl_session=".len()..])
            .expect("a session id");
        let session = self
            .state
            .sessions
            .lock()
            .expect("sessions")
            .touch(&id, passalong_api::now_ms())
            .expect("a live session");
        Arc::downgrade(session.key.as_ref().expect("a member's key"))
    }

    /// A community, Riverside, with `login` joined through an invite: her session cookie and key.
    fn community_with(&self, login: &str) -> (String, passalong_protocol::PublicKey) {
        self.api_post("/v1/community", serde_json::json!({"name": "Riverside"}));
        self.join_member(login)
    }

    /// `login` joins the community through a new invite: her session cookie and key.
    fn join_member(&self, login: &str) -> (String, passalong_protocol::PublicKey) {
        let invite = self.api_post("/v1/community/invites", serde_json::json!({}));
        let token = invite["token"].as_str().expect("a token").to_string();
        let (_, page, csrf_cookie) = join_form(self, &token);
        let r = Node::agent()
            .post(&self.url(&format!("/join/{token}")))
            .set("Cookie", &csrf_cookie.expect("a form cookie"))
            .send_form(&[
                ("csrf", &csrf_of(&page)),
                ("login", login),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ])
            .expect("join");
        assert_eq!(r.status(), 303);
        let set = r
            .all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with("pl_session="))
            .expect("signed in")
            .to_string();
        let cookie = format!("pl_session={}", cookie_value(&set, "pl_session"));
        let (_, _, file) = self
            .state
            .community
            .sign_in_record(login)
            .expect("her record");
        (cookie, file.public_key().expect("her key"))
    }
}

/// Sign-in slowing with one free failure, and the client's address from X-Forwarded-For.
fn slowed_after_one(s: &mut AppState) {
    s.signin = Arc::new(passalong_api::signin::SignInGate::new(
        2,
        passalong_api::signin::DEFAULT_MAX_WAITING,
        passalong_accounts::throttle::Limits {
            account_free: 1,
            ..Default::default()
        },
        Some(passalong_api::signin::HeaderName::from_static(
            "x-forwarded-for",
        )),
    ));
}

#[test]
fn a_member_signs_in_with_her_password_and_a_wrong_one_slows_the_next_tries() {
    use passalong_accounts::{vault, KdfParams};
    let node_cost = KdfParams {
        t: 2,
        ..KdfParams::MINIMUM
    };
    let node = Node::start_with(None, move |s| {
        s.member_kdf = node_cost;
        slowed_after_one(s);
    });
    let offer = seller_offer(&node);
    let (joined, her) = node.community_with("anna");

    // Signing out ends her session, and her key leaves memory with it.
    let key = node.key_of(&joined);
    let (_, home) = node.get("/", &joined);
    assert_eq!(
        node.post_form("/signout", &joined, &[("csrf", &csrf_of(&home))]),
        303
    );
    assert!(key.upgrade().is_none(), "signed out: her key is gone");
    assert_eq!(node.get("/", &joined).0, 303);

    // Her file as an older node sealed it, at less than the node's cost now.
    let (_, _, file) = node.state.community.sign_in_record("anna").unwrap();
    assert_eq!(file.kdf.t, 2);
    let opened = vault::open(&file, PASSWORD.as_bytes()).unwrap();
    let older = vault::seal(
        &opened.keypair,
        &[],
        PASSWORD.as_bytes(),
        KdfParams::MINIMUM,
        &mut rand_core::OsRng,
    )
    .unwrap();
    node.state.community.reseal(&her, older).unwrap();

    // The sign-in page is the members', the operator's linked below it.
    let (status, page) = node.get("/signin", "");
    assert_eq!(status, 200);
    assert!(page.contains("Sign in to Riverside") && page.contains("id=\"login\""));
    assert!(page.contains("href=\"/signin/operator\""), "{page}");
    let (_, operator) = node.get("/signin/operator", "");
    assert!(operator.contains("id=\"token\"") && !operator.contains("id=\"login\""));

    // A wrong password: 401, answered no sooner than 400 ms.
    let checks = node.state.signin.password_checks();
    let wrong = node.member_sign_in("anna", "not her password", Some("203.0.113.1"));
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong.body.contains("Wrong login or password."),
        "{}",
        wrong.body
    );
    assert!(
        wrong.took >= std::time::Duration::from_millis(400),
        "{:?}",
        wrong.took
    );
    assert!(wrong.session.is_none());
    assert_eq!(node.state.signin.password_checks(), checks + 1);

    // From there, the right password waits too: 429 with Retry-After, and no argon2 run.
    let early = node.member_sign_in("Anna", PASSWORD, Some("203.0.113.1"));
    assert_eq!(early.status, 429, "{}", early.body);
    let wait_s = early.retry_after.expect("Retry-After");
    assert!((1..=2).contains(&wait_s), "{wait_s}");
    assert!(early.body.contains("try again in"), "{}", early.body);
    assert!(early.session.is_none(), "no session during the wait");
    assert_eq!(
        node.state.signin.password_checks(),
        checks + 1,
        "no argon2 run"
    );

    // Later, the right password signs her in, for at most a member's 24 hours.
    std::thread::sleep(std::time::Duration::from_secs(wait_s));
    let later = node.member_sign_in("Anna", PASSWORD, Some("203.0.113.1"));
    assert_eq!(later.status, 303, "{}", later.body);
    let set = later.session.expect("a session cookie");
    assert!(
        set.contains("Max-Age=86400")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
    let anna = format!("pl_session={}", cookie_value(&set, "pl_session"));

    // Her file was sealed anew at the node's cost, with the same key.
    let (_, _, file) = node.state.community.sign_in_record("anna").unwrap();
    assert_eq!((file.kdf.m_kib, file.kdf.t), (node_cost.m_kib, node_cost.t));
    assert_eq!(file.public_key().unwrap(), her);
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            node._dir
                .path()
                .join("community/members")
                .join(format!("{}.json", her.to_hex())),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["key"]["kdf"]["t"], 2);

    // Signed in, she passes the offer along as herself.
    let (_, pass) = node.get("/pass", &anna);
    let (status, done) = node.post_page(
        "/pass",
        &anna,
        &[("csrf", &csrf_of(&pass)), ("link", &offer.token())],
    );
    assert_eq!(status, 200, "{done}");
    let (_, referral) = my_referral(&done);
    assert_eq!(referral.referrer, her);
    assert!(referral.community.is_some());

    // Failures from one address do not lock her out elsewhere.
    let wrong = node.member_sign_in("anna", "not her password", Some("203.0.113.1"));
    assert_eq!(wrong.status, 401);
    assert_eq!(
        node.member_sign_in("anna", PASSWORD, Some("203.0.113.1"))
            .status,
        429
    );
    assert_eq!(
        node.member_sign_in("anna", PASSWORD, Some("198.51.100.2"))
            .status,
        303,
        "from another address"
    );

    // Once her session expires, the sweep drops her key without any request of hers.
    let key = node.key_of(&anna);
    let ended = node
        .state
        .sessions
        .lock()
        .unwrap()
        .sweep(passalong_api::now_ms() + 25 * 3_600_000);
    assert!(ended.iter().any(|(_, who)| *who == her));
    assert!(key.upgrade().is_none(), "swept: her key is gone");
    assert_eq!(node.get("/", &anna).0, 303);
}

#[test]
fn a_login_no_member_has_takes_the_same_path_as_a_wrong_password() {
    let node = Node::start_with(None, slowed_after_one);
    node.community_with("anna");
    for (login, from) in [
        ("anna", "203.0.113.1"),
        ("nobody", "203.0.113.2"),
        ("no body!", "203.0.113.3"),
    ] {
        let checks = node.state.signin.password_checks();
        let first = node.member_sign_in(login, "not the password", Some(from));
        assert_eq!(first.status, 401, "{login}: {}", first.body);
        assert!(first.body.contains("Wrong login or password."), "{login}");
        assert!(
            first.took >= std::time::Duration::from_millis(400),
            "{login}"
        );
        assert_eq!(
            node.state.signin.password_checks(),
            checks + 1,
            "{login}: a password check ran (argon2, against a decoy for no member)"
        );
        let second = node.member_sign_in(login, "not the password", Some(from));
        assert_eq!(second.status, 429, "{login}: counted like a member's");
        assert!(second.retry_after.is_some(), "{login}");
        assert_eq!(node.state.signin.password_checks(), checks + 1, "{login}");
    }
}

// ---------------------------------------------------------------------------------------------
// The connector's members and earnings, removal, the read-only mode, leaving (issue 16, step 10).

impl Node {
    /// Imports `att` through the API (the operator's token); it must come out valid.
    fn import(&self, att: &Attestation) {
        let v = self.api_post(
            "/v1/attestations",
            serde_json::json!({"envelopes": [hex::encode(&att.bytes)]}),
        );
        assert_eq!(v["acks"][0]["status"], "valid", "{v}");
    }

    /// The seller confirms order `order` of `offer`, sold through `via` now.
    fn sale(&self, offer: &ShareLink, order: &str, via: Id) {
        let k = seller();
        let receipt = Attestation::sign(
            Body::Receipt(passalong_protocol::attestation::Receipt {
                seller: k.public(),
                offer: offer.offer(),
                order: order.into(),
                amount_minor: 4000,
                buyer: Keypair::from_seed([9; 32]).public(),
                via: Some(via),
                created_at_ms: passalong_api::now_ms(),
            }),
            &k,
        );
        self.import(&receipt);
    }

    /// What `who` earned in the seller's ledger (EUR), from the store's ledger in-process.
    fn earned(&self, who: &passalong_protocol::PublicKey) -> u128 {
        let ledger = self.store.ledger(&seller().public()).expect("ledger");
        let fresh = self
            .store
            .recompute_ledger(&seller().public(), passalong_api::now_ms())
            .expect("recompute");
        assert_eq!(ledger, fresh, "the kept ledger is the recomputed one");
        ledger
            .entries
            .iter()
            .filter(|e| e.participant == *who)
            .map(|e| e.earned)
            .sum()
    }

    /// `login`'s key pair, opened from her file with her password (as her own node would).
    fn keypair_of(&self, login: &str) -> Keypair {
        let (_, _, file) = self
            .state
            .community
            .sign_in_record(login)
            .expect("her file");
        passalong_accounts::vault::open(&file, PASSWORD.as_bytes())
            .expect("her password opens it")
            .keypair
    }

    /// Referrals and other attestations `who` signed in the seller's market and the
    /// connector's.
    fn signed_by(&self, who: &passalong_protocol::PublicKey) -> usize {
        let connector = Keypair::from_seed([1; 32]).public();
        [seller().public(), connector]
            .iter()
            .flat_map(|m| self.store.market(m).expect("market"))
            .filter(|(_, id, _)| {
                self.store
                    .attestation(id)
                    .expect("read")
                    .is_some_and(|a| a.body.author() == *who)
            })
            .count()
            + [
                passalong_protocol::Kind::Referral,
                passalong_protocol::Kind::Offer,
            ]
            .iter()
            .map(|k| {
                self.store
                    .market_of_kind(&seller().public(), *k)
                    .expect("market")
                    .iter()
                    .filter(|a| a.body.author() == *who)
                    .count()
            })
            .sum::<usize>()
    }
}

/// The row of the members table for `key`.
fn member_row(page: &str, key: &passalong_protocol::PublicKey) -> String {
    let at = page
        .find(&format!("data-key=\"{}\"", key.to_hex()))
        .unwrap_or_else(|| panic!("no row for {key} in {page}"));
    let end = at + page[at..].find("</tr>").expect("row end");
    page[at..end].to_string()
}

#[test]
fn the_connector_lists_members_and_earnings_and_a_removed_members_new_referrals_pay_it_nothing() {
    let node = Node::start();
    let offer = seller_offer(&node);
    let (anna_cookie, anna) = node.community_with("anna");
    let (_, ben) = node.join_member("ben");
    let connector = Keypair::from_seed([1; 32]).public();

    // Anna passes the offer along through the community, and a friend buys through her link.
    let (_, pass) = node.get("/pass", &anna_cookie);
    let (status, done) = node.post_page(
        "/pass",
        &anna_cookie,
        &[("csrf", &csrf_of(&pass)), ("link", &offer.token())],
    );
    assert_eq!(status, 200, "{done}");
    let (before, referral) = my_referral(&done);
    let community = referral.community.expect("naming her community");
    node.sale(&offer, "order-1", before.id);
    // 3% of 40.00 EUR to the connector, the 10% pool to Anna (direct).
    assert_eq!((node.earned(&connector), node.earned(&anna)), (120, 400));

    // The connector's page: the members, with what the store and their files say.
    let op = node.sign_in();
    let (status, page) = node.get("/community", &op);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("2 members, 2 admitted now"), "{page}");
    let row = member_row(&page, &anna);
    for shown in [
        "anna",
        "hosted here",
        "admitted",
        "data-status=\"admitted\"",
        "4.00",
        "Remove…",
    ] {
        assert!(row.contains(shown), "{shown} in {row}");
    }
    assert!(
        row.contains("<td class=\"num\">1</td>"),
        "one referral: {row}"
    );
    let ben_row = member_row(&page, &ben);
    assert!(
        ben_row.contains("ben") && ben_row.contains("<td class=\"num\">0</td>"),
        "{ben_row}"
    );
    // Its earnings per market, and the activity.
    let earnings = &page[page.find("id=\"earnings\"").expect("earnings")..];
    assert!(earnings.contains(&format!("data-seller=\"{}\"", seller().public().to_hex())));
    assert!(earnings.contains("1.20"), "{earnings}");
    let activity = &page[page.find("id=\"activity\"").expect("activity")..];
    assert!(
        activity.contains("data-kind=\"sale\"") && activity.contains("A lamp"),
        "{activity}"
    );
    assert_eq!(activity.matches("data-kind=\"joined\"").count(), 2);
    // The API says the same.
    let list = node.api_get("/v1/community/members");
    assert_eq!(
        (list["total"].clone(), list["admitted"].clone()),
        (2.into(), 2.into())
    );
    let api_anna = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == anna.to_hex())
        .expect("anna listed")
        .clone();
    assert_eq!(api_anna["login"], "anna");
    assert_eq!(api_anna["hosted"], true);
    assert_eq!(api_anna["referrals"], 1);
    assert_eq!(
        api_anna["earnings"],
        serde_json::json!([{"currency": "EUR", "earned_minor": 400, "owed_minor": 400}])
    );
    assert!(api_anna["last_signin_ms"].as_u64().is_some());
    let e = node.api_get("/v1/community/earnings");
    assert_eq!(e["connector"], connector.to_hex());
    assert_eq!(e["markets"][0]["seller"], seller().public().to_hex());
    assert_eq!(e["markets"][0]["earned"], 120);
    assert_eq!(e["totals"][0]["earned_minor"], 120);

    // Removal asks first, then ends her membership from now and signs her out at once.
    let key = node.key_of(&anna_cookie);
    let csrf = csrf_of(&page);
    let anna_hex = anna.to_hex();
    let (status, confirm) = node.post_page(
        "/community/members/remove",
        &op,
        &[("csrf", &csrf), ("key", &anna_hex)],
    );
    assert_eq!(status, 200, "{confirm}");
    assert!(confirm.contains("id=\"confirm-remove\"") && confirm.contains("cannot be undone"));
    assert!(key.upgrade().is_some(), "not yet: only asked");
    let (status, removed) = node.post_page(
        "/community/members/remove",
        &op,
        &[("csrf", &csrf), ("key", &anna_hex), ("confirm", "yes")],
    );
    assert_eq!(status, 200, "{removed}");
    assert!(
        removed.contains("id=\"removed\"")
            && removed.contains("<strong>anna</strong> was removed from the community"),
        "{removed}"
    );
    assert!(key.upgrade().is_none(), "her key left memory");
    assert_eq!(node.get("/", &anna_cookie).0, 303, "her session ended");
    let row = member_row(&removed, &anna);
    assert!(
        row.contains("data-status=\"removed\"") && !row.contains("Remove…"),
        "{row}"
    );
    assert!(removed.contains("2 members, 1 admitted now"));
    // The End is the node's key's, from now, in the connector's market.
    let ends = node
        .store
        .market_of_kind(&connector, passalong_protocol::Kind::MembershipEnd)
        .unwrap();
    assert_eq!(ends.len(), 1);
    match &ends[0].body {
        Body::MembershipEnd(e) => {
            assert_eq!(e.author, connector);
            assert!(e.ends_at_ms <= passalong_api::now_ms());
        }
        other => panic!("{other:?}"),
    }
    // Removing her again is refused; so is a key that is no member's.
    let again = Node::agent()
        .post(&node.url(&format!("/v1/community/members/{anna_hex}/remove")))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    assert!(
        matches!(again, Err(ureq::Error::Status(409, _))),
        "{again:?}"
    );
    let nobody = Node::agent()
        .post(&node.url(&format!("/v1/community/members/{}/remove", "7".repeat(64))))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    assert!(
        matches!(nobody, Err(ureq::Error::Status(404, _))),
        "{nobody:?}"
    );

    // A referral Anna's key signs now, naming the community (as from a node of her own), pays
    // the connector nothing; her hop share is still hers.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let hers = node.keypair_of("anna");
    let after = Attestation::sign(
        Body::Referral(passalong_protocol::attestation::Referral {
            referrer: anna,
            offer: offer.offer(),
            parent: None,
            recipient: None,
            community: Some(community),
            created_at_ms: passalong_api::now_ms(),
        }),
        &hers,
    );
    node.import(&after);
    node.sale(&offer, "order-2", after.id);
    assert_eq!(
        (node.earned(&connector), node.earned(&anna)),
        (120, 800),
        "no connector share for the referral made after her removal"
    );
    // A sale through the referral she made before it still pays the connector.
    node.sale(&offer, "order-3", before.id);
    assert_eq!((node.earned(&connector), node.earned(&anna)), (240, 1200));
    let (_, page) = node.get("/community", &op);
    assert!(page[page.find("id=\"earnings\"").unwrap()..].contains("2.40"));
}

#[test]
fn a_removed_member_signs_in_read_only_and_everything_she_would_sign_is_refused() {
    let node = Node::start();
    let offer = seller_offer(&node);
    let (_, anna) = node.community_with("anna");
    let removed = node.api_post(
        &format!("/v1/community/members/{}/remove", anna.to_hex()),
        serde_json::json!(null),
    );
    assert_eq!(removed["status"], "removed");
    assert_eq!(removed["ends"].as_array().unwrap().len(), 1);
    assert_eq!(removed["sessions_ended"], 1, "her session from the join");
    let signed = node.signed_by(&anna);

    // Her password still signs her in: her pages, read-only, with no key in the session.
    let before = passalong_api::now_ms();
    let answer = node.member_sign_in("anna", PASSWORD, None);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie = format!(
        "pl_session={}",
        cookie_value(&answer.session.expect("a session"), "pl_session")
    );
    let id = passalong_web::session::SessionId::from_hex(&cookie["pl_session=".len()..]).unwrap();
    let session = node
        .state
        .sessions
        .lock()
        .unwrap()
        .touch(&id, passalong_api::now_ms())
        .expect("live");
    assert!(
        session.read_only() && session.key.is_none(),
        "no key in memory"
    );
    for page in ["/", "/ledger", "/pass", "/offers", "/contacts", "/account"] {
        let (status, text) = node.get(page, &cookie);
        assert_eq!(status, 200, "{page}: {text}");
        assert!(text.contains(&anna.to_hex()), "{page}: as herself");
        assert!(
            text.contains("id=\"read-only\""),
            "{page}: says it is read-only"
        );
    }
    let (_, account) = node.get("/account", &cookie);
    assert!(account.contains("data-status=\"removed\"") && !account.contains("id=\"leave\""));
    let csrf = csrf_of(&account);
    // Every form that signs is refused, saying why.
    for (path, form) in [
        ("/pass", vec![("link", offer.token())]),
        (
            "/offers",
            vec![
                ("title", "Mine".to_string()),
                ("price", "10".into()),
                ("currency", "EUR".into()),
                ("pool_percent", "10".into()),
                ("rule", "direct".into()),
            ],
        ),
        (
            "/settlements",
            vec![
                ("participant", format!("{}:EUR", "3".repeat(64))),
                ("amount", "1".into()),
                ("reference", "r-1".into()),
            ],
        ),
        ("/account/leave", vec![("confirm", "yes".into())]),
    ] {
        let mut f: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        f.extend(form.iter().map(|(k, v)| (*k, v.as_str())));
        let (status, text) = node.post_page(path, &cookie, &f);
        assert_eq!(status, 403, "{path}: {text}");
        assert!(text.contains("read-only"), "{path}: {text}");
    }
    // Through the API too.
    let signin: serde_json::Value = Node::agent()
        .post(&node.url("/v1/signin"))
        .send_json(serde_json::json!({"login": "anna", "password": PASSWORD}))
        .expect("signs in")
        .into_json()
        .unwrap();
    let bearer = format!("Bearer {}", signin["session"].as_str().unwrap());
    let refused = Node::agent()
        .post(&node.url("/v1/referrals"))
        .set("Authorization", &bearer)
        .send_json(serde_json::json!({"from": offer.token()}));
    match refused {
        Err(ureq::Error::Status(403, r)) => {
            assert!(r.into_string().unwrap().contains("read-only"))
        }
        other => panic!("{other:?}"),
    }
    let mine = Node::agent()
        .get(&node.url("/v1/earnings"))
        .set("Authorization", &bearer)
        .call()
        .expect("she reads her earnings");
    assert_eq!(mine.status(), 200);
    assert_eq!(node.signed_by(&anna), signed, "nothing signed as her");
    // Her sign-ins show on the connector's list.
    let list = node.api_get("/v1/community/members");
    let m = &list["members"][0];
    assert_eq!(
        (m["status"].as_str(), m["login"].as_str()),
        (Some("removed"), Some("anna"))
    );
    assert!(m["last_signin_ms"].as_u64().unwrap() >= before);
    assert!(m["ended_ms"].as_u64().unwrap() <= before);
}

#[test]
fn only_the_operator_reaches_members_and_removal_and_a_member_leaves_of_her_own_accord() {
    let node = Node::start();
    let (_, anna) = node.community_with("anna");
    let (ben_cookie, ben) = node.join_member("ben");
    let connector = Keypair::from_seed([1; 32]).public();

    // A member reaches neither the connector's page nor its removal, nor the API's.
    assert_eq!(node.get("/community", &ben_cookie).0, 403);
    let (_, home) = node.get("/", &ben_cookie);
    assert!(!home.contains("href=\"/community\"") && home.contains("href=\"/account\""));
    let csrf = csrf_of(&home);
    let anna_hex = anna.to_hex();
    let (status, _) = node.post_page(
        "/community/members/remove",
        &ben_cookie,
        &[("csrf", &csrf), ("key", &anna_hex), ("confirm", "yes")],
    );
    assert_eq!(status, 403);
    let signin: serde_json::Value = Node::agent()
        .post(&node.url("/v1/signin"))
        .send_json(serde_json::json!({"login": "ben", "password": PASSWORD}))
        .expect("signs in")
        .into_json()
        .unwrap();
    let bearer = format!("Bearer {}", signin["session"].as_str().unwrap());
    for (method, path) in [
        ("GET", "/v1/community/members".to_string()),
        ("GET", "/v1/community/earnings".into()),
        ("GET", "/v1/community/activity".into()),
        ("POST", format!("/v1/community/members/{anna_hex}/remove")),
    ] {
        for auth in [Some(bearer.as_str()), None] {
            let mut req = Node::agent().request(method, &node.url(&path));
            if let Some(a) = auth {
                req = req.set("Authorization", a);
            }
            let want = if auth.is_some() { 403 } else { 401 };
            match req.call() {
                Err(ureq::Error::Status(s, _)) => assert_eq!(s, want, "{method} {path}"),
                other => panic!("{method} {path}: {other:?}"),
            }
        }
    }
    assert!(node
        .store
        .market_of_kind(&connector, passalong_protocol::Kind::MembershipEnd)
        .unwrap()
        .is_empty());
    // The operator has no account page: it has no membership.
    let op = node.sign_in();
    assert_eq!(node.get("/account", &op).0, 403);
    let (_, op_home) = node.get("/", &op);
    assert!(!op_home.contains("href=\"/account\""));

    // Ben leaves, after a confirmation: his own key signs the End.
    let (_, account) = node.get("/account", &ben_cookie);
    assert!(account.contains("id=\"leave\"") && account.contains("data-status=\"active\""));
    let csrf = csrf_of(&account);
    let (status, confirm) = node.post_page("/account/leave", &ben_cookie, &[("csrf", &csrf)]);
    assert_eq!(status, 200);
    assert!(confirm.contains("id=\"confirm-leave\""), "{confirm}");
    let r = Node::agent()
        .post(&node.url("/account/leave"))
        .set("Cookie", &ben_cookie)
        .send_form(&[("csrf", &csrf), ("confirm", "yes")])
        .expect("leaves");
    assert_eq!((r.status(), r.header("location")), (303, Some("/account")));
    let set = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("pl_session="))
        .expect("a read-only session")
        .to_string();
    let read_only = format!("pl_session={}", cookie_value(&set, "pl_session"));
    assert_eq!(node.get("/", &ben_cookie).0, 303, "his old session ended");
    let (_, account) = node.get("/account", &read_only);
    assert!(account.contains("data-status=\"left\"") && account.contains("id=\"read-only\""));
    let ends = node
        .store
        .market_of_kind(&connector, passalong_protocol::Kind::MembershipEnd)
        .unwrap();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].body.author(), ben, "signed by his own key");
    let list = node.api_get("/v1/community/members");
    let statuses: Vec<(String, String)> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["login"].as_str().unwrap().into(),
                m["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("ben".into(), "left".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("anna".into(), "admitted".into())),
        "{statuses:?}"
    );
    let activity = node.api_get("/v1/community/activity");
    assert_eq!(activity["items"][0]["kind"], "left");
    assert_eq!(activity["items"][0]["login"], "ben");
    // The connector cannot remove who left.
    let again = Node::agent()
        .post(&node.url(&format!("/v1/community/members/{}/remove", ben.to_hex())))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    assert!(
        matches!(again, Err(ureq::Error::Status(409, _))),
        "{again:?}"
    );
}
