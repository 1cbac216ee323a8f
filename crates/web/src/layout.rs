//! The page shell and the small pieces every page uses: keys shown by contact name (the hex
//! one click away), amounts in major units, times, and the error page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use passalong_api::contacts::Names;
use passalong_protocol::{Currency, Id, PublicKey};

use crate::auth::SignedIn;
use crate::session::Role;

/// The sections of the dashboard, in the order of the menu: (path, label).
pub const SECTIONS: [(&str, &str); 9] = [
    ("/", "Home"),
    ("/offers", "Offers"),
    ("/pass", "Pass along"),
    ("/ledger", "Ledger"),
    ("/disputes", "Disputes"),
    ("/network", "Network"),
    ("/contacts", "Contacts"),
    ("/community", "Community"),
    ("/account", "Account"),
];

/// The sections only the node's operator sees (a hosted member acts only as herself).
pub const OPERATOR_SECTIONS: [&str; 1] = ["/community"];

/// The sections only a hosted member sees (her account on the community node).
pub const MEMBER_SECTIONS: [&str; 1] = ["/account"];

fn head(title: &str) -> Markup {
    html! {
        (DOCTYPE)
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        title { (title) " · Passalong" }
        link rel="stylesheet" href=(crate::assets::STYLE_PATH);
        link rel="icon" href="data:,";
        script src=(crate::assets::SCRIPT_PATH) defer {}
    }
}

/// A dashboard page: menu, sign-out button and `body`.
pub fn page(me: &SignedIn, names: &Names, current: &str, title: &str, body: Markup) -> Markup {
    html! {
        (head(title))
        header.top {
            a.brand href="/" { "Passalong" }
            nav {
                @for (path, label) in SECTIONS {
                    @if me.session.role != Role::Operator && OPERATOR_SECTIONS.contains(&path) {
                    } @else if me.session.role != Role::Member && MEMBER_SECTIONS.contains(&path) {
                    } @else if path == current {
                        a href=(path) aria-current="page" { (label) }
                    } @else {
                        a href=(path) { (label) }
                    }
                }
            }
            form.signout method="post" action="/signout" {
                input type="hidden" name="csrf" value=(me.session.csrf_hex());
                span.me { "Signed in as " (key(names, &me.me())) }
                button.link type="submit" { "Sign out" }
            }
        }
        main {
            @if me.read_only() {
                p.error #read-only role="status" { (crate::auth::READ_ONLY) " See " a href="/account" { "Account" } "." }
            }
            (body)
        }
    }
}

/// A page without the menu (sign-in, public share pages, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (head(title))
        main.narrow { (body) }
    }
}

/// A key: its contact name if it has one, else its first and last hex digits; the full hex is
/// one click away.
pub fn key(names: &Names, k: &PublicKey) -> Markup {
    let hex = k.to_hex();
    let label = names
        .get(k)
        .map(|n| passalong_api::text::printable(n).into_owned())
        .unwrap_or_else(|| format!("{}…{}", &hex[..8], &hex[56..]));
    html! {
        details.key {
            summary { (label) }
            code.hex { (hex) }
        }
    }
}

/// An id shortened for tables, with the full hex as its title.
pub fn short_id(id: &Id) -> Markup {
    let hex = id.to_hex();
    html! { code title=(hex) { (hex[..12]) "…" } }
}

/// An amount in major units with its currency: `12.34 EUR`.
pub fn money(currency: Currency, minor: i128) -> Markup {
    html! { span.money { (currency.major(minor)) " " abbr { (currency.as_str()) } } }
}

/// A wait, rounded up, in the largest whole unit that fits: `1 second`, `3 minutes`, `2 hours`.
pub fn duration(ms: u64) -> String {
    let secs = ms.div_ceil(1000).max(1);
    let (n, unit) = if secs < 120 {
        (secs, "second")
    } else if secs < 2 * 3600 {
        (secs.div_ceil(60), "minute")
    } else {
        (secs.div_ceil(3600), "hour")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A time, as UTC (`2026-12-04 14:05 UTC`), without a clock library.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

/// A button that copies `text` (the script adds the behaviour; without it the text is still
/// there to select).
pub fn copy_button(text: &str) -> Markup {
    html! { button.copy type="button" data-copy=(text) { "Copy" } }
}

/// The hidden CSRF field of a form.
pub fn csrf(me: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(me.session.csrf_hex()); }
}

/// Raw, already safe markup (an SVG the QR crate drew).
pub fn trusted(svg: String) -> Markup {
    PreEscaped(svg)
}

/// An error shown as a page, with a status.
#[derive(Debug)]
pub struct PageError {
    /// The status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl PageError {
    /// An error with a status and a message for the user.
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    /// 400: the form or link was wrong.
    pub fn bad(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<passalong_api::ApiError> for PageError {
    fn from(e: passalong_api::ApiError) -> Self {
        PageError::new(e.status, e.message)
    }
}

impl From<passalong_store::StoreError> for PageError {
    fn from(e: passalong_store::StoreError) -> Self {
        passalong_api::ApiError::from(e).into()
    }
}

impl From<passalong_api::contacts::ContactsError> for PageError {
    fn from(e: passalong_api::contacts::ContactsError) -> Self {
        passalong_api::ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = bare(
            "Error",
            html! {
                h1 { "Something went wrong" }
                p.error role="alert" { (self.message) }
                p { a href="/" { "Back to the dashboard" } }
            },
        );
        (self.status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_in_their_largest_unit() {
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(1_500), "2 seconds");
        assert_eq!(duration(119_000), "119 seconds");
        assert_eq!(duration(15 * 60_000), "15 minutes");
        assert_eq!(duration(3_600_000), "60 minutes");
        assert_eq!(duration(2 * 3_600_000 + 1), "3 hours");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(1_767_225_600_000), "2026-01-01 00:00 UTC");
        assert_eq!(time(1_709_210_096_000), "2024-02-29 12:34 UTC");
    }

    #[test]
    fn keys_show_names_and_escape_them() {
        let k = PublicKey([0xab; 32]);
        let mut names = Names::new();
        assert!(key(&names, &k).0.contains("abababab…abababab"));
        names.insert(k, "<Anna & co>".into());
        let m = key(&names, &k).0;
        assert!(m.contains("&lt;Anna &amp; co&gt;"), "{m}");
        assert!(m.contains(&k.to_hex()));
    }
}
