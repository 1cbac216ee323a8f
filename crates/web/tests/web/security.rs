//! One member cannot read or act as another, through the API: every route of
//! `passalong_api::ROUTES` is tried by member B on member A's things (`as` A, A's contacts,
//! A's session), with B's bearer session and with B's dashboard cookie (which the API never
//! accepts), and by the operator's token naming A (a hosted member's key is not the node's).
//! The operator's routes (the community's members, removing one) refuse B whatever she names.
//! The answer is a refusal or B's own data, never A's, and nothing is signed as A.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::Method;
use passalong_api::{Access, AppState, Identities, Writer, ROUTES};
use passalong_protocol::attestation::Body;
use passalong_protocol::link::ShareLink;
use passalong_protocol::{Keypair, PublicKey};
use passalong_store::Store;
use passalong_web::PublicUrl;
use serde_json::{json, Value};

const TOKEN: &str = "security-test-token-0123456789ab";
const PASSWORD: &str = "correct horse battery";

struct Node {
    addr: SocketAddr,
    store: Arc<Store>,
    state: AppState,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// An answer: status and body.
type Answer = (u16, String);

fn answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    match r {
        Ok(r) => (r.status(), r.into_string().expect("body")),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().expect("body")),
        Err(e) => panic!("transport: {e}"),
    }
}

impl Node {
    fn start() -> Node {
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
        let (s, path) = (store.clone(), dir.path().to_path_buf());
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let mut state = AppState::new(
                s.clone(),
                Writer::spawn(s),
                Identities::single(Keypair::from_seed([1; 32])),
                TOKEN.into(),
                format!("http://{addr}"),
                path,
            )
            .expect("state");
            state.member_kdf = passalong_accounts::KdfParams::MINIMUM;
            state.export_kdf = passalong_accounts::KdfParams::MINIMUM;
            tx.send(state.clone()).expect("the test waits");
            let app = passalong_web::app(state, &PublicUrl::default());
            let _ = passalong_web::serve(listener, app, std::future::pending()).await;
        });
        let state = rx.recv().expect("state");
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

    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new().redirects(0).build()
    }

    /// A request with `auth` (an `Authorization` or a `Cookie` header line, or none).
    fn call(&self, method: &Method, path: &str, auth: &Auth, body: &Value) -> Answer {
        let mut req = Node::agent().request(method.as_str(), &self.url(path));
        match auth {
            Auth::None => {}
            Auth::Bearer(b) => req = req.set("Authorization", &format!("Bearer {b}")),
            Auth::Cookie(c) => req = req.set("Cookie", c),
        }
        if *method == Method::GET {
            answer(req.call())
        } else {
            answer(req.send_json(body.clone()))
        }
    }

    fn operator_post(&self, path: &str, body: Value) -> Value {
        let (status, text) = self.call(&Method::POST, path, &Auth::Bearer(TOKEN.into()), &body);
        assert!(status < 300, "{path}: {status} {text}");
        serde_json::from_str(&text).expect("json")
    }

    /// Joins `login` through a new invite (the join page, as a browser): her cookie and key.
    fn join(&self, login: &str) -> (String, PublicKey) {
        let invite = self.operator_post("/v1/community/invites", json!({}));
        let token = invite["token"].as_str().expect("token");
        let page = Node::agent()
            .get(&self.url(&format!("/join/{token}")))
            .call()
            .expect("join page");
        let set = page.header("set-cookie").expect("form cookie").to_string();
        let form_cookie = set.split(';').next().expect("cookie").to_string();
        let body = page.into_string().expect("page");
        let at = body.find("name=\"csrf\" value=\"").expect("csrf") + 19;
        let csrf = &body[at..at + 64];
        let r = Node::agent()
            .post(&self.url(&format!("/join/{token}")))
            .set("Cookie", &form_cookie)
            .send_form(&[
                ("csrf", csrf),
                ("login", login),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ])
            .expect("join");
        let cookie = r
            .all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with("pl_session="))
            .and_then(|c| c.split(';').next())
            .expect("signed in")
            .to_string();
        let (key, _, _) = self.state.community.sign_in_record(login).expect("joined");
        (cookie, key)
    }

    /// `POST /v1/signin`: the bearer.
    fn sign_in(&self, login: &str) -> String {
        let (status, text) = self.call(
            &Method::POST,
            "/v1/signin",
            &Auth::None,
            &json!({"login": login, "password": PASSWORD}),
        );
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        v["session"].as_str().expect("session").to_string()
    }

    /// What `who` signed, in her own market and the seller's.
    fn attestations_by(&self, who: &PublicKey) -> usize {
        let seller = Keypair::from_seed([5; 32]).public();
        let kinds = [
            passalong_protocol::Kind::Offer,
            passalong_protocol::Kind::Referral,
            passalong_protocol::Kind::Receipt,
            passalong_protocol::Kind::Refund,
            passalong_protocol::Kind::Settlement,
        ];
        [*who, seller]
            .iter()
            .flat_map(|m| kinds.map(|k| (*m, k)))
            .map(|(m, k)| {
                self.store
                    .market_of_kind(&m, k)
                    .expect("market")
                    .iter()
                    .filter(|a| a.body.author() == *who)
                    .count()
            })
            .sum()
    }
}

