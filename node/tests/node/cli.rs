//! The CLI as scripts see it: exit 0 on success, 1 on an error with one line on stderr that
//! says what to do, 2 on a usage error; secrets are 0600; bad input of every kind is refused
//! clearly and changes nothing.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::build;
use crate::common::*;
use passalong_protocol::{bundle, Keypair, Rule};

fn one_line_error(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// `run` logs to stderr before it fails: its error is the last line.
fn run_error(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr: {err}");
    let last = err.lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("error: "), "{err}");
    last
}

#[test]
fn init_makes_secrets_only_the_owner_can_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let out = cli_in(&dir, &["init", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["created"], true);
    for f in ["identity.key", "api-token"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert!(dir.join("config.toml").exists());
    // A second init changes nothing.
    let key = std::fs::read(dir.join("identity.key")).unwrap();
    let again: serde_json::Value =
        serde_json::from_slice(&cli_in(&dir, &["init", "--json"]).stdout).unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(std::fs::read(dir.join("identity.key")).unwrap(), key);
    // `id` works without a daemon: the public key, then the peer id.
    let id = cli_in(&dir, &["id"]);
    let text = String::from_utf8_lossy(&id.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), v["public_key"].as_str());
    assert!(
        lines.next().unwrap().starts_with("peer id 12D3KooW"),
        "{text}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    for args in [
        vec!["frobnicate"],
        vec!["offer", "publish", "--title", "x"],
        vec![
            "offer",
            "publish",
            "--title",
            "x",
            "--price",
            "1",
            "--currency",
            "EUR",
            "--pool-bps",
            "1",
            "--rule",
            "pyramid",
        ],
        vec![
            "offer",
            "publish",
            "--title",
            "x",
            "--price",
            "-5",
            "--currency",
            "EUR",
            "--pool-bps",
            "1",
            "--rule",
            "direct",
        ],
        vec![
            "offer",
            "publish",
            "--title",
            "x",
            "--price",
            "1",
            "--currency",
            "EUR",
            "--pool-bps",
            "1",
            "--rule",
            "direct",
            "--window",
            "3 weeks",
        ],
        vec!["receipt", "--offer", "aa"],
        vec!["run", "--api", "not-an-address"],
        vec!["export", "--seller", "aa", "--out", "f", "--format", "xml"],
        vec!["ledger", "--bogus"],
    ] {
        let out = cli_in(&dir, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn client_commands_without_a_daemon_say_how_to_start_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    cli_in(&dir, &["init"]);
    let err = one_line_error(&cli_in(&dir, &["ledger"]));
    assert!(err.contains("passalong run"), "{err}");
    // A stale api.addr (the daemon was killed): the message says it cannot reach it.
    std::fs::write(dir.join("api.addr"), "127.0.0.1:9\n").unwrap();
    let err = one_line_error(&cli_in(&dir, &["status"]));
    assert!(err.contains("cannot reach the daemon"), "{err}");
}

#[test]
fn bad_input_to_a_running_daemon_is_refused_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("n"));
    let offer = d.json(&[
        "offer",
        "publish",
        "--title",
        "Book",
        "--price",
        "1500",
        "--currency",
        "EUR",
        "--pool-bps",
        "1000",
        "--rule",
        "direct",
        "--checkout-url",
        "https://shop.example/books/1?ref=passalong",
    ]);
    let link = offer["link"].as_str().unwrap();
    let before = d.json(&["ledger"]);
    assert_eq!(
        d.json(&["offer", "list"])["offers"][0]["checkout_url"],
        "https://shop.example/books/1?ref=passalong"
    );

    // A damaged and a truncated link.
    let mut damaged = link.to_string();
    damaged.replace_range(20..21, if &link[20..21] == "A" { "B" } else { "A" });
    assert!(one_line_error(&d.cli(&["refer", &damaged])).contains("damaged or truncated"));
    assert!(one_line_error(&d.cli(&["refer", &link[..link.len() - 7]]))
        .contains("damaged or truncated"));
    assert!(one_line_error(&d.cli(&["refer", "hello"])).contains("share link"));
    // Bad keys, unknown ids, invalid amounts, a bad currency.
    let oid = offer["id"].as_str().unwrap();
    assert!(one_line_error(
        &d.cli(&["receipt", "--offer", oid, "--order", "1", "--amount", "5", "--buyer", "xyz"])
    )
    .contains("buyer"));
    assert!(one_line_error(&d.cli(&[
        "receipt",
        "--offer",
        &"ab".repeat(32),
        "--order",
        "1",
        "--amount",
        "5",
        "--buyer",
        &"5a".repeat(32)
    ]))
    .contains("no offer"));
    assert!(one_line_error(&d.cli(&[
        "receipt",
        "--offer",
        oid,
        "--order",
        "1",
        "--amount",
        "0",
        "--buyer",
        &"5a".repeat(32)
    ]))
    .contains("amount_minor"));
    assert!(one_line_error(&d.cli(&["refund", &"cd".repeat(32)])).contains("no receipt"));
    assert!(one_line_error(&d.cli(&[
        "settle",
        "--participant",
        &"5a".repeat(32),
        "--amount",
        "5",
        "--currency",
        "euro",
        "--reference",
        "r"
    ]))
    .contains("currency"));
    assert!(one_line_error(&d.cli(&[
        "offer",
        "publish",
        "--title",
        "x",
        "--price",
        "1",
        "--currency",
        "EUR",
        "--pool-bps",
        "9000",
        "--connector-bps",
        "2000",
        "--rule",
        "direct"
    ]))
    .contains("10000"));
    for (url, says) in [
        ("ftp://shop.example/book", "http:// or https://"),
        ("https://shop.example/a book", "no space"),
    ] {
        let err = one_line_error(&d.cli(&[
            "offer",
            "publish",
            "--title",
            "x",
            "--price",
            "1",
            "--currency",
            "EUR",
            "--pool-bps",
            "1",
            "--rule",
            "direct",
            "--checkout-url",
            url,
        ]));
        assert!(err.contains("checkout_url") && err.contains(says), "{err}");
    }
    // Files: missing, not a bundle, truncated.
    assert!(
        one_line_error(&d.cli(&["import", "/nonexistent/bundle.json"])).contains("cannot read")
    );
    let junk = tmp.path().join("junk.txt");
    std::fs::write(&junk, "hello").unwrap();
    assert!(one_line_error(&d.cli(&["import", junk.to_str().unwrap()]))
        .contains("not a passalong bundle"));
    let bundle = tmp.path().join("b.bin");
    let me = d.public_key();
    d.json(&[
        "export",
        "--seller",
        &me,
        "--out",
        bundle.to_str().unwrap(),
        "--format",
        "binary",
    ]);
    let bytes = std::fs::read(&bundle).unwrap();
    let cut = tmp.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    assert!(one_line_error(&d.cli(&["import", cut.to_str().unwrap()])).contains("truncated"));
    let out = cli_in(tmp.path(), &["verify", cut.to_str().unwrap()]);
    assert!(one_line_error(&out).contains("truncated"));

    // Nothing of that changed the node.
    assert_eq!(d.json(&["ledger"]), before);
    assert_eq!(
        d.json(&["offer", "list"])["offers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The whole bundle imports (everything known already); stderr is not a terminal here, so
    // no progress line: a script reads the result alone.
    let out = d.cli(&["--json", "import", bundle.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["new"], 0, "{v}");
    assert_eq!(v["statuses"]["valid"], v["attestations"], "{v}");
    assert_eq!(d.json(&["ledger"]), before);
}

#[test]
fn a_second_daemon_on_the_same_data_dir_or_port_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("n"));
    let out = std::process::Command::new(BIN)
        .args([
            "--data-dir",
            d.dir.to_str().unwrap(),
            "run",
            "--api",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let err = run_error(&out);
    assert!(
        err.contains("locked") && err.contains("already running"),
        "{err}"
    );

    let addr = std::fs::read_to_string(d.dir.join("api.addr")).unwrap();
    let other = tmp.path().join("m");
    let out = std::process::Command::new(BIN)
        .args([
            "--data-dir",
            other.to_str().unwrap(),
            "run",
            "--api",
            addr.trim(),
        ])
        .output()
        .unwrap();
    let err = run_error(&out);
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn a_broken_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    cli_in(&dir, &["init"]);
    std::fs::write(dir.join("config.toml"), "api = 42\n").unwrap();
    let err = run_error(&cli_in(&dir, &["run"]));
    assert!(
        err.contains("invalid config") && err.contains("config.toml"),
        "{err}"
    );
    std::fs::write(dir.join("config.toml"), "api = \"0.0.0.0:7423\"\n").unwrap();
    let err = run_error(&cli_in(&dir, &["run"]));
    assert!(err.contains("loopback"), "{err}");
}

/// Runs `passalong [--data-dir DIR] args` with stdout a pipe whose reader takes `first` bytes
/// and closes it (`| head -c N`); returns the exit code and stderr, and asserts that stderr
/// says nothing of the pipe: no panic, no "Broken pipe".
fn with_stdout_closed(dir: Option<&Path>, args: &[&str], first: usize) -> (Option<i32>, String) {
    let mut c = Command::new(BIN);
    if let Some(d) = dir {
        c.arg("--data-dir").arg(d);
    }
    let mut child = c
        .args(args)
        .env_remove("PASSALONG_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn passalong");
    let mut out = child.stdout.take().expect("stdout");
    let mut head = vec![0; first];
    out.read_exact(&mut head).expect("the first bytes");
    drop(out);
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !err.contains("panicked") && !err.to_lowercase().contains("broken pipe"),
        "{args:?}: {err}"
    );
    (o.status.code(), err)
}

/// A market whose ledger has `n` lines: one referrer per sale.
fn market_of_many(n: u32) -> Vec<Vec<u8>> {
    let seller = build::key(1);
    let o = build::offer(&seller, build::policy(Rule::Direct, 1_000), build::T0);
    let mut out = vec![o.bytes.clone()];
    for i in 0..n {
        let mut seed = [7; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        let t = build::T0 + 1 + u64::from(i);
        let r = build::refer(&Keypair::from_seed(seed), &o, None, t);
        let buyer = build::key(2).public();
        let sale = build::receipt(&seller, &o, &format!("o-{i}"), 1_000, buyer, Some(&r), t);
        out.extend([r.bytes, sale.bytes]);
    }
    out
}

#[test]
fn every_command_exits_quietly_when_its_output_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("n"));
    let dir = d.dir.as_path();
    let me = d.public_key();
    let buyer = "5a".repeat(32);
    let publish = [
        "offer",
        "publish",
        "--title",
        "Book",
        "--price",
        "1500",
        "--currency",
        "EUR",
        "--pool-bps",
        "1000",
        "--rule",
        "direct",
    ];
    let offer = d.json(&publish);
    let (oid, link) = (
        offer["id"].as_str().unwrap(),
        offer["link"].as_str().unwrap(),
    );
    let sold = d.json(&[
        "receipt", "--offer", oid, "--order", "Q-1", "--amount", "1500", "--buyer", &buyer,
    ]);
    let rid = sold["id"].as_str().unwrap();
    let file = tmp.path().join("market.json");
    let file = file.to_str().unwrap();
    d.json(&["export", "--seller", &me, "--out", file]);
    // The ledger of 800 referrers: verify's report is over 64 KiB, more than the pipe holds,
    // so its write is cut short by the reader that leaves.
    let big = tmp.path().join("big.json");
    std::fs::write(&big, bundle::to_json(&market_of_many(800), None)).unwrap();
    let big = big.to_str().unwrap();

    for json in [false, true] {
        let order = format!("P-{json}");
        let reference = format!("SEPA-{json}");
        let commands: Vec<Vec<&str>> = vec![
            vec!["init"],
            vec!["id"],
            vec!["status"],
            vec!["peers"],
            vec!["market", "list"],
            vec!["market", "follow", &me],
            vec!["offer", "list"],
            publish.to_vec(),
            vec!["refer", link],
            vec![
                "receipt", "--offer", oid, "--order", &order, "--amount", "1500", "--buyer", &buyer,
            ],
            vec!["refund", rid],
            vec![
                "settle",
                "--participant",
                &buyer,
                "--amount",
                "5",
                "--currency",
                "EUR",
                "--reference",
                &reference,
            ],
            vec!["ledger"],
            vec!["payouts"],
            vec!["earnings"],
            vec!["contacts", "add", &buyer, "Buyer"],
            vec!["contacts", "list"],
            vec!["export", "--seller", &me, "--out", file],
            vec!["import", file],
            vec!["verify", file],
            vec!["verify", big],
        ];
        for mut args in commands {
            if json {
                args.push("--json");
            }
            let (code, err) = with_stdout_closed(Some(dir), &args, 0);
            assert_eq!(code, Some(0), "{args:?}: {err}");
        }
        if !json {
            for args in [
                vec!["ledger", "--csv"],
                vec!["payouts", "--csv"],
                vec!["earnings", "--csv"],
            ] {
                let (code, err) = with_stdout_closed(Some(dir), &args, 0);
                assert_eq!(code, Some(0), "{args:?}: {err}");
            }
        }
        // Part of the output read, then the pipe closed while the command still writes.
        let args: &[&str] = if json {
            &["verify", big, "--json"]
        } else {
            &["verify", big]
        };
        let (code, err) = with_stdout_closed(None, args, 1);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    for args in [["--help"], ["--version"]] {
        let (code, err) = with_stdout_closed(None, &args, 0);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    // What the commands did, they did: the sales and payments are there, the file is whole.
    let ledger = d.json(&["ledger"]);
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 1, "{ledger}");
    assert_eq!(cli_in(tmp.path(), &["verify", file]).status.code(), Some(0));
    // An error is still an error, said on stderr, with its output closed.
    let (code, err) = with_stdout_closed(Some(dir), &["refund", &"cd".repeat(32)], 0);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: ") && err.contains("no receipt"),
        "{err}"
    );
}

/// The daemon's API: base URL and write token.
fn api_of(d: &Daemon) -> (String, String) {
    let addr = std::fs::read_to_string(d.dir.join("api.addr")).expect("the daemon wrote api.addr");
    let token = std::fs::read_to_string(d.dir.join("api-token")).expect("init wrote api-token");
    (format!("http://{}", addr.trim()), token.trim().to_string())
}

/// `POST /v1/receipts` with an `Idempotency-Key`: (status, body).
fn post_keyed(d: &Daemon, key: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let (base, token) = api_of(d);
    let r = ureq::post(&format!("{base}/v1/receipts"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Idempotency-Key", key)
        .send_json(body.clone());
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("POST /v1/receipts: {e}"),
    };
    (resp.status(), resp.into_json().expect("a JSON answer"))
}

/// What a script sees of the node's key: valid attestations and the equivocations against it.
fn signed(d: &Daemon) -> (u64, serde_json::Value) {
    let (base, _) = api_of(d);
    let eq: serde_json::Value = ureq::get(&format!("{base}/v1/equivocations"))
        .call()
        .expect("GET /v1/equivocations")
        .into_json()
        .expect("JSON");
    let valid = d.json(&["status"])["valid_attestations"]
        .as_u64()
        .expect("valid_attestations");
    (valid, eq)
}

#[test]
fn a_repeated_sale_refund_or_payment_is_the_same_attestation_and_a_conflicting_one_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&tmp.path().join("n"));
    let offer = d.json(&[
        "offer",
        "publish",
        "--title",
        "Book",
        "--price",
        "1500",
        "--currency",
        "EUR",
        "--pool-bps",
        "1000",
        "--rule",
        "direct",
    ]);
    let (oid, link) = (
        offer["id"].as_str().unwrap(),
        offer["link"].as_str().unwrap(),
    );
    let referral = d.json(&["refer", link]);
    let via = referral["link"].as_str().unwrap();
    let buyer = "5a".repeat(32);
    let sale = |amount: &'static str| -> Vec<String> {
        [
            "receipt", "--offer", oid, "--order", "A-1", "--amount", amount, "--buyer", &buyer,
            "--via", via,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: &[String]| d.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // A checkout that retries: exit 0 both times, the same receipt.
    let first = run(&sale("1500"));
    assert!(first.status.success(), "{first:?}");
    let id = String::from_utf8(first.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let again = run(&sale("1500"));
    assert!(again.status.success(), "{again:?}");
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), id);
    let mut json_args = sale("1500");
    json_args.push("--json".into());
    let v: serde_json::Value = serde_json::from_slice(&run(&json_args).stdout).unwrap();
    assert_eq!(
        (v["id"].as_str(), &v["existing"]),
        (Some(id.as_str()), &true.into())
    );
    let before = signed(&d);
    assert_eq!(before.1, serde_json::json!({"equivocations": []}));
    let ledger = d.json(&["ledger"]);

    // Another amount for the same order: exit 1, one line naming the receipt, nothing signed.
    let err = one_line_error(&run(&sale("1600")));
    assert!(
        err.contains(&id) && err.contains("A-1") && err.contains("amount_minor"),
        "{err}"
    );
    assert_eq!(signed(&d), before);
    assert_eq!(d.json(&["ledger"]), ledger);

    // One refund per receipt.
    let refund = d.json(&["refund", &id]);
    assert_eq!(refund["existing"], false);
    let again = d.json(&["refund", &id]);
    assert_eq!(
        (&again["id"], &again["existing"]),
        (&refund["id"], &true.into())
    );
    let after_refund = signed(&d);
    assert_eq!(after_refund.0, before.0 + 1);

    // A payment reference names one payment.
    let pay = |amount: &str| {
        d.cli(&[
            "settle",
            "--participant",
            &buyer,
            "--amount",
            amount,
            "--currency",
            "EUR",
            "--reference",
            "SEPA-7",
        ])
    };
    let paid = pay("300");
    assert!(paid.status.success(), "{paid:?}");
    let sid = String::from_utf8(paid.stdout).unwrap().trim().to_string();
    let again = pay("300");
    assert!(again.status.success(), "{again:?}");
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), sid);
    let err = one_line_error(&pay("301"));
    assert!(err.contains(&sid) && err.contains("SEPA-7"), "{err}");
    let after_pay = signed(&d);
    assert_eq!(after_pay.0, after_refund.0 + 1);
    assert_eq!(after_pay.1, serde_json::json!({"equivocations": []}));

    // An idempotency key survives a restart: the same body answers the first receipt, another
    // body is refused.
    let body =
        serde_json::json!({"offer": oid, "order": "B-1", "amount_minor": 900, "buyer": buyer});
    let (status, v) = post_keyed(&d, "checkout-1", &body);
    assert_eq!(status, 201, "{v}");
    d.stop();
    d.restart();
    let (status, again) = post_keyed(&d, "checkout-1", &body);
    assert_eq!(status, 200, "{again}");
    assert_eq!((&again["id"], &again["existing"]), (&v["id"], &true.into()));
    let mut other = body.clone();
    other["order"] = "B-2".into();
    let (status, e) = post_keyed(&d, "checkout-1", &other);
    assert_eq!((status, e["code"].as_str()), (409, Some("conflict")), "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains(v["id"].as_str().unwrap()),
        "{e}"
    );
    let end = signed(&d);
    assert_eq!(end.0, after_pay.0 + 1);
    assert_eq!(end.1, serde_json::json!({"equivocations": []}));
}

