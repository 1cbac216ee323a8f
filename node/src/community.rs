//! `passalong community …`: a connector founds the community this node runs and invites
//! neighbours to it, through the daemon's API (`/v1/community`).

use anyhow::Result;
use passalong_api::community::{
    CommunityInfo, InviteCreated, InviteList, NewCommunity, NewInvite, Revoked,
};
use passalong_api::text::printable;
use passalong_web::layout::time;

use crate::cli::CommunityCommand;
use crate::client::{q, Client};
use crate::commands::Out;
use crate::datadir::DataDir;
use crate::display::{Align, Table};

/// Runs one `community` subcommand.
pub fn community(dir: &DataDir, out: Out, cmd: CommunityCommand) -> Result<()> {
    let client = Client::connect(dir)?;
    match cmd {
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
    }
    Ok(())
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