enum Auth {
    None,
    Bearer(String),
    Cookie(String),
}

/// A seller's offer, stored on the node.
fn offer(node: &Node) -> ShareLink {
    let a = crate::support::lamp_offer();
    node.store
        .ingest(&[&a.bytes], crate::support::OFFERED_AT_MS)
        .expect("ingest");
    ShareLink::new(vec![a]).expect("link")
}

/// A well-formed request to `path` acting as `who` (so that only the check of who may act
/// as whom can refuse it), with `{id}` filled in.
fn request(path: &str, who: &PublicKey, link: &ShareLink, receipt: &str) -> (String, Value) {
    let as_ = who.to_hex();
    let seller = Keypair::from_seed([5; 32]).public().to_hex();
    let body = match path {
        "/v1/offers" => json!({"title": "Mine", "price_minor": 100, "currency": "EUR",
            "pool_bps": 1000, "rule": "direct", "as": as_}),
        "/v1/referrals" => json!({"from": link.token(), "as": as_}),
        "/v1/receipts" => json!({"offer": link.offer().to_hex(), "order": "X-1",
            "amount_minor": 4000, "buyer": "3".repeat(64), "as": as_}),
        "/v1/refunds" => json!({"receipt": receipt, "as": as_}),
        "/v1/settlements" => json!({"participant": "3".repeat(64), "amount_minor": 1,
            "currency": "EUR", "reference": "r-1", "as": as_}),
        "/v1/contacts" => json!({"key": "4".repeat(64), "name": "Mallory", "as": as_}),
        "/v1/contacts/remove" => json!({"key": "2".repeat(64), "as": as_}),
        // Both members' password is PASSWORD: only who the session is decides whose key.
        "/v1/account/export-key" => json!({"password": PASSWORD}),
        _ => json!({}),
    };
    let path = path
        .replace("{id}", &receipt[..8])
        .replace("{key}", &as_)
        .replace(
            "/v1/ledger",
            &format!("/v1/ledger?seller={seller}&format=csv"),
        )
        .replace(
            "/v1/payouts",
            &format!("/v1/payouts?seller={seller}&format=csv"),
        );
    let sep = if path.contains('?') { '&' } else { '?' };
    (format!("{path}{sep}as={as_}"), body)
}

