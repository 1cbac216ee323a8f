//! The API's receipts per second: a real server on loopback with a real store, seller-signed
//! receipts posted over HTTP by concurrent clients (each acknowledged only after its flush).
//! Prints its figures; `cargo bench -p passalong-api --bench receipts`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use passalong_api::{AppState, Identities, Writer};
use passalong_protocol::attestation::{Body, Referral};
use passalong_protocol::{Attestation, Id, Keypair};
use passalong_store::Store;
use serde_json::{json, Value};

const TOKEN: &str = "bench-token";

fn post(agent: &ureq::Agent, url: &str, body: Value) -> Value {
    agent
        .post(url)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(body)
        .expect("the API accepts the request")
        .into_json()
        .expect("a JSON reply")
}

/// Posts `per_client` receipts from each of `clients` threads; returns receipts per second.
fn run(base: &str, offer: &str, via: &str, clients: usize, per_client: usize, tag: &str) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (base, offer, via, tag) = (base.to_string(), offer.to_string(), via.to_string(), tag.to_string());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                for i in 0..per_client {
                    let v = post(
                        &agent,
                        &format!("{base}/v1/receipts"),
                        json!({"offer": offer, "order": format!("{tag}-{c}-{i}"), "amount_minor": 1999,
                               "buyer": "5a".repeat(32), "via": via}),
                    );
                    assert_eq!(v["status"], "valid");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    (clients * per_client) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let (base, _guard) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = AppState::new(
            store.clone(),
            Writer::spawn(store.clone()),
            Identities::single(Keypair::from_seed([1; 32])),
            TOKEN.into(),
            format!("http://{addr}"),
            dir.path().to_path_buf(),
        )
        .expect("state");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(passalong_api::serve(listener, state, async {
            let _ = rx.await;
        }));
        (format!("http://{addr}"), tx)
    });
    let agent = ureq::AgentBuilder::new().build();
    let offer = post(
        &agent,
        &format!("{base}/v1/offers"),
        json!({"title": "A record", "price_minor": 1999, "currency": "EUR", "pool_bps": 1000, "rule": "geometric:5000"}),
    );
    let offer_id = offer["id"].as_str().expect("id").to_string();
    // A friend's referral (another key), imported as a signed envelope: sales pay someone.
    let friend = Keypair::from_seed([2; 32]);
    let referral = Attestation::sign(
        Body::Referral(Referral {
            referrer: friend.public(),
            offer: Id::from_hex(&offer_id).expect("hex id"),
            parent: None,
            recipient: None,
            community: None,
            created_at_ms: passalong_api::now_ms(),
        }),
        &friend,
    );
    post(
        &agent,
        &format!("{base}/v1/attestations"),
        json!({"envelopes": [hex::encode(&referral.bytes)]}),
    );
    let via = referral.id.to_hex();

    let n: usize = std::env::var("PASSALONG_BENCH_RECEIPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    println!("API receipts per second (POST /v1/receipts, acknowledged after a durable flush)");
    println!("{:<28} {:>12}", "clients", "receipts/s");
    run(&base, &offer_id, &via, 4, 50, "warm");
    for clients in [1usize, 4, 16, 64] {
        let per = (n / clients)
            .max(1)
            .min(if clients == 1 { 1000 } else { usize::MAX });
        let rps = run(&base, &offer_id, &via, clients, per, &format!("c{clients}"));
        println!(
            "{:<28} {:>12.0}",
            format!("{clients} ({} receipts)", per * clients),
            rps
        );
    }
    let l = store
        .ledger(&Keypair::from_seed([1; 32]).public())
        .expect("ledger");
    println!("ledger lines after the run: {}", l.entries.len());
}
