//! Talking to a *remote* node: a community node's public API, reached by the URL a person was
//! given (`passalong community join URL`, `passalong member export-key --node URL`).
//!
//! It has a home of its own because it is not the local client (`client.rs`): that one talks
//! plain http to this data dir's daemon on a loopback address, and must keep refusing any other.
//! A community node is run behind a TLS reverse proxy (`docs/operator-guide.md`), so its
//! links are `https://`: here URLs may be https or http, and what the CLI trusts is decided in
//! one place for every command that reaches such a node — the Mozilla roots (`webpki-roots`)
//! plus, when `SSL_CERT_FILE` is set (the OpenSSL convention), every certificate of that PEM
//! file (a private root, a test root). rustls with the ring provider, TLS 1.2 and 1.3; no
//! redirects are followed (a node that moved says so in the error instead).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use passalong_api::ErrorBody;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The environment variable naming a PEM file of roots trusted besides the Mozilla roots.
pub const CERT_FILE_VAR: &str = "SSL_CERT_FILE";

/// How long connecting to a remote node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `http[s]://HOST[:PORT]` without a trailing slash, from a URL a person typed or pasted.
pub fn remote_base(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| anyhow!("{url:?}: expected https://HOST[:PORT] (or http://)"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        bail!("{url:?}: expected https://HOST[:PORT] (or http://), no path");
    }
    Ok(url.to_string())
}

/// An HTTP client for the node at `base` (from [`remote_base`]): requests time out after
/// `timeout`, redirects are not followed, and an https node's certificate must chain to a root
/// this machine trusts (see the module's doc).
pub fn agent(base: &str, timeout: Duration) -> Result<ureq::Agent> {
    let mut builder = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(timeout)
        .redirects(0);
    if base.starts_with("https://") {
        let extra = std::env::var_os(CERT_FILE_VAR).filter(|v| !v.is_empty());
        builder = builder.tls_config(tls_config(extra.as_deref().map(Path::new))?);
    }
    Ok(builder.build())
}

/// The TLS client config: ring, TLS 1.2 and 1.3, the Mozilla roots plus those of `extra`.
/// (The provider is named: rustls has both ring and aws-lc-rs in this build, so it has no
/// default of its own.)
fn tls_config(extra: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let config =
        ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .context("setting up TLS")?
            .with_root_certificates(roots(extra)?)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The Mozilla roots, and every certificate of the PEM file `extra`. A file that cannot be
/// read or holds no usable certificate is an error (not a silent fallback to the Mozilla
/// roots alone, which would fail later with a less helpful message).
fn roots(extra: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(file) = extra else {
        return Ok(roots);
    };
    let named = || format!("{CERT_FILE_VAR}={}", file.display());
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| match e {
            rustls_pki_types::pem::Error::Io(e) => {
                anyhow!("{}: cannot read the file: {e}", named())
            }
            e => anyhow!("{}: not a PEM file of certificates: {e}", named()),
        })?;
    if certs.is_empty() {
        bail!(
            "{}: the file holds no certificate (-----BEGIN CERTIFICATE-----): name a PEM file of the roots to trust, or unset {CERT_FILE_VAR}",
            named()
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!(
            "{}: none of its {ignored} certificates is usable as a root",
            named()
        );
    }
    if ignored > 0 {
        eprintln!(
            "warning: {}: {ignored} of its certificates are not usable as roots and were left out",
            named()
        );
    }
    Ok(roots)
}

/// A JSON answer of a remote node, or its error's message.
pub fn call<T: serde::de::DeserializeOwned>(
    r: Result<ureq::Response, ureq::Error>,
    base: &str,
) -> Result<T> {
    match r {
        Ok(resp) => resp
            .into_json::<T>()
            .map_err(|e| anyhow!("{base} answered in a form this release does not read: {e}")),
        Err(ureq::Error::Status(code, resp)) => {
            let msg = resp
                .into_json::<ErrorBody>()
                .map_or_else(|_| "no message".to_string(), |b| b.error);
            Err(anyhow!("{msg} (HTTP {code})"))
        }
        Err(ureq::Error::Transport(t)) => Err(anyhow!("cannot reach {base}: {}", unreached(&t))),
    }
}

/// What went wrong on the way (without the request's URL, which may hold an invite's token),
/// with what to do about a certificate the CLI does not trust.
fn unreached(t: &ureq::Transport) -> String {
    let mut s = t.kind().to_string();
    if let Some(m) = t.message() {
        s = format!("{s}: {m}");
    }
    if let Some(e) = std::error::Error::source(t) {
        s = format!("{s}: {e}");
    }
    let hint = match tls_error(t) {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => Some(format!(
            "is the node's certificate signed by a root this machine trusts? set {CERT_FILE_VAR} to a PEM file of extra roots"
        )),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => Some("the certificate is for another name: use the host name of the node's public_url".into()),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => Some("the node's operator must renew its certificate".into()),
        _ => None,
    };
    match hint {
        Some(h) => format!("{s} ({h})"),
        None => s,
    }
}

/// The TLS error under a transport error, if it is one (rustls reports it inside an
/// `io::Error`).
fn tls_error(t: &ureq::Transport) -> Option<&rustls::Error> {
    let mut next = std::error::Error::source(t);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_nodes_are_https_or_http_urls() {
        assert_eq!(
            remote_base("http://127.0.0.1:7423/").unwrap(),
            "http://127.0.0.1:7423"
        );
        assert_eq!(
            remote_base(" https://k.example:8443 ").unwrap(),
            "https://k.example:8443"
        );
        assert_eq!(
            remote_base("https://k.example").unwrap(),
            "https://k.example"
        );
        for bad in [
            "k.example",
            "http://",
            "https://",
            "http://k.example/join/x",
            "https://k.example/v1",
            "https://anna@k.example",
            "ftp://k.example",
        ] {
            assert!(remote_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extra_roots_come_from_a_pem_file_or_fail_naming_it() {
        let mozilla = webpki_roots::TLS_SERVER_ROOTS.len();
        assert_eq!(roots(None).unwrap().len(), mozilla);

        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).unwrap();
        let pem = dir.path().join("roots.pem");
        std::fs::write(&pem, root.pem()).unwrap();
        assert_eq!(roots(Some(&pem)).unwrap().len(), mozilla + 1);
        tls_config(Some(&pem)).unwrap();

        let missing = dir.path().join("missing.pem");
        let err = format!("{:#}", roots(Some(&missing)).unwrap_err());
        assert!(
            err.contains("SSL_CERT_FILE=")
                && err.contains("missing.pem")
                && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let err = format!("{:#}", roots(Some(&empty)).unwrap_err());
        assert!(
            err.contains("empty.pem") && err.contains("no certificate"),
            "{err}"
        );
    }
}
