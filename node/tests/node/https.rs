//! The CLI reaches a community node over HTTPS, as it is run: behind a TLS-terminating reverse
//! proxy (`docs/operator-guide.md`). Here the proxy is this test's (rustls, a certificate for
//! localhost signed by a root made for the test) in front of a real community node whose
//! `public_url` is the proxy's https address, so its invite links are https.
//!
//! With `SSL_CERT_FILE` naming the test root, `community join` of such a link works (her
//! referrals then name the community) and `member export-key --node https://…` writes a
//! hosted member's key file. Without it, the Mozilla roots alone do not trust the node: the
//! join fails saying why and what to do, and writes nothing (the invite still works after).
//! An `SSL_CERT_FILE` that names no file is an error that names it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

use crate::common::*;
use crate::key_export::PASSWORD;
use crate::own_join::community_of;

/// A test root (PEM) and the proxy's TLS config: a certificate for localhost and 127.0.0.1
/// that the root signs.
fn test_pki() -> (String, Arc<ServerConfig>) {
    let root_key = KeyPair::generate().expect("a key");
    let mut root = CertificateParams::new(Vec::<String>::new()).expect("params");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.distinguished_name
        .push(DnType::CommonName, "Passalong test root");
    let root = root.self_signed(&root_key).expect("the root");
    let key = KeyPair::generate().expect("a key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &root, &root_key).expect("the leaf");
    let server =
        ServerConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("the server config");
    (root.pem(), Arc::new(server))
}

/// The reverse proxy: each connection accepted on `listener` (a thread each) is decrypted and
/// relayed to `node`, the node's answers encrypted back.
fn serve_tls(listener: TcpListener, node: SocketAddr, config: Arc<ServerConfig>) {
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let config = config.clone();
            thread::spawn(move || {
                let _ = relay(client, node, config);
            });
        }
    });
}

fn relay(client: TcpStream, node: SocketAddr, config: Arc<ServerConfig>) -> io::Result<()> {
    let tls = Arc::new(Mutex::new(
        ServerConnection::new(config).map_err(io::Error::other)?,
    ));
    let upstream = TcpStream::connect(node)?;
    // The node's answers, encrypted, to the client (and close_notify when it closes).
    {
        let tls = tls.clone();
        let mut from = upstream.try_clone()?;
        let mut to = client.try_clone()?;
        thread::spawn(move || -> io::Result<()> {
            let mut buf = vec![0; 16 * 1024];
            loop {
                let n = from.read(&mut buf).unwrap_or(0);
                let mut tls = tls.lock().expect("not poisoned");
                if n == 0 {
                    tls.send_close_notify();
                } else {
                    tls.writer().write_all(&buf[..n])?;
                }
                while tls.wants_write() {
                    tls.write_tls(&mut to)?;
                }
                if n == 0 {
                    return to.shutdown(Shutdown::Write);
                }
            }
        });
    }
    // The client's handshake and requests; the requests, decrypted, to the node.
    let requests = (|| -> io::Result<()> {
        let (mut from, mut back, mut to) = (client.try_clone()?, client.try_clone()?, &upstream);
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let mut plain = Vec::new();
            {
                let mut tls = tls.lock().expect("not poisoned");
                let mut input = &buf[..n];
                while !input.is_empty() {
                    tls.read_tls(&mut input)?;
                    let state = tls.process_new_packets();
                    // The handshake's answers, or the alert that ends it.
                    while tls.wants_write() {
                        tls.write_tls(&mut back)?;
                    }
                    state.map_err(io::Error::other)?;
                    // Up to what has arrived (then WouldBlock), or the client's close_notify.
                    let _ = tls.reader().read_to_end(&mut plain);
                }
            }
            to.write_all(&plain)?;
        }
    })();
    // The node sees the end too, and so the answering thread ends.
    let _ = upstream.shutdown(if requests.is_ok() {
        Shutdown::Write
    } else {
        Shutdown::Both
    });
    requests
}

