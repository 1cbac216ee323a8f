//! Contacts: local names for keys, shown everywhere a key would be.

use axum::extract::State;
use axum::response::Redirect;
use axum::Form;
use maud::{html, Markup};
use passalong_protocol::PublicKey;
use serde::Deserialize;

use super::{blocking, names};
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::WebState;

/// `GET /contacts`
pub async fn page(State(s): State<WebState>, me: SignedIn) -> Result<Markup, PageError> {
    let names = names(&s, me.me()).await?;
    Ok(layout::page(
        &me,
        &names,
        "/contacts",
        "Contacts",
        html! {
            h1 { "Contacts" }
            p.muted { "Names you give keys here stay on this node: they are never sent to anyone." }
            section.card {
                @if names.is_empty() { p.muted { "No contacts yet." } }
                @else { div.scroll { table {
                    thead { tr { th { "Name" } th { "Key" } th {} } }
                    tbody { @for (k, n) in names.iter() { tr {
                        td { (n) }
                        td { code.hex { (k.to_hex()) } }
                        td { form method="post" action="/contacts/remove" {
                            (layout::csrf(&me))
                            input type="hidden" name="key" value=(k.to_hex());
                            button.link type="submit" { "Remove" }
                        } }
                    } } }
                } } }
            }
            form.card method="post" action="/contacts" {
                h2 { "Add a contact" }
                (layout::csrf(&me))
                label for="name" { "Name" } input #name name="name" required maxlength="64";
                label for="key" { "Public key (64 hex digits)" } input #key name="key" required;
                button type="submit" { "Save" }
            }
        },
    ))
}

/// The add form.
#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    key: String,
    name: String,
}

/// `POST /contacts`
pub async fn add(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<AddForm>,
) -> Result<Redirect, PageError> {
    me.check_csrf(&f.csrf)?;
    let key = PublicKey::from_hex(f.key.trim())
        .map_err(|_| PageError::bad("Public key: expected 64 hex digits"))?;
    let (c, owner) = (s.api.contacts.clone(), me.me());
    blocking(move || Ok(c.set(&owner, key, &f.name)?)).await?;
    Ok(Redirect::to("/contacts"))
}

/// The remove form.
#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    key: String,
}

/// `POST /contacts/remove`
pub async fn remove(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<RemoveForm>,
) -> Result<Redirect, PageError> {
    me.check_csrf(&f.csrf)?;
    let key = PublicKey::from_hex(f.key.trim())
        .map_err(|_| PageError::bad("Public key: expected 64 hex digits"))?;
    let (c, owner) = (s.api.contacts.clone(), me.me());
    blocking(move || Ok(c.remove(&owner, &key)?)).await?;
    Ok(Redirect::to("/contacts"))
}