#[test]
fn no_member_reads_or_acts_as_another_on_any_route() {
    let node = Node::start();
    node.operator_post("/v1/community", json!({"name": "Riverside"}));
    let link = offer(&node);
    let (a_cookie, a) = node.join("anna");
    let (b_cookie, b) = node.join("ben");
    let (a_bearer, mut b_bearer) = (node.sign_in("anna"), node.sign_in("ben"));
    // A's things: a contact only she named, and a referral.
    let (status, _) = node.call(
        &Method::POST,
        "/v1/contacts",
        &Auth::Bearer(a_bearer.clone()),
        &json!({"key": "2".repeat(64), "name": "Annas secret friend"}),
    );
    assert_eq!(status, 200);
    let (status, text) = node.call(
        &Method::POST,
        "/v1/referrals",
        &Auth::Bearer(a_bearer.clone()),
        &json!({"from": link.token()}),
    );
    assert_eq!(status, 201, "{text}");
    let receipt = "ab".repeat(32);
    let a_signed = node.attestations_by(&a);
    assert_eq!(a_signed, 1);

    let refused = |status: u16| matches!(status, 400 | 401 | 403);
    for (method, path, access) in ROUTES {
        let (path_as_a, body) = request(path, &a, &link, &receipt);
        let what = format!("{method} {path} ({access:?})");
        let by_b = node.call(method, &path_as_a, &Auth::Bearer(b_bearer.clone()), &body);
        let by_cookie = node.call(method, &path_as_a, &Auth::Cookie(b_cookie.clone()), &body);
        for (who, (status, text)) in [("B's bearer", &by_b), ("B's cookie", &by_cookie)] {
            assert!(
                !text.contains("Annas secret friend"),
                "{what} by {who}: A's contacts: {text}"
            );
            match access {
                // (An invite's routes answer for the invite in the path, whoever asks.)
                Access::Public | Access::Invite => {}
                Access::SignIn => assert!(refused(*status), "{what} by {who}: {status} {text}"),
                Access::Session if who == "B's bearer" => {
                    assert_eq!(*status, 200, "{what}: B ends her own session: {text}")
                }
                Access::Own if who == "B's bearer" => {
                    assert_eq!(*status, 200, "{what}: B's own: {text}");
                    let file: Value = serde_json::from_str(text).expect("a key file");
                    assert_eq!(
                        file["public_key"],
                        b.to_hex().as_str(),
                        "{what}: B's key only"
                    );
                }
                _ => assert!(refused(*status), "{what} by {who}: {status} {text}"),
            }
        }
        if *access == Access::Own {
            // The token has no account: a hosted member's key is never the operator's.
            let by_token = node.call(method, &path_as_a, &Auth::Bearer(TOKEN.into()), &body);
            assert_eq!(by_token.0, 400, "{what} by the token: {}", by_token.1);
            assert!(!by_token.1.contains(&a.to_hex()));
        }
        if matches!(access, Access::Acts | Access::Private) {
            // (The token is tried on these only: on the operator's own routes it may do
            // anything, removing A included.)
            let by_token = node.call(method, &path_as_a, &Auth::Bearer(TOKEN.into()), &body);
            assert_eq!(by_b.0, 403, "{what} by B as A: {}", by_b.1);
            assert_eq!(by_cookie.0, 401, "{what}: the API takes no cookie");
            // The operator's token cannot name a hosted member: her key is not the node's.
            assert!(
                matches!(by_token.0, 400 | 403),
                "{what} by the token as A: {} {}",
                by_token.0,
                by_token.1
            );
        }
        if *access == Access::Session {
            // B signed herself out: her bearer is dead; she signs in again for the next routes.
            let (status, _) = node.call(
                &Method::GET,
                "/v1/contacts",
                &Auth::Bearer(b_bearer.clone()),
                &json!({}),
            );
            assert_eq!(status, 401, "B's old session ended");
            b_bearer = node.sign_in("ben");
            return_bearer(&node, &b_bearer, &b);
        }
    }
    assert_eq!(node.attestations_by(&a), a_signed, "nothing signed as A");
    // Nor was A removed (the operator's removal route, tried with B's credentials on A).
    assert!(
        node.store
            .market_of_kind(
                &Keypair::from_seed([1; 32]).public(),
                passalong_protocol::Kind::MembershipEnd
            )
            .expect("market")
            .is_empty(),
        "no membership ended"
    );
    assert_eq!(
        node.state.community.hosted_status(&a),
        Some(passalong_accounts::members::Status::Active)
    );
    // The dashboard's pages act as the cookie's session only: B sees her own.
    let seller = Keypair::from_seed([5; 32]).public().to_hex();
    for page in [
        "/".to_string(),
        "/offers".into(),
        "/pass".into(),
        "/ledger".into(),
        format!("/ledger/{seller}"),
        format!("/ledger/{seller}/ledger.csv"),
        format!("/ledger/{seller}/payouts.csv"),
        "/disputes".into(),
        "/network".into(),
        "/contacts".into(),
        "/community".into(),
        "/account".into(),
    ] {
        let (status, text) = node.call(
            &Method::GET,
            &page,
            &Auth::Cookie(b_cookie.clone()),
            &json!({}),
        );
        assert!(matches!(status, 200 | 403), "{page}: {status}");
        assert!(
            !text.contains("Annas secret friend"),
            "{page}: A's contacts"
        );
        if status == 200 && !page.ends_with(".csv") {
            assert!(text.contains(&b.to_hex()), "{page}: signed in as B");
        }
    }
    // A's session outlived all of it, and B's own contacts are hers only.
    let (status, text) = node.call(
        &Method::GET,
        "/v1/contacts",
        &Auth::Bearer(a_bearer),
        &json!({}),
    );
    assert_eq!(status, 200);
    assert!(text.contains("Annas secret friend"));
    let (status, _) = node.call(&Method::GET, "/", &Auth::Cookie(a_cookie), &json!({}));
    assert_eq!(status, 200, "A's dashboard session too");
}