/// `passalong --data-dir DIR args…` with `SSL_CERT_FILE` set to `roots` (`None`: unset) and a
/// hosted member's password in the environment.
fn cli_tls(dir: &Path, args: &[&str], roots: Option<&Path>) -> Output {
    let mut c = Command::new(BIN);
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PASSALONG_DATA_DIR")
        .env("PASSALONG_KEY_PASSWORD", PASSWORD);
    match roots {
        Some(file) => c.env("SSL_CERT_FILE", file),
        None => c.env_remove("SSL_CERT_FILE"),
    };
    c.output().expect("run passalong")
}

/// The one-line error of a command that failed with exit code 1.
fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn succeeded(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document on stdout")
}

#[test]
fn the_cli_joins_and_exports_keys_over_https_trusting_ssl_cert_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (root_pem, server) = test_pki();
    let roots = tmp.path().join("test-root.pem");
    std::fs::write(&roots, root_pem).unwrap();
    // The proxy's port is held from now on: the node's public_url names it.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let public = format!("https://localhost:{}", proxy.local_addr().unwrap().port());

    // K: a community node (the cheap argon2 cost for members' passwords) reached by its
    // members only through the proxy.
    let k_dir = tmp.path().join("k");
    init_cheap_community(&k_dir);
    let k = Daemon::start_with(&k_dir, &["--public-url", &public]);
    let api: SocketAddr = std::fs::read_to_string(k_dir.join("api.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    serve_tls(proxy, api, server);
    let community = k.json(&["community", "create", "--name", "Riverside"]);
    let url = k.json(&["community", "invite"])["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with(&format!("{public}/join/")), "{url}");

    // M, a node of her own, joins with the link. Trusting the Mozilla roots only, it fails
    // saying why and what to do, and writes nothing.
    let m = Daemon::start_with(&tmp.path().join("m"), &["--offline"]);
    let refused = failed(&cli_tls(&m.dir, &["community", "join", &url], None));
    assert!(
        refused.contains(&format!("cannot reach {public}"))
            && refused.contains("invalid peer certificate: UnknownIssuer")
            && refused.contains("SSL_CERT_FILE")
            && !refused.contains("inv1."),
        "{refused}"
    );
    assert!(!m.dir.join("membership.json").exists());
    // An SSL_CERT_FILE that is not there is said as such.
    let missing = tmp.path().join("no-such-roots.pem");
    let refused = failed(&cli_tls(
        &m.dir,
        &["community", "join", &url],
        Some(&missing),
    ));
    assert!(
        refused.contains("SSL_CERT_FILE=") && refused.contains("no-such-roots.pem"),
        "{refused}"
    );
    assert!(!m.dir.join("membership.json").exists());

    // With the test root trusted, the same invite (unused so far) works.
    let joined = succeeded(&cli_tls(
        &m.dir,
        &["community", "join", &url, "--json"],
        Some(&roots),
    ));
    assert_eq!(joined["community"], community["id"]);
    let offer = publish_offer(&k, "A lamp");
    let referred = m.json(&["refer", offer["link"].as_str().unwrap()]);
    assert_eq!(
        community_of(&m, referred["id"].as_str().unwrap()).as_deref(),
        community["id"].as_str(),
        "her referral names the community"
    );

    // A hosted member (joined on the node's own loopback address, as the form posts it)
    // exports her key through the proxy.
    let invite = k.json(&["community", "invite"])["url"]
        .as_str()
        .unwrap()
        .replace(&public, &format!("http://{api}"));
    join_hosted(&invite, "anna", PASSWORD);
    let key_file = tmp.path().join("anna.key");
    let export = |roots: Option<&Path>| {
        cli_tls(
            &m.dir,
            &[
                "member",
                "export-key",
                "--login",
                "anna",
                "--node",
                &public,
                "--out",
                key_file.to_str().unwrap(),
                "--json",
            ],
            roots,
        )
    };
    let refused = failed(&export(None));
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert!(!key_file.exists());
    let exported = succeeded(&export(Some(&roots)));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(file["public_key"], exported["public_key"]);
    assert_eq!(exported["login"], "anna");
}