/// What a person must never see raw: escape sequences, a bell, a line break, a bidirectional
/// override.
const HOSTILE: [char; 5] = ['\u{1b}', '\u{7}', '\r', '\u{202E}', '\u{9b}'];

fn printable_only(what: &str, text: &str) {
    for c in HOSTILE {
        assert!(!text.contains(c), "{what}: {:04X} in {text:?}", c as u32);
    }
}

/// Runs a command, asserts exit 0, returns its stdout (and asserts stderr is empty: no
/// progress drawn on a pipe).
fn stdout_of(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A CSV document's rows, fields unquoted (RFC 4180: quoted fields, doubled quotes).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "a CSV ends with a line break: {text:?}"
    );
    let width = rows.first().map_or(0, Vec::len);
    assert!(rows.iter().all(|r| r.len() == width), "{text:?}");
    rows
}

/// The dashboard of `d`, signed in with its API token: GETs `path` and returns the body.
fn dashboard_get(d: &Daemon, path: &str) -> String {
    let (base, token) = api_of(d);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let cookie = |resp: &ureq::Response, name: &str| -> String {
        resp.all("Set-Cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie"))
            .to_string()
    };
    let page = agent
        .get(&format!("{base}/signin"))
        .call()
        .expect("GET /signin");
    let signin_cookie = cookie(&page, "pl_signin");
    let csrf = signin_cookie.split('=').nth(1).unwrap_or("").to_string();
    let signed_in = agent
        .post(&format!("{base}/signin"))
        .set("Cookie", &signin_cookie)
        .send_form(&[("token", &token), ("csrf", &csrf)])
        .expect("POST /signin");
    assert_eq!(signed_in.status(), 303, "signed in and sent home");
    let session = cookie(&signed_in, "pl_session");
    agent
        .get(&format!("{base}{path}"))
        .set("Cookie", &session)
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .into_string()
        .expect("a text body")
}