/// B's new bearer acts as B (after the sign-out route ended her old one).
fn return_bearer(node: &Node, bearer: &str, b: &PublicKey) {
    let (status, text) = node.call(
        &Method::GET,
        "/v1/contacts",
        &Auth::Bearer(bearer.into()),
        &json!({}),
    );
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("Annas secret friend"));
    let (status, _) = node.call(
        &Method::GET,
        &format!("/v1/earnings?as={}", b.to_hex()),
        &Auth::Bearer(bearer.into()),
        &json!({}),
    );
    assert_eq!(status, 200, "her own as is hers");
}

#[test]
fn the_route_table_and_the_router_agree() {
    let node = Node::start();
    for (method, path, _) in ROUTES {
        let path = path
            .replace("{id}", "00000000")
            .replace("{key}", &"0".repeat(64));
        let (status, text) = node.call(method, &path, &Auth::None, &json!({}));
        assert!(
            !text.contains("no such route") && status != 405,
            "{method} {path}: {status} {text}"
        );
    }
    // And nothing else is routed: a neighbour of a route is not one.
    let (status, text) = node.call(&Method::DELETE, "/v1/contacts", &Auth::None, &json!({}));
    assert_eq!(status, 405, "{text}");
    let (status, _) = node.call(&Method::GET, "/v1/contact", &Auth::None, &json!({}));
    assert_eq!(status, 404);
}

