//! `passalong community …`: a connector founds the community this node runs, invites
//! neighbours to it, lists and removes its members and sees what it earned, through the
//! daemon's API (`/v1/community`).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use passalong_api::attestations::{Import, Imported};
use passalong_api::community::{
    CommunityInfo, ConnectorEarnings, Earned, InviteCreated, InviteList, MemberEnded, MemberList,
    NewCommunity, NewInvite, Revoked, MAX_MEMBERS_PAGE,
};
use passalong_api::join::{JoinInfo, JoinRequest, Joined, MembershipRequest, NewMembershipRequest};
use passalong_api::peers::{FollowBody, Following};
use passalong_api::text::printable;
use passalong_protocol::Id;
use passalong_protocol::PublicKey;
use passalong_web::layout::time;
use serde::Serialize;

use crate::cli::CommunityCommand;
use crate::client::{q, Client};
use crate::commands::Out;
use crate::datadir::DataDir;
use crate::display::{money, Align, Table};
use crate::remote;

/// Runs one `community` subcommand.
pub fn community(dir: &DataDir, out: Out, cmd: CommunityCommand) -> Result<()> {
    let client = Client::connect(dir)?;
    match cmd {
        CommunityCommand::Join { url } => join(dir, &client, out, &url)?,
        CommunityCommand::Create { name } => {
            let v: CommunityInfo = client.post("/v1/community", &NewCommunity { name })?;
            out.print(&v, |v| format!("founded {}\n{}", shown(v), invite_hint()));
        }
        CommunityCommand::Show => {
            let v: CommunityInfo = client.get("/v1/community")?;
            out.print(&v, shown);
        }
        CommunityCommand::Invite { expires, note } => {
            let v: InviteCreated = client.post(
                "/v1/community/invites",
                &NewInvite {
                    expires_in_ms: expires,
                    note,
                },
            )?;
            out.print(&v, |v| {
                format!(
                    "{}\ninvite {} works once, until {}; this link is shown only now (revoke with `passalong community revoke {}`)\ntoken {}",
                    v.url,
                    v.id,
                    time(v.expires_ms),
                    v.id,
                    v.token
                )
            });
        }
        CommunityCommand::Invites => {
            let v: InviteList = client.get_private("/v1/community/invites")?;
            out.print(&v, |v| {
                let mut t = Table::new(&[
                    ("id", Align::Left),
                    ("state", Align::Left),
                    ("created", Align::Left),
                    ("expires", Align::Left),
                    ("member", Align::Left),
                    ("note", Align::Left),
                ]);
                for i in &v.invites {
                    t.row([
                        i.id.clone(),
                        i.state.clone(),
                        time(i.created_ms),
                        time(i.expires_ms),
                        i.member.clone().unwrap_or_else(|| "-".into()),
                        printable(&i.note).into_owned(),
                    ]);
                }
                t.render()
            });
        }
        CommunityCommand::Revoke { id } => {
            let v: Revoked =
                client.post(&format!("/v1/community/invites/{}/revoke", q(&id)), &())?;
            out.print(&v, |v| format!("revoked invite {}", v.id));
        }
        CommunityCommand::Members => {
            let v = all_members(&client)?;
            out.print(&v, members_table);
        }
        CommunityCommand::Remove { key } => {
            let key = PublicKey::from_hex(key.trim()).map_err(|_| {
                anyhow::anyhow!(
                    "KEY: expected a member's key of 64 hex digits, as `passalong community members` lists it"
                )
            })?;
            let v: MemberEnded = client.post(
                &format!("/v1/community/members/{}/remove", key.to_hex()),
                &(),
            )?;
            out.print(&v, |v| {
                format!(
                    "removed member {} from {}: her referrals from then on pay the connector nothing; {} session{} ended",
                    v.member,
                    time(v.ends_at_ms),
                    v.sessions_ended,
                    if v.sessions_ended == 1 { "" } else { "s" }
                )
            });
        }
        CommunityCommand::Earnings => {
            let v: ConnectorEarnings = client.get_private("/v1/community/earnings")?;
            out.print(&v, earnings_table);
        }
    }
    Ok(())
}

/// Every member, page after page, as one list.
fn all_members(client: &Client) -> Result<MemberList> {
    let mut all: MemberList =
        client.get_private(&format!("/v1/community/members?limit={MAX_MEMBERS_PAGE}"))?;
    while all.members.len() < all.total {
        let next: MemberList = client.get_private(&format!(
            "/v1/community/members?offset={}&limit={MAX_MEMBERS_PAGE}",
            all.members.len()
        ))?;
        if next.members.is_empty() {
            break;
        }
        all.members.extend(next.members);
    }
    Ok(all)
}

/// Amounts in major units: `4.00 EUR, 1.50 USD`.
fn amounts(list: &[Earned]) -> String {
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(|e| money(e.earned_minor, &e.currency))
        .collect::<Vec<_>>()
        .join(", ")
}

fn members_table(v: &MemberList) -> String {
    let mut t = Table::new(&[
        ("key", Align::Left),
        ("login", Align::Left),
        ("node", Align::Left),
        ("since", Align::Left),
        ("status", Align::Left),
        ("last sign-in", Align::Left),
        ("referrals", Align::Right),
        ("hop earnings", Align::Right),
    ]);
    for m in &v.members {
        t.row([
            m.key.clone(),
            m.login.clone().unwrap_or_else(|| "-".into()),
            if m.hosted { "hosted" } else { "own" }.into(),
            time(m.since_ms),
            m.status.clone(),
            m.last_signin_ms.map_or_else(|| "-".into(), time),
            m.referrals.map_or_else(|| "-".into(), |n| n.to_string()),
            amounts(&m.earnings),
        ]);
    }
    format!(
        "{}\n{} members, {} admitted",
        t.render(),
        v.total,
        v.admitted
    )
}