#[test]
fn ledger_payouts_earnings_and_contacts_in_major_units_with_names_and_printable_text() {
    let tmp = tempfile::tempdir().unwrap();
    let seller = Daemon::start(&tmp.path().join("seller"));
    let friend = Daemon::start(&tmp.path().join("friend"));
    let (s_key, f_key) = (seller.public_key(), friend.public_key());
    let title = "Record \u{1b}[2J\u{1b}]0;pwned\u{7}\u{202E}gpj.exe";
    let publish = |title: &str, price: &str, currency: &str| {
        seller.json(&[
            "offer",
            "publish",
            "--title",
            title,
            "--price",
            price,
            "--currency",
            currency,
            "--pool-bps",
            "1000",
            "--rule",
            "direct",
        ])
    };
    let offer = publish(title, "2000", "EUR");
    publish("Tea", "1200", "JPY");

    // Offers: prices in major units, the title made printable; JSON as signed.
    let list = stdout_of(&seller, &["offer", "list"]);
    assert!(
        list.contains("20.00 EUR") && list.contains("1200 JPY"),
        "{list}"
    );
    printable_only("offer list", &list);
    assert!(list.contains("Record \u{FFFD}[2J"), "{list}");
    let v = seller.json(&["offer", "list"]);
    assert_eq!(v["offers"][0]["title"], title);
    assert_eq!(v["offers"][0]["price_minor"], 2000);

    // The friend passes it along, a buyer buys through the friend's link.
    let link = friend.json(&["refer", offer["link"].as_str().unwrap()])["link"]
        .as_str()
        .unwrap()
        .to_string();
    let order = "A-1\u{1b}[31m\u{202E}";
    let buyer = "5a".repeat(32);
    let oid = offer["id"].as_str().unwrap();
    seller.json(&[
        "receipt", "--offer", oid, "--order", order, "--amount", "2000", "--buyer", &buyer,
        "--via", &link,
    ]);
    // An error that quotes the remote text is one printable line too.
    let out = seller.cli(&[
        "receipt", "--offer", oid, "--order", order, "--amount", "1999", "--buyer", &buyer,
        "--via", &link,
    ]);
    let err = one_line_error(&out);
    printable_only("error", &err);
    assert!(err.contains("A-1"), "{err}");

    // Contacts: add, list (table and JSON), names in the tables.
    assert_eq!(
        stdout_of(&seller, &["contacts", "list"]).trim(),
        "key  name"
    );
    stdout_of(&seller, &["contacts", "add", &f_key, "Bob"]);
    stdout_of(&seller, &["contacts", "add", &buyer, "Carla"]);
    let v = seller.json(&["contacts", "list"]);
    let mut listed = v["contacts"].as_array().unwrap().clone();
    listed.sort_by_key(|c| c["name"].to_string());
    assert_eq!(
        listed,
        [
            serde_json::json!({"key": f_key, "name": "Bob"}),
            serde_json::json!({"key": buyer, "name": "Carla"})
        ]
    );
    let table = stdout_of(&seller, &["contacts", "list"]);
    assert!(
        table.lines().any(|l| l == format!("{f_key}  Bob")),
        "{table}"
    );
    let v = seller.json(&["contacts", "remove", &buyer]);
    assert_eq!(v["contacts"].as_array().unwrap().len(), 1, "{v}");
    assert!(one_line_error(&seller.cli(&["contacts", "remove", &buyer])).contains("no contact"));
    assert!(one_line_error(&seller.cli(&["contacts", "add", "xyz", "Bob"])).contains("key"));
    assert!(
        one_line_error(&seller.cli(&["contacts", "add", &buyer, "Eve\u{1b}[2J"]))
            .contains("control")
    );
    for args in [
        vec!["contacts", "add", &f_key],
        vec!["contacts", "frobnicate"],
        vec!["ledger", "--csv", "--json"],
        vec!["payouts", "--csv", "--json"],
        vec!["earnings", "--limit", "many"],
    ] {
        let out = seller.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }

    // The ledger: a table in major units with the friend's name; JSON in minor units.
    let table = stdout_of(&seller, &["ledger"]);
    let row = table
        .lines()
        .find(|l| l.contains(&f_key))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.starts_with("EUR") && row.contains(" Bob ") && row.ends_with("  2.00 EUR"),
        "{table}"
    );
    let v = seller.json(&["ledger"]);
    assert_eq!(line(&v, &f_key), Some((200, 0, 0, 200)), "{v}");

    // CSV: parses, sums to the ledger, and is the dashboard's download byte for byte.
    let csv = stdout_of(&seller, &["ledger", "--csv"]);
    let rows = parse_csv(&csv);
    assert_eq!(
        rows[0],
        [
            "currency",
            "participant",
            "name",
            "earned",
            "refunded",
            "settled",
            "owed"
        ]
    );
    assert!(rows.contains(&vec![
        "EUR".into(),
        f_key.clone(),
        "Bob".into(),
        "2.00".into(),
        "0.00".into(),
        "0.00".into(),
        "2.00".into()
    ]));
    assert_eq!(rows.len() - 1, v["entries"].as_array().unwrap().len());
    assert_eq!(
        csv,
        dashboard_get(&seller, &format!("/ledger/{s_key}/ledger.csv"))
    );
    let csv_other = stdout_of(&friend, &["ledger", "--seller", &s_key, "--csv"]);
    assert_eq!(parse_csv(&csv_other)[0][0], "currency");

    // Payouts: what I owe, per participant and currency.
    let table = stdout_of(&seller, &["payouts"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&f_key) && l.contains("Bob") && l.ends_with(" 2.00 EUR")),
        "{table}"
    );
    assert_eq!(
        seller.json(&["payouts"]),
        serde_json::json!({"seller": s_key, "payouts": [
            {"participant": f_key, "currency": "EUR", "amount_minor": 200}]})
    );
    let csv = stdout_of(&seller, &["payouts", "--csv"]);
    assert_eq!(
        parse_csv(&csv),
        [
            vec!["participant", "name", "currency", "amount"],
            vec![f_key.as_str(), "Bob", "EUR", "2.00"]
        ]
    );
    assert_eq!(
        csv,
        dashboard_get(&seller, &format!("/ledger/{s_key}/payouts.csv"))
    );
    assert!(one_line_error(&seller.cli(&["payouts", "--seller", "zz"])).contains("seller"));
    assert!(one_line_error(&seller.cli(&["ledger", "--seller", "zz", "--csv"])).contains("seller"));
    assert!(one_line_error(&seller.cli(&["earnings", "--seller", "zz"])).contains("seller"));

    // The friend's earnings, once the sale reached its node (from an export here).
    let bundle = tmp.path().join("market.json");
    // No progress drawn on a piped stderr (`stdout_of` checks it is empty).
    let bundle = bundle.to_str().unwrap();
    stdout_of(&seller, &["export", "--seller", &s_key, "--out", bundle]);
    stdout_of(&friend, &["import", bundle]);
    stdout_of(&friend, &["verify", bundle]);
    friend.json(&["contacts", "add", &s_key, "Shop"]);
    let v = friend.json(&["earnings"]);
    let e = &v["earnings"][0];
    assert_eq!(v["earnings"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        (
            &e["order"],
            &e["title"],
            &e["hop"],
            &e["share_minor"],
            &e["amount_minor"]
        ),
        (
            &order.into(),
            &title.into(),
            &1.into(),
            &200.into(),
            &2000.into()
        ),
        "{v}"
    );
    let table = stdout_of(&friend, &["earnings"]);
    printable_only("earnings", &table);
    let row = table.lines().nth(1).unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.starts_with(e["receipt"].as_str().unwrap())
            && row.contains("A-1\u{FFFD}[31m\u{FFFD}")
            && row.contains("Shop")
            && row.ends_with("  1  2.00 EUR"),
        "{table}"
    );
    let csv = stdout_of(&friend, &["earnings", "--seller", &s_key, "--csv"]);
    printable_only("earnings --csv", &csv);
    let rows = parse_csv(&csv);
    assert_eq!(
        rows[0],
        [
            "receipt",
            "order",
            "offer",
            "title",
            "seller",
            "seller_name",
            "hop",
            "currency",
            "amount",
            "share"
        ]
    );
    assert_eq!(
        rows[1][1..],
        [
            "A-1\u{FFFD}[31m\u{FFFD}",
            oid,
            "Record \u{FFFD}[2J\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}gpj.exe",
            &s_key,
            "Shop",
            "1",
            "EUR",
            "20.00",
            "2.00"
        ]
    );
    assert_eq!(
        parse_csv(&stdout_of(
            &friend,
            &["earnings", "--seller", &f_key, "--csv"]
        ))
        .len(),
        1,
        "no sales in the friend's own market"
    );
    assert_eq!(
        friend.json(&["earnings", "--limit", "0"]),
        serde_json::json!({"earnings": []})
    );
    assert!(seller.json(&["earnings"])["earnings"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// Starts `passalong run` on `dir` with its stderr on `stderr` (the helper's goes to a file);
/// waits until its API answers.
fn start_with_stderr(dir: &Path, stderr: Stdio) -> Daemon {
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["run", "--api", "127.0.0.1:0", "--no-mdns", "--listen"])
        .arg("/ip4/127.0.0.1/tcp/0")
        .env_remove("PASSALONG_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn passalong run");
    let mut d = Daemon {
        dir: dir.to_path_buf(),
        child: Some(child),
        args: Vec::new(),
        netns: None,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(dir.join("api.addr").exists() && d.cli(&["status"]).status.success()) {
        if let Some(Ok(Some(status))) = d.child.as_mut().map(std::process::Child::try_wait) {
            panic!("the daemon exited early with {status}");
        }
        assert!(std::time::Instant::now() < deadline, "no API within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    d
}

/// Its log on a full disk (`/dev/full` answers every write with ENOSPC) costs a daemon
/// nothing: it starts, its network runs, and every write through the API is stored. Before,
/// the log's failed write panicked: the daemon died at its first line.
#[test]
fn a_daemon_whose_log_cannot_be_written_keeps_serving_and_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let d = start_with_stderr(&tmp.path().join("n"), Stdio::from(full));
    for i in 0..5 {
        let v = publish_offer(&d, &format!("offer {i}"));
        assert!(v["id"].is_string(), "{v}");
    }
    // A refused write logs too; the next one still works.
    let bad = d.cli(&["refund", &"00".repeat(32)]);
    assert_eq!(bad.status.code(), Some(1));
    publish_offer(&d, "after a refused write");
    let offers = d.json(&["offer", "list"]);
    assert_eq!(
        offers["offers"].as_array().map(Vec::len),
        Some(6),
        "{offers}"
    );
    let status = d.json(&["status"]);
    assert!(status["network"]["peer_id"].is_string(), "{status}");
}

/// A daemon on a fresh data dir whose config.toml ends with `extra` (`key = value` lines).
fn daemon_with_config(dir: &Path, extra: &str) -> Daemon {
    assert!(cli_in(dir, &["init"]).status.success());
    let mut config = std::fs::read_to_string(dir.join("config.toml")).expect("init wrote it");
    for line in extra.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        config = config
            .lines()
            .filter(|l| !l.trim_start().starts_with(key))
            .map(|l| format!("{l}\n"))
            .collect();
        config.push_str(line);
        config.push('\n');
    }
    std::fs::write(dir.join("config.toml"), config).expect("write config.toml");
    Daemon::start(dir)
}

/// Opens a connection to `d`'s API and sends half a request line (a slowloris client).
fn half_a_request(d: &Daemon) -> std::net::TcpStream {
    use std::io::Write;
    let addr = std::fs::read_to_string(d.dir.join("api.addr")).expect("api.addr");
    let mut s = std::net::TcpStream::connect(addr.trim()).expect("connect to the API");
    s.write_all(b"GET /v1/sta")
        .expect("send half a request line");
    s
}

/// A client that never finishes its request's head is cut off after
/// `http_header_timeout_ms`, while the API goes on answering others.
#[test]
fn a_client_that_never_sends_its_request_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let d = daemon_with_config(&tmp.path().join("n"), "http_header_timeout_ms = 1000");
    let slow = half_a_request(&d);
    let idle = std::net::TcpStream::connect(
        std::fs::read_to_string(d.dir.join("api.addr"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert!(d.cli(&["status"]).status.success());
    let start = std::time::Instant::now();
    for mut s in [slow, idle] {
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut rest = Vec::new();
        // The server closes it: end of stream (after an error answer, if any) or a reset.
        let _ = s.read_to_end(&mut rest);
    }
    let waited = start.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "the slow connections were closed after {waited:?}"
    );
}

/// SIGTERM stops a daemon within `shutdown_deadline_ms` even while a client holds a request
/// open (before, the stop waited for every connection, for ever).
#[test]
fn a_stop_does_not_wait_for_a_slow_client_past_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = daemon_with_config(
        &tmp.path().join("n"),
        "http_header_timeout_ms = 600000\nshutdown_deadline_ms = 1000",
    );
    let _slow = half_a_request(&d);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut child = d.child.take().unwrap();
    let start = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not stop within 15 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(8),
        "stopped after {:?}",
        start.elapsed()
    );
    assert!(!d.dir.join("api.addr").exists());
}

/// A data dir prepared by someone else is refused before anything in it is used: a key or
/// token others can read, a directory or config others can write (a planted token or
/// `api.addr`), each with the `chmod` to run; and the token goes to no address but loopback.
#[test]
fn a_data_dir_others_can_read_or_change_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    assert!(cli_in(&dir, &["init"]).status.success());
    let chmod = |f: &Path, mode: u32| {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap()
    };

    chmod(&dir.join("identity.key"), 0o644);
    for args in [&["id"][..], &["run", "--offline", "--api", "127.0.0.1:0"]] {
        let out = cli_in(&dir, args);
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            last.contains("identity.key")
                && last.contains("644")
                && last.contains(&format!("chmod 600 {}", dir.join("identity.key").display())),
            "{args:?}: {last}"
        );
    }
    assert!(!dir.join("api.addr").exists(), "run did not start");
    chmod(&dir.join("identity.key"), 0o600);

    // A planted token, readable by all, in a directory others can write.
    std::fs::write(dir.join("api.addr"), "127.0.0.1:9\n").unwrap();
    chmod(&dir.join("api-token"), 0o644);
    let err = one_line_error(&cli_in(&dir, &["status"]));
    assert!(
        err.contains("api-token") && err.contains("chmod 600"),
        "{err}"
    );
    chmod(&dir.join("api-token"), 0o600);
    chmod(&dir, 0o777);
    let err = one_line_error(&cli_in(&dir, &["status"]));
    assert!(
        err.contains(&format!("chmod go-w {}", dir.display())),
        "{err}"
    );
    chmod(&dir, 0o700);
    chmod(&dir.join("config.toml"), 0o666);
    let err = run_error(&cli_in(&dir, &["run", "--offline", "--api", "127.0.0.1:0"]));
    assert!(
        err.contains("config.toml") && err.contains("chmod go-w"),
        "{err}"
    );
    chmod(&dir.join("config.toml"), 0o644);

    // The token is sent only to loopback: an api.addr naming another host is refused at once.
    std::fs::write(dir.join("api.addr"), "192.0.2.1:7423\n").unwrap();
    let start = std::time::Instant::now();
    let err = one_line_error(&cli_in(
        &dir,
        &[
            "offer",
            "publish",
            "--title",
            "x",
            "--price",
            "1",
            "--currency",
            "EUR",
            "--pool-bps",
            "1",
            "--rule",
            "direct",
        ],
    ));
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(3));
    std::fs::remove_file(dir.join("api.addr")).unwrap();

    // Owned by another user (only root can make one here).
    if std::fs::metadata(tmp.path()).unwrap().uid() == 0 {
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let err = one_line_error(&cli_in(&dir, &["id"]));
        assert!(err.contains("owned by user 65534"), "{err}");
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    }
    assert!(cli_in(&dir, &["id"]).status.success());
}