#[test]
fn a_member_signs_in_through_the_api_acts_as_herself_and_signs_out() {
    let node = Node::start();
    node.operator_post("/v1/community", json!({"name": "Riverside"}));
    let link = offer(&node);
    let (cookie, anna) = node.join("anna");
    // Wrong password: 401; the body says nothing of whether the login exists.
    let (status, text) = node.call(
        &Method::POST,
        "/v1/signin",
        &Auth::None,
        &json!({"login": "anna", "password": "not her password"}),
    );
    assert_eq!(status, 401, "{text}");
    let bearer = node.sign_in("anna");
    assert!(bearer.starts_with("pls.") && bearer.len() == 4 + 64);
    let (status, text) = node.call(
        &Method::POST,
        "/v1/referrals",
        &Auth::Bearer(bearer.clone()),
        &json!({"from": link.token()}),
    );
    assert_eq!(status, 201, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let mine = ShareLink::parse(v["link"].as_str().expect("link")).expect("link");
    match &mine.attestations.last().expect("chain").body {
        Body::Referral(r) => {
            assert_eq!(r.referrer, anna, "signed by her key");
            assert!(r.community.is_some(), "naming her community");
        }
        other => panic!("{other:?}"),
    }
    // Her dashboard session's id, sent as a bearer, is hers too.
    let as_bearer = format!("pls.{}", &cookie["pl_session=".len()..]);
    let (status, _) = node.call(
        &Method::GET,
        "/v1/contacts",
        &Auth::Bearer(as_bearer),
        &json!({}),
    );
    assert_eq!(status, 200, "her own session id, as a bearer, is hers");
    // A member cannot use the operator's routes.
    let (status, _) = node.call(
        &Method::POST,
        "/v1/community/invites",
        &Auth::Bearer(bearer.clone()),
        &json!({}),
    );
    assert_eq!(status, 403);
    // Signed out, the bearer is dead.
    let (status, _) = node.call(
        &Method::POST,
        "/v1/signout",
        &Auth::Bearer(bearer.clone()),
        &json!({}),
    );
    assert_eq!(status, 200);
    let (status, _) = node.call(
        &Method::GET,
        "/v1/contacts",
        &Auth::Bearer(bearer),
        &json!({}),
    );
    assert_eq!(status, 401);
    // A node with a community: a private read needs credentials.
    let (status, _) = node.call(&Method::GET, "/v1/contacts", &Auth::None, &json!({}));
    assert_eq!(status, 401);
    let (status, _) = node.call(
        &Method::GET,
        "/v1/contacts",
        &Auth::Bearer(TOKEN.into()),
        &json!({}),
    );
    assert_eq!(status, 200);
}

/// A hosted member exports her key through the API and from her account page: the file opens
/// with her password (or the one she chose for it) to her own key, carrying her community, its
/// market and her contacts; a wrong password exports nothing; removed, she still exports
/// (read-only), without the community she no longer belongs to.
#[test]
fn a_member_exports_her_key_read_only_too() {
    use passalong_accounts::export;

    let node = Node::start();
    let c = node.operator_post("/v1/community", json!({"name": "Riverside"}));
    let (cookie, anna) = node.join("anna");
    let bearer = node.sign_in("anna");
    let friend = "2".repeat(64);
    let (status, _) = node.call(
        &Method::POST,
        "/v1/contacts",
        &Auth::Bearer(bearer.clone()),
        &json!({"key": friend, "name": "Ben"}),
    );
    assert_eq!(status, 200);
    let export_api = |bearer: &str, body: Value| {
        node.call(
            &Method::POST,
            "/v1/account/export-key",
            &Auth::Bearer(bearer.into()),
            &body,
        )
    };

    let (status, text) = export_api(&bearer, json!({"password": "not her password"}));
    assert_eq!(status, 401, "{text}");
    let (status, text) = export_api(&bearer, json!({"password": PASSWORD}));
    assert_eq!(status, 200, "{text}");
    let file = passalong_accounts::KeyFile::from_json(&text).expect("a key file");
    assert_eq!(
        (file.kdf.m_kib, file.kdf.t),
        (
            passalong_accounts::KdfParams::MINIMUM.m_kib,
            passalong_accounts::KdfParams::MINIMUM.t
        ),
        "the node's export cost (lowered for the test)"
    );
    let (key, carried) = export::open(&file, PASSWORD.as_bytes()).expect("her password opens it");
    assert_eq!(key.public(), anna);
    let connector = Keypair::from_seed([1; 32]).public();
    assert_eq!(
        carried.community.map(|id| id.to_hex()).as_deref(),
        c["id"].as_str()
    );
    assert!(
        carried.markets.contains(&connector),
        "{:?}",
        carried.markets
    );
    assert_eq!(
        carried.contacts,
        vec![(
            PublicKey::from_hex(&friend).expect("key"),
            "Ben".to_string()
        )]
    );
    assert!(
        carried.relays.is_empty(),
        "a node without the network has no relay to give"
    );

    // Under a password of its own: hers no longer opens it.
    let (status, text) = export_api(
        &bearer,
        json!({"password": PASSWORD, "export_password": "for the usb stick"}),
    );
    assert_eq!(status, 200, "{text}");
    let file = passalong_accounts::KeyFile::from_json(&text).expect("a key file");
    assert!(matches!(
        export::open(&file, PASSWORD.as_bytes()),
        Err(passalong_accounts::VaultError::WrongPassword)
    ));
    assert_eq!(
        export::open(&file, b"for the usb stick")
            .expect("opens")
            .0
            .public(),
        anna
    );
    let (status, text) = export_api(
        &bearer,
        json!({"password": PASSWORD, "export_password": "short"}),
    );
    assert_eq!(status, 400, "{text}");

    // The account page: the form, and the download.
    let (status, page) = node.call(
        &Method::GET,
        "/account",
        &Auth::Cookie(cookie.clone()),
        &json!({}),
    );
    assert_eq!(status, 200);
    assert!(page.contains("id=\"export-key\""), "{page}");
    let at = page.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = page[at..at + 64].to_string();
    let post_form = |password: &str| {
        answer_with_headers(
            Node::agent()
                .post(&node.url("/account/export-key"))
                .set("Cookie", &cookie)
                .set("Origin", &node.url(""))
                .send_form(&[
                    ("csrf", csrf.as_str()),
                    ("password", password),
                    ("export_password", ""),
                ]),
        )
    };
    let (status, disposition, body) = post_form("not her password");
    assert_eq!(status, 401);
    assert!(
        disposition.is_none() && body.contains("Wrong password"),
        "{body}"
    );
    let (status, disposition, body) = post_form(PASSWORD);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        disposition.as_deref(),
        Some("attachment; filename=\"passalong-anna.key\"")
    );
    let file = passalong_accounts::KeyFile::from_json(&body).expect("a key file");
    assert_eq!(
        export::open(&file, PASSWORD.as_bytes())
            .expect("opens")
            .0
            .public(),
        anna
    );

    // Removed, she signs in read-only and exports all the same, without the community.
    node.operator_post(
        &format!("/v1/community/members/{}/remove", anna.to_hex()),
        json!({}),
    );
    let (status, _) = export_api(&bearer, json!({"password": PASSWORD}));
    assert_eq!(status, 401, "her sessions ended with the removal");
    let read_only = node.sign_in("anna");
    let (status, text) = export_api(&read_only, json!({"password": PASSWORD}));
    assert_eq!(status, 200, "{text}");
    let file = passalong_accounts::KeyFile::from_json(&text).expect("a key file");
    let (key, carried) = export::open(&file, PASSWORD.as_bytes()).expect("opens");
    assert_eq!(key.public(), anna);
    assert_eq!(carried.community, None, "no longer a member");
    assert_eq!(carried.contacts.len(), 1, "her contacts still");
}

