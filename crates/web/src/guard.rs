//! Browser-facing defences around every route, the JSON API's included.
//!
//! - **Host**: only a loopback name or the configured public URL's host. A page on another
//!   site that resolves its own name to 127.0.0.1 (DNS rebinding) reaches the node with its own
//!   name in `Host`, and is refused before any handler runs.
//! - **Origin** on writes: a browser names the page that sent a request; a write from another
//!   origin is refused. Clients that are not browsers (the CLI, a shop's checkout) send no
//!   `Origin` and are checked by the token as before; dashboard forms also carry a CSRF token.
//! - **Headers**: a Content-Security-Policy without inline script or style, no framing, no
//!   referrer (a share page's URL carries a token that is the user's to pass on), no sniffing.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use passalong_api::ApiError;

/// The policy every response carries: scripts, styles and images from this node only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Which `Host` names the node answers to.
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    /// The public URL's host (lower case, no port), when one is configured.
    pub public: Option<String>,
}

impl Hosts {
    /// Whether `host` (a `Host` header's value: name, optional port) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        is_loopback(&name) || self.public.as_deref() == Some(name.as_str())
    }
}

/// The name part of `host[:port]` (IPv6 literals keep their brackets off).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse(message: impl Into<String>) -> Response {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: message.into(),
        reason: None,
    }
    .into_response()
}

/// Why a write from a browser is refused, if it is: its `Origin` is not this node as the
/// browser reached it, or the browser says it came from another site.
pub fn cross_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority.is_none() || authority != host {
            return Some(format!(
                "a write from origin {origin:?} is refused: only this node's own pages may write"
            ));
        }
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => None,
        Some(site) => Some(format!("a write from a {site} page is refused")),
    }
}

/// The middleware: checks `Host` (every request) and `Origin` (writes), then adds the
/// security headers to the response.
pub async fn guard(State(hosts): State<Hosts>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !hosts.allows(host) {
        return refuse(format!(
            "this node does not answer to host {host:?}: use 127.0.0.1, localhost or its public_url"
        ));
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        if let Some(why) = cross_origin(req.headers()) {
            return refuse(why);
        }
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_names_and_the_public_host_are_allowed() {
        let h = Hosts {
            public: Some("shop.example".into()),
        };
        for ok in [
            "127.0.0.1:7423",
            "127.0.0.1",
            "127.1.2.3:80",
            "localhost:7423",
            "LOCALHOST",
            "[::1]:7423",
            "shop.example",
            "shop.example:443",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7423",
            "",
            "10.0.0.1:7423",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "shop.example.evil",
            "[::2]:7423",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
        assert!(!Hosts::default().allows("shop.example"));
    }

    #[test]
    fn writes_from_other_origins_are_refused() {
        let host = ("host", "127.0.0.1:7423");
        assert_eq!(cross_origin(&headers(&[host])), None, "no Origin: the CLI");
        assert_eq!(
            cross_origin(&headers(&[host, ("origin", "http://127.0.0.1:7423")])),
            None
        );
        assert!(cross_origin(&headers(&[host, ("origin", "http://evil.example")])).is_some());
        assert!(cross_origin(&headers(&[host, ("origin", "http://127.0.0.1:9999")])).is_some());
        assert!(cross_origin(&headers(&[host, ("origin", "null")])).is_some());
        assert!(cross_origin(&headers(&[host, ("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_origin(&headers(&[host, ("sec-fetch-site", "same-site")])).is_some());
        assert_eq!(
            cross_origin(&headers(&[host, ("sec-fetch-site", "same-origin")])),
            None
        );
    }
}