/// A remote seller's title with an escape sequence, NUL, a line break and a right-to-left
/// override (published through the API, which takes what argv cannot carry) reaches another
/// node by import; its `offer list` shows none of them, while `--json` keeps the title as
/// signed.
#[test]
fn a_remote_sellers_hostile_title_is_printed_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let seller = Daemon::start(&tmp.path().join("seller"));
    let me = Daemon::start(&tmp.path().join("me"));
    let title = "Shoes\u{1b}[31m red\0 nul\nfake line\u{202E}gpj.exe";
    let (base, token) = api_of(&seller);
    let published: serde_json::Value = ureq::post(&format!("{base}/v1/offers"))
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(
            serde_json::json!({"title": title, "price_minor": 100, "currency": "EUR",
            "pool_bps": 1000, "rule": "equal"}),
        )
        .expect("POST /v1/offers")
        .into_json()
        .unwrap();
    assert!(published["id"].is_string(), "{published}");
    let key = seller.public_key();
    let bundle = tmp.path().join("market.json");
    seller.json(&[
        "export",
        "--seller",
        &key,
        "--out",
        bundle.to_str().unwrap(),
    ]);
    me.json(&["import", bundle.to_str().unwrap()]);

    let list = stdout_of(&me, &["offer", "list", "--seller", &key]);
    for bad in ['\u{1b}', '\0', '\u{202E}'] {
        assert!(!list.contains(bad), "{:04X} in {list:?}", bad as u32);
    }
    assert!(!list.contains("\nfake line"), "{list:?}");
    assert!(
        list.contains("Shoes\u{FFFD}[31m red\u{FFFD} nul"),
        "{list:?}"
    );
    assert_eq!(list.lines().count(), 2, "a header and one offer: {list:?}");
    let raw = me
        .cli(&["offer", "list", "--seller", &key, "--json"])
        .stdout;
    let text = String::from_utf8(raw).unwrap();
    assert!(text.contains(r"\u001b[31m") && text.contains(r"\u0000") && text.contains(r"\n"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["offers"][0]["title"], title);
}

