//! Passalong's browser face, served by the node at its API address beside the JSON API:
//!
//! - the **dashboard**, behind a sign-in: what I earned and am owed, my offers (with a publish
//!   form that previews each hop's share with the protocol's own payout code), passing a link
//!   along (my link, a copy button and a QR code), ledgers with CSV downloads and the
//!   settlement form, disputes, the network, contacts;
//! - the **public share page** `/l/<token>` a friend opens from a link, without signing in;
//! - on a community node, the connector's page `/community` (invites, members and their
//!   removal, activity, the connector's earnings), the **join page** `/join/<token>`, where an
//!   invited neighbour becomes a hosted member, signed in with her own key
//!   ([`auth::SignedIn::signer`]), and her `/account` (exporting her key, leaving the
//!   community). A member whose
//!   membership ended signs in read-only ([`auth::SignedIn::read_only`]).
//!
//! Pages are rendered on the server (maud, checked at compile time) and work without
//! JavaScript; one small script adds copy buttons. Nothing is loaded from elsewhere: the pages
//! work offline, under a Content-Security-Policy without inline script (see [`guard`]).
//!
//! Every dashboard handler acts as the identity of the request's session ([`auth::SignedIn`]),
//! never as "the node": a community node will sign many members in, each as themselves.
#![deny(missing_docs)]

pub mod assets;
pub mod auth;
pub mod guard;
pub mod layout;
pub mod pages;
pub mod qr;
pub mod session;

use axum::routing::{get, post};
use axum::Router;
use passalong_api::AppState;

/// What the pages share: the API's state (with the sign-in sessions) and the public address.
#[derive(Clone)]
pub struct WebState {
    /// The API's state (store, writer, identities, contacts, network, sessions).
    pub api: AppState,
    /// Cookies get `Secure` (the public URL is https).
    pub secure_cookies: bool,
}

/// Where the node is reached from outside, if anywhere.
#[derive(Clone, Debug, Default)]
pub struct PublicUrl {
    /// `https://shop.example` (no trailing slash), or `None` on a personal node.
    pub base: Option<String>,
}

impl PublicUrl {
    /// Parses the `public_url` setting: `http(s)://host[:port]` with nothing after it but an
    /// optional `/`.
    pub fn parse(url: &str) -> Result<PublicUrl, String> {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("public_url {url:?}: expected http://HOST or https://HOST"))?;
        if rest.is_empty()
            || rest.contains(['/', '?', '#', '@', ' '])
            || !rest.is_ascii()
            || rest.chars().any(|c| c.is_ascii_control())
        {
            return Err(format!(
                "public_url {url:?}: expected a scheme and a host (and port), no path"
            ));
        }
        Ok(PublicUrl {
            base: Some(url.to_string()),
        })
    }

    /// Its host name, lower case, without the port.
    pub fn host(&self) -> Option<String> {
        let rest = self
            .base
            .as_deref()?
            .split_once("://")
            .map_or("", |(_, r)| r);
        let name = if let Some(v6) = rest.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            rest.split(':').next().unwrap_or("")
        };
        Some(name.to_ascii_lowercase())
    }

    /// Whether it is https.
    pub fn is_https(&self) -> bool {
        self.base
            .as_deref()
            .is_some_and(|b| b.starts_with("https://"))
    }
}

/// The node's whole HTTP face: the JSON API, the dashboard and the share pages, behind the
/// browser defences.
pub fn app(mut api: AppState, public: &PublicUrl) -> Router {
    // Reached from outside, the API's private reads need credentials.
    api.public = public.base.is_some();
    let state = WebState {
        api: api.clone(),
        secure_cookies: public.is_https(),
    };
    let pages = Router::new()
        .route("/", get(pages::home::home))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route(
            auth::OPERATOR_PATH,
            get(auth::operator_page).post(auth::signin_operator),
        )
        .route("/signout", post(auth::signout))
        .route(
            "/offers",
            get(pages::offers::list).post(pages::offers::publish),
        )
        .route("/offers/preview", post(pages::offers::preview))
        .route("/offers/{id}", get(pages::offers::one))
        .route("/pass", get(pages::pass::page_get).post(pages::pass::refer))
        .route("/ledger", get(pages::ledger::index))
        .route("/ledger/{seller}", get(pages::ledger::one))
        .route("/ledger/{seller}/ledger.csv", get(pages::ledger::csv))
        .route(
            "/ledger/{seller}/payouts.csv",
            get(pages::ledger::payouts_csv_get),
        )
        .route("/settlements", post(pages::ledger::settle))
        .route("/disputes", get(pages::disputes::page))
        .route("/network", get(pages::network::page))
        .route(
            "/contacts",
            get(pages::contacts::page).post(pages::contacts::add),
        )
        .route("/contacts/remove", post(pages::contacts::remove))
        .route(
            "/community",
            get(pages::community::page).post(pages::community::found),
        )
        .route("/community/invites", post(pages::community::invite))
        .route("/community/invites/revoke", post(pages::community::revoke))
        .route("/community/members/remove", post(pages::community::remove))
        .route("/account", get(pages::account::page))
        .route("/account/leave", post(pages::account::leave))
        .route("/account/export-key", post(pages::account::export_key))
        .route("/l/{token}", get(pages::share::page))
        .route(
            "/join/{token}",
            get(pages::join::page).post(pages::join::join),
        )
        .route("/assets/{file}", get(assets::serve))
        .with_state(state);
    let hosts = guard::Hosts {
        public: public.host(),
    };
    passalong_api::router(api)
        .merge(pages)
        .layer(axum::middleware::from_fn_with_state(hosts, guard::guard))
}

/// Serves [`app`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    passalong_api::serve_app(
        listener,
        app,
        passalong_api::ServeLimits::default(),
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        let p = PublicUrl::parse("https://Shop.Example:8443/").unwrap();
        assert_eq!(p.base.as_deref(), Some("https://Shop.Example:8443"));
        assert_eq!(p.host().as_deref(), Some("shop.example"));
        assert!(p.is_https());
        assert_eq!(
            PublicUrl::parse("http://[::1]:7423")
                .unwrap()
                .host()
                .as_deref(),
            Some("::1")
        );
        for bad in [
            "shop.example",
            "ftp://shop.example",
            "https://",
            "https://shop.example/path",
            "https://a@shop.example",
            "https://shop.example?x",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PublicUrl::default().host(), None);
    }
}
