//! The CLI as scripts see it: exit 0 on success, 1 on an error with one line on stderr that
//! says what to do, 2 on a usage error; secrets are 0600; bad input of every kind is refused
//! clearly and changes nothing.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

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
    ]);
    let link = offer["link"].as_str().unwrap();
    let before = d.json(&["ledger"]);

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