#[test]
fn a_connector_founds_a_community_and_invites_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_with(&tmp.path().join("n"), &["--offline"]);
    let err = one_line_error(&d.cli(&["community", "show"]));
    assert!(err.contains("community create --name"), "{err}");
    let err = one_line_error(&d.cli(&["community", "invite"]));
    assert!(err.contains("runs no community"), "{err}");
    let err = one_line_error(&d.cli(&["community", "create", "--name", ""]));
    assert!(err.contains("1 to 64 bytes"), "{err}");

    let c = d.json(&["community", "create", "--name", "Riverside"]);
    assert_eq!(c["name"], "Riverside");
    assert_eq!(c["connector"], d.public_key().as_str());
    let err = one_line_error(&d.cli(&["community", "create", "--name", "Other"]));
    assert!(
        err.contains("Riverside") && err.contains("already"),
        "{err}"
    );
    assert_eq!(d.json(&["community", "show"]), c);
    let text = stdout_of(&d, &["community", "show"]);
    assert!(text.contains(c["id"].as_str().unwrap()) && text.contains("Riverside"));
    assert!(text.contains("0 hosted"), "{text}");

    let before = now_ms();
    let inv = d.json(&[
        "community",
        "invite",
        "--expires",
        "2d",
        "--note",
        "for Anna",
    ]);
    let url = inv["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/join/inv1."),
        "{url}"
    );
    let expires = inv["expires_ms"].as_u64().unwrap();
    assert!(expires >= before + 2 * 86_400_000 && expires < now_ms() + 2 * 86_400_000 + 1);
    let text = stdout_of(&d, &["community", "invite"]);
    assert!(
        text.lines().next().unwrap().contains("/join/inv1."),
        "{text}"
    );
    assert!(text.contains("shown only now"), "{text}");
    let id = inv["id"].as_str().unwrap();

    let list = d.json(&["community", "invites"]);
    let invites = list["invites"].as_array().unwrap();
    assert_eq!(invites.len(), 2);
    assert_eq!(
        (invites[0]["id"].as_str(), invites[0]["state"].as_str()),
        (Some(id), Some("open"))
    );
    let token = inv["token"].as_str().unwrap();
    assert!(
        !list.to_string().contains(&token[5..]),
        "no token in the list"
    );
    let text = stdout_of(&d, &["community", "invites"]);
    assert!(text.contains(id) && text.contains("for Anna") && text.contains("open"));

    assert_eq!(d.json(&["community", "revoke", id])["revoked"], true);
    let err = one_line_error(&d.cli(&["community", "revoke", "0badc0de"]));
    assert!(err.contains("no invite 0badc0de"), "{err}");
    let err = one_line_error(&d.cli(&["community", "revoke", "nope"]));
    assert!(err.contains("8 hex digits"), "{err}");
    let usage = d.cli(&["community", "invite", "--expires", "3w"]);
    assert_eq!(usage.status.code(), Some(2));

    // A restart keeps the community and its invites, and warns that members cannot reach
    // links to the loopback address.
    d.stop();
    d.restart();
    assert_eq!(d.json(&["community", "show"])["id"], c["id"]);
    let list = d.json(&["community", "invites"]);
    assert_eq!(list["invites"][0]["state"], "revoked");
    assert_eq!(list["invites"][1]["state"], "open");
    let log = std::fs::read_to_string(d.dir.with_extension("log")).unwrap();
    assert!(log.contains("public_url is unset"), "{log}");
}