/// The dashboard's download is held to the same exports an hour as the API's, and its
/// refusal says when to retry as the API's does: a `Retry-After` of the seconds its text gives.
#[test]
fn the_dashboards_export_refusal_says_when_to_retry() {
    let node = Node::start();
    node.operator_post("/v1/community", json!({"name": "Riverside"}));
    let (cookie, _) = node.join("anna");
    let (status, page) = node.call(
        &Method::GET,
        "/account",
        &Auth::Cookie(cookie.clone()),
        &json!({}),
    );
    assert_eq!(status, 200);
    let at = page.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = page[at..at + 64].to_string();
    let post_form = || {
        let r = Node::agent()
            .post(&node.url("/account/export-key"))
            .set("Cookie", &cookie)
            .set("Origin", &node.url(""))
            .send_form(&[
                ("csrf", csrf.as_str()),
                ("password", PASSWORD),
                ("export_password", ""),
            ]);
        let r = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport: {e}"),
        };
        let retry = r.header("retry-after").map(str::to_string);
        (r.status(), retry, r.into_string().expect("body"))
    };
    let per_hour = node.state.signin.export_limits().per_window;
    for n in 0..per_hour {
        let (status, retry, body) = post_form();
        assert_eq!((status, retry), (200, None), "export {n}: {body}");
    }
    let (status, retry, body) = post_form();
    assert_eq!(status, 429, "{body}");
    let retry = retry.expect("a Retry-After, as the API's refusal has");
    let secs: u64 = retry.parse().expect("seconds");
    assert!((3_500..=3_600).contains(&secs), "{secs} s");
    assert!(
        body.contains(&format!("try again in {secs} s")),
        "the same seconds as the text: {body}"
    );
}

/// Status, `Content-Disposition` and body of an answer.
fn answer_with_headers(r: Result<ureq::Response, ureq::Error>) -> (u16, Option<String>, String) {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport: {e}"),
    };
    let disposition = r.header("content-disposition").map(str::to_string);
    (r.status(), disposition, r.into_string().expect("body"))
}