fn earnings_table(v: &ConnectorEarnings) -> String {
    let mut t = Table::new(&[
        ("seller", Align::Left),
        ("currency", Align::Left),
        ("earned", Align::Right),
        ("refunded", Align::Right),
        ("settled", Align::Right),
        ("owed", Align::Right),
    ]);
    for m in &v.markets {
        t.row([
            m.seller.clone(),
            m.currency.clone(),
            money(m.earned, &m.currency),
            money(m.refunded, &m.currency),
            money(m.settled, &m.currency),
            money(m.owed, &m.currency),
        ]);
    }
    format!("{}\nin all: {}", t.render(), amounts(&v.totals))
}

fn shown(v: &CommunityInfo) -> String {
    format!(
        "community {}\nname       {}\nconnector  {}\nfounded    {}\ninvites    {} open\nmembers    {} hosted",
        v.id,
        printable(&v.name),
        v.connector,
        time(v.created_at_ms),
        v.open_invites,
        v.members
    )
}

fn invite_hint() -> &'static str {
    "invite a neighbour with `passalong community invite --note NAME`"
}

/// The community node's base URL and the invite's token in an invite link
/// (`https://HOST[:PORT]/join/<token>`, or `http://`).
fn invite_link(url: &str) -> Result<(String, String)> {
    let url = url.trim();
    let (base, token) = url
        .rsplit_once("/join/")
        .ok_or_else(|| anyhow!("{url:?}: expected an invite link, https://HOST/join/inv1.…"))?;
    let token = token.trim_end_matches('/');
    if token.is_empty() || token.contains(['/', '?', '#']) {
        bail!("{url:?}: expected an invite link, https://HOST/join/inv1.…");
    }
    // A link to the API's route works as well as the page's.
    let base = base.strip_suffix("/v1").unwrap_or(base);
    Ok((remote::remote_base(base)?, token.to_string()))
}

/// What `community join` did.
#[derive(Serialize)]
struct JoinedHere {
    community: String,
    name: String,
    connector: String,
    membership: String,
    relays: Vec<String>,
}

/// `passalong community join URL`: this node's own key joins the community of the invite.
fn join(dir: &DataDir, client: &Client, out: Out, url: &str) -> Result<()> {
    let (base, token) = invite_link(url)?;
    let agent = remote::agent(&base, Duration::from_secs(60))?;
    let path = format!("{base}/v1/join/{}", q(&token));
    let community = match agent.get(&path).call() {
        // Used: by this node's key, if it joined before but could not finish here (the
        // community node then answers the join with the Membership that admits it), or by
        // someone else (the join below is refused as this read would have been).
        Err(ureq::Error::Status(410, _)) => {
            let c: CommunityInfo =
                remote::call(agent.get(&format!("{base}/v1/community")).call(), &base)
                    .context("reading the community of a used invite")?;
            c.id
        }
        r => {
            let info: JoinInfo = remote::call(r, &base).context("reading the invite")?;
            info.community
        }
    };
    let request: MembershipRequest = client.post(
        "/v1/membership-requests",
        &NewMembershipRequest { community },
    )?;
    let joined: Joined = remote::call(
        agent.post(&path).send_json(&JoinRequest {
            member: request.member,
            created_at_ms: request.created_at_ms,
            signature: request.signature,
        }),
        &base,
    )
    .context("joining")?;
    // Here: the Membership (and the Community it depends on), the connector's market, and
    // membership.json (the relays preferred, the community named in referrals).
    let _: Imported = client.post(
        "/v1/attestations",
        &Import {
            envelopes: joined.envelopes.clone(),
        },
    )?;
    let _: Following = client.post(
        "/v1/markets/follow",
        &FollowBody {
            market: joined.info.connector.clone(),
        },
    )?;
    let community = Id::from_hex(&joined.info.community).map_err(|_| {
        anyhow!(
            "{base} named community {:?}, not an id",
            joined.info.community
        )
    })?;
    crate::network::membership::write(dir.root(), &community, &joined.info.relays)?;
    let v = JoinedHere {
        community: joined.info.community,
        name: joined.info.name,
        connector: joined.info.connector,
        membership: joined.membership,
        relays: joined.info.relays,
    };
    out.print(&v, |v| {
        format!(
            "joined {} ({}) as this node's key; membership {}\nreferrals name it unless `refer --community none`; {} relays of its node preferred (membership.json)",
            printable(&v.name),
            v.community,
            v.membership,
            v.relays.len()
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_links_give_the_node_and_the_token() {
        assert_eq!(
            invite_link("http://127.0.0.1:7423/join/inv1.00ff").unwrap(),
            ("http://127.0.0.1:7423".to_string(), "inv1.00ff".to_string())
        );
        assert_eq!(
            invite_link("http://k.example/v1/join/inv1.ab/").unwrap(),
            ("http://k.example".to_string(), "inv1.ab".to_string())
        );
        for bad in [
            "http://k.example/",
            "http://k.example/join/",
            "http://k.example/join/a/b",
            "k.example/join/inv1.ab",
        ] {
            assert!(invite_link(bad).is_err(), "{bad}");
        }
        assert_eq!(
            invite_link("https://k.example/join/inv1.ab").unwrap(),
            ("https://k.example".to_string(), "inv1.ab".to_string())
        );
    }
}