#[test]
fn a_connector_lists_and_removes_members_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(&tmp.path().join("n"), &["--offline"]);
    let err = one_line_error(&d.cli(&["community", "members"]));
    assert!(err.contains("runs no community"), "{err}");
    d.json(&["community", "create", "--name", "Riverside"]);
    let inv = d.json(&["community", "invite"]);
    join_hosted(
        inv["url"].as_str().unwrap(),
        "anna",
        "correct horse battery",
    );

    let list = d.json(&["community", "members"]);
    assert_eq!(
        (list["total"].as_u64(), list["admitted"].as_u64()),
        (Some(1), Some(1))
    );
    let anna = &list["members"][0];
    assert_eq!(anna["login"], "anna");
    assert_eq!(anna["hosted"], true);
    assert_eq!(anna["status"], "admitted");
    assert_eq!(anna["referrals"], 0);
    let key = anna["key"].as_str().unwrap().to_string();
    let text = stdout_of(&d, &["community", "members"]);
    for shown in [
        key.as_str(),
        "anna",
        "hosted",
        "admitted",
        "1 members, 1 admitted",
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
    let e = d.json(&["community", "earnings"]);
    assert_eq!(e["connector"], d.public_key().as_str());
    assert_eq!(e["markets"], serde_json::json!([]));
    assert!(stdout_of(&d, &["community", "earnings"]).contains("in all: -"));

    let removed = d.json(&["community", "remove", &key]);
    assert_eq!(removed["status"], "removed");
    assert_eq!(removed["member"], key.as_str());
    assert_eq!(removed["ends"].as_array().unwrap().len(), 1);
    assert_eq!(removed["sessions_ended"], 1, "her session from the join");
    let list = d.json(&["community", "members"]);
    assert_eq!(list["members"][0]["status"], "removed");
    assert_eq!(list["admitted"], 0);
    let err = one_line_error(&d.cli(&["community", "remove", &key]));
    assert!(err.contains("no longer admitted"), "{err}");
    let err = one_line_error(&d.cli(&["community", "remove", &"7".repeat(64)]));
    assert!(err.contains("no member"), "{err}");
    let err = one_line_error(&d.cli(&["community", "remove", "nope"]));
    assert!(err.contains("64 hex digits"), "{err}");
    assert_eq!(d.cli(&["community", "remove"]).status.code(), Some(2));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}