/// A person with her own node joins with her own key: `GET /v1/join/<token>` says what she
/// joins, `POST` admits her once with her node's signed request, fresh and hers; a stale, a
/// foreign or a repeated request is refused and costs no invite.
#[test]
fn an_own_node_member_joins_once_with_her_own_signed_request_and_may_retry() {
    use passalong_protocol::attestation::Membership;
    use passalong_protocol::Id;

    let node = Node::start();
    let c = node.operator_post("/v1/community", json!({"name": "Riverside"}));
    let community = Id::from_hex(c["id"].as_str().expect("id")).expect("hex");
    let invite = node.operator_post("/v1/community/invites", json!({}));
    let token = invite["token"].as_str().expect("token").to_string();
    let path = format!("/v1/join/{token}");
    let (status, text) = node.call(&Method::GET, &path, &Auth::None, &json!({}));
    assert_eq!(status, 200, "{text}");
    let info: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(info["community"], c["id"]);
    assert_eq!(info["name"], "Riverside");
    assert_eq!(
        info["connector"],
        Keypair::from_seed([1; 32]).public().to_hex().as_str()
    );

    let mine = Keypair::from_seed([0x4d; 32]);
    let request = |who: &Keypair, signer: &Keypair, at_ms: u64| {
        let sig = signer.sign(&Membership::request_message(
            &community,
            &who.public(),
            at_ms,
        ));
        json!({"member": who.public().to_hex(), "created_at_ms": at_ms,
            "signature": hex::encode(sig)})
    };
    let now = passalong_api::now_ms();
    for (what, body) in [
        ("stale", request(&mine, &mine, now - 11 * 60_000)),
        ("from the future", request(&mine, &mine, now + 5 * 60_000)),
        (
            "signed by another key",
            request(&mine, &Keypair::from_seed([0x4e; 32]), now),
        ),
    ] {
        let (status, text) = node.call(&Method::POST, &path, &Auth::None, &body);
        assert_eq!(status, 400, "{what}: {text}");
    }
    let (status, text) = node.call(
        &Method::POST,
        "/v1/join/inv1.nope",
        &Auth::None,
        &request(&mine, &mine, now),
    );
    assert_eq!(status, 404, "{text}");

    // Fresh and hers: admitted, with the Community and the Membership to import.
    let (status, text) = node.call(
        &Method::POST,
        &path,
        &Auth::None,
        &request(&mine, &mine, now),
    );
    assert_eq!(status, 201, "{text}");
    let joined: Value = serde_json::from_str(&text).expect("json");
    let envelopes = joined["envelopes"].as_array().expect("envelopes");
    assert_eq!(envelopes.len(), 2);
    let membership = passalong_protocol::Attestation::decode(
        &hex::decode(envelopes[1].as_str().expect("hex")).expect("hex"),
    )
    .expect("an attestation");
    assert_eq!(
        membership.id.to_hex(),
        joined["membership"].as_str().expect("id")
    );
    match &membership.body {
        Body::Membership(m) => {
            assert_eq!(
                (m.member, m.community, m.created_at_ms),
                (mine.public(), community, now)
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(node
        .store
        .attestation(&membership.id)
        .expect("store")
        .is_some());
    // The invite worked once: another key is refused it.
    let other = Keypair::from_seed([0x4f; 32]);
    let (status, text) = node.call(
        &Method::POST,
        &path,
        &Auth::None,
        &request(&other, &other, now),
    );
    assert_eq!(status, 410, "{text}");
    // Her node retrying (it could not finish at home): her Membership again, nothing signed.
    let (status, text) = node.call(
        &Method::POST,
        &path,
        &Auth::None,
        &request(&mine, &mine, now + 1),
    );
    assert_eq!(status, 200, "{text}");
    let again: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(again["membership"], joined["membership"]);
    assert_eq!(again["envelopes"], joined["envelopes"]);
    // A member already admitted, with the next invite: the same, and the invite is kept for
    // someone else.
    let second = node.operator_post("/v1/community/invites", json!({}));
    let path2 = format!("/v1/join/{}", second["token"].as_str().expect("token"));
    let (status, text) = node.call(
        &Method::POST,
        &path2,
        &Auth::None,
        &request(&mine, &mine, now),
    );
    assert_eq!(status, 200, "{text}");
    let again: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(again["membership"], joined["membership"]);
    let (status, _) = node.call(&Method::GET, &path2, &Auth::None, &json!({}));
    assert_eq!(status, 200, "still open");

    // Her own node's side: its key signs the request for a community, with the token only.
    let (status, text) = node.call(
        &Method::POST,
        "/v1/membership-requests",
        &Auth::Bearer(TOKEN.into()),
        &json!({"community": c["id"]}),
    );
    assert_eq!(status, 200, "{text}");
    let req: Value = serde_json::from_str(&text).expect("json");
    let node_key = Keypair::from_seed([1; 32]).public();
    assert_eq!(req["member"], node_key.to_hex().as_str());
    let mut sig = [0u8; 64];
    hex::decode_to_slice(req["signature"].as_str().expect("hex"), &mut sig).expect("64 bytes");
    passalong_protocol::signature::verify_strict(
        &node_key,
        &Membership::request_message(
            &community,
            &node_key,
            req["created_at_ms"].as_u64().expect("ms"),
        ),
        &sig,
    )
    .expect("the node's key signed the request");
    let (status, _) = node.call(
        &Method::POST,
        "/v1/membership-requests",
        &Auth::None,
        &json!({"community": c["id"]}),
    );
    assert_eq!(status, 401);
}
