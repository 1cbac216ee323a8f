//! Community nodes (issue 16; `--communities N --hosted M`): N testnet nodes found a community
//! each (`POST /v1/community`) and host M members, who join through an invite as a browser
//! does (the join page's form, with its cookie and CSRF field), sign in through the API
//! (`POST /v1/signin`) and pass offers along with their bearer sessions. Their referrals name
//! their community, and the sellers' offers give the connector [`CONNECTOR_BPS`] of each sale
//! whose hop 1 is an admitted member.
//!
//! Midway the first community removes its first member
//! (`POST /v1/community/members/<key>/remove`). A sale through the referral she made before
//! still pays the connector; one through a referral she made after must pay it nothing. Her
//! session on the community node is read-only from then on (it signs nothing for her), so
//! she goes on with a node of her own: she signs in again, exports her key
//! (`POST /v1/account/export-key`), starts a node with it (`passalong init --import-key`),
//! and passes the offer along from there, naming the community she was removed from.
//!
//! The community nodes seal their members' keys at a node's default cost (`member_kdf =
//! "member"`, 46 MiB), unless `--member-kdf minimum` asks for the least a key file allows
//! (19 MiB, as the tests use): quicker. (Each run of that size left about 17 MiB in the
//! node's resident memory until the node fixed glibc's mmap threshold at 4 MiB: 16 joins,
//! 556 against 39 MiB.)

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use passalong_protocol::attestation::Body;
use passalong_protocol::{Attestation, Id, PublicKey, State};
use serde_json::{json, Value};

use crate::node::Node;

/// The connector's share of a sale, in basis points, in every offer of a run with communities.
pub const CONNECTOR_BPS: u64 = 300;
/// Every hosted member's password.
const PASSWORD: &str = "testnet member password";
/// Where the join page's form holds its CSRF token.
const JOIN_FORM_FIELD: &str = "name=\"csrf\" value=\"";

/// A hosted member of a testnet community.
pub struct Member {
    /// Her login.
    pub login: String,
    /// Her key, hex.
    pub key: String,
    /// Her bearer session (`pls.<hex>`).
    session: String,
    /// Her Membership attestation, hex.
    pub membership: String,
    /// Whether the connector removed her.
    pub removed: bool,
    /// The referrals she signed through her session (ids, hex).
    pub referrals: Vec<String>,
    /// Her first referral, made right after she joined: its offer (index) and id.
    pub first: Option<(usize, String)>,
}

/// A community one testnet node runs.
pub struct Community {
    /// The node (index).
    pub node: usize,
    /// Its Community attestation, hex: what its members' referrals name.
    pub id: String,
    /// The connector: the node's key, hex.
    pub connector: String,
    /// Its hosted members.
    pub members: Vec<Member>,
    /// Its Community, Membership and MembershipEnd attestations (ids, hex), held by its node.
    pub attestations: Vec<String>,
    /// The node's resident memory once its members had joined and signed in, KiB (each join
    /// and sign-in is an argon2id run).
    pub rss_after_joins_kib: Option<u64>,
    /// Testnet nodes that joined it with their own keys.
    pub own: Vec<OwnMember>,
}

/// A testnet node that joined a community as an own-node member (`community join URL`).
pub struct OwnMember {
    /// The node (index).
    pub node: usize,
    /// Its key, hex.
    pub key: String,
    /// Its Membership, hex.
    pub membership: String,
    /// The referrals it signed naming the community (ids, hex).
    pub referrals: Vec<String>,
    /// Its first referral, made right after it joined: its offer (index) and share link.
    pub first: Option<(usize, String)>,
}

/// Readies the data dir of a node that will run a community, before its first start:
/// `passalong init`, then the cost of its members' key files (`member_kdf`, `minimum` or
/// `member`).
pub fn prepare(bin: &Path, dir: &Path, member_kdf: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .arg("init")
        .output()
        .with_context(|| format!("cannot run {} init", bin.display()))?;
    if !out.status.success() {
        bail!(
            "passalong init in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let setting = format!("member_kdf = \"{member_kdf}\"");
    let is_setting = |l: &str| l.trim_start().starts_with("member_kdf");
    let text = if text.lines().any(is_setting) {
        let lines: Vec<&str> = text
            .lines()
            .map(|l| if is_setting(l) { setting.as_str() } else { l })
            .collect();
        lines.join("\n") + "\n"
    } else {
        format!("{text}\n{setting}\n")
    };
    std::fs::write(&path, text).with_context(|| path.display().to_string())?;
    Ok(())
}

/// Node `node` (index `c`-th community) founds its community and hosts `hosted` members, who
/// join through invites and sign in.
pub fn found(node: &Node, c: usize, hosted: usize) -> Result<Community> {
    let v = node.post(
        "/v1/community",
        &json!({ "name": format!("testnet community {c}") }),
    )?;
    let text = |v: &Value, k: &str| -> Result<String> {
        v[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no {k} in {v}"))
    };
    let (id, connector) = (text(&v, "id")?, text(&v, "connector")?);
    let mut members = Vec::with_capacity(hosted);
    for j in 0..hosted {
        let login = format!("member-{c}-{j}");
        join(node, &login)?;
        let s = node.post_with(
            "/v1/signin",
            &json!({ "login": login, "password": PASSWORD }),
            None,
        )?;
        members.push(Member {
            login,
            key: text(&s, "identity")?,
            session: text(&s, "session")?,
            membership: String::new(),
            removed: false,
            referrals: Vec::new(),
            first: None,
        });
    }
    for m in &mut members {
        m.membership = membership_of(node, &m.key)?;
    }
    let mut attestations = vec![id.clone()];
    attestations.extend(members.iter().map(|m| m.membership.clone()));
    Ok(Community {
        node: node.index,
        id,
        connector,
        members,
        attestations,
        rss_after_joins_kib: node.rss_kib(),
        own: Vec::new(),
    })
}

/// The Membership of `member` (hex) in the community `node` runs, as its connector lists the
/// members (from its store), page by page.
fn membership_of(node: &Node, member: &str) -> Result<String> {
    let mut seen = 0;
    loop {
        let page = node.get_operator(&format!("/v1/community/members?offset={seen}&limit=1000"))?;
        let rows = page["members"].as_array().cloned().unwrap_or_default();
        if let Some(m) = rows.iter().find(|r| r["key"] == member) {
            return m["membership"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no membership in {m}"));
        }
        seen += rows.len();
        if rows.is_empty() || seen >= page["total"].as_u64().unwrap_or(0) as usize {
            bail!(
                "{member} is not among the members of node {}'s community",
                node.index
            );
        }
    }
}

/// Joins through a new invite on its join page, as a browser does: `GET /join/<token>` gives
/// the form's cookie and its CSRF field, and the form posted with both makes her a hosted
/// member (the answer sends her, signed in, to the dashboard).
fn join(node: &Node, login: &str) -> Result<()> {
    let invite = node.post("/v1/community/invites", &json!({ "note": login }))?;
    let token = invite["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token in {invite}"))?;
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(30))
        .build();
    let url = node.url(&format!("/join/{token}"));
    let page = agent
        .get(&url)
        .call()
        .map_err(|e| anyhow!("GET /join: {e}"))?;
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| anyhow!("GET /join: no form cookie"))?
        .to_string();
    let body = page.into_string()?;
    let at = body
        .find(JOIN_FORM_FIELD)
        .ok_or_else(|| anyhow!("GET /join: no csrf field"))?
        + JOIN_FORM_FIELD.len();
    let csrf = body[at..]
        .split('"')
        .next()
        .ok_or_else(|| anyhow!("GET /join: a broken csrf field"))?;
    let r = agent
        .post(&url)
        .set("Cookie", &cookie)
        .send_form(&[
            ("csrf", csrf),
            ("login", login),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ])
        .map_err(|e| match e {
            ureq::Error::Status(code, r) => {
                anyhow!(
                    "POST /join as {login}: {code} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            e => anyhow!("POST /join as {login}: {e}"),
        })?;
    if !r
        .all("set-cookie")
        .iter()
        .any(|c| c.starts_with("pl_session="))
    {
        bail!("POST /join as {login}: {} without a session", r.status());
    }
    Ok(())
}

impl Community {
    /// Member `j` passes `from` (a share link) along with her bearer session: the answer of
    /// `POST /v1/referrals` (her referral names the community).
    pub fn refer(&mut self, node: &Node, j: usize, from: &str) -> Result<Value> {
        let m = &mut self.members[j];
        let v = node.post_with("/v1/referrals", &json!({ "from": from }), Some(&m.session))?;
        let id = v["id"].as_str().ok_or_else(|| anyhow!("no id in {v}"))?;
        m.referrals.push(id.to_string());
        Ok(v)
    }

    /// Node `member` joins as an own-node member, as its operator would: an invite from the
    /// community node, then `passalong community join URL` on the member's node (its daemon
    /// signs the request with its key, the community node admits it, and it imports the
    /// Community and its Membership and names the community in `membership.json`).
    pub fn join_own_node(&mut self, node: &Node, member: &Node) -> Result<()> {
        let note = format!("node{}", member.index);
        let invite = node.post("/v1/community/invites", &json!({ "note": note }))?;
        let url = invite["url"]
            .as_str()
            .ok_or_else(|| anyhow!("no url in {invite}"))?;
        let out = Command::new(member.bin())
            .arg("--data-dir")
            .arg(&member.dir)
            .args(["community", "join", url])
            .output()
            .context("passalong community join")?;
        if !out.status.success() {
            bail!(
                "node {}: passalong community join: {}",
                member.index,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let membership = membership_of(node, &member.public_key)?;
        self.attestations.push(membership.clone());
        self.own.push(OwnMember {
            node: member.index,
            key: member.public_key.clone(),
            membership,
            referrals: Vec::new(),
            first: None,
        });
        Ok(())
    }

    /// The own-node member that node `i` is, if it is one.
    pub fn own_member(&mut self, i: usize) -> Option<&mut OwnMember> {
        self.own.iter_mut().find(|m| m.node == i)
    }

    /// The members who are still admitted (indices).
    pub fn admitted(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&j| !self.members[j].removed)
    }

    /// The connector removes member `j`; from when her referrals pay it nothing.
    pub fn remove(&mut self, node: &Node, j: usize) -> Result<u64> {
        let m = &mut self.members[j];
        let v = node.post(
            &format!("/v1/community/members/{}/remove", m.key),
            &json!(null),
        )?;
        let ends: Vec<String> = v["ends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        if ends.is_empty() {
            bail!("removing {} signed no MembershipEnd: {v}", m.login);
        }
        m.removed = true;
        self.attestations.extend(ends);
        v["ends_at_ms"]
            .as_u64()
            .ok_or_else(|| anyhow!("no ends_at_ms in {v}"))
    }

    /// Member `j` leaves for a node of her own: she signs in on the community node (`node`),
    /// exports her key under her password, and starts node `index` with it under `root`
    /// (`passalong init --import-key`), bootstrapping from `boots`.
    pub fn own_node(
        &self,
        node: &Node,
        j: usize,
        index: usize,
        root: &Path,
        boots: Vec<String>,
    ) -> Result<Node> {
        let m = &self.members[j];
        let s = node.post_with(
            "/v1/signin",
            &json!({ "login": m.login, "password": PASSWORD }),
            None,
        )?;
        let session = s["session"]
            .as_str()
            .ok_or_else(|| anyhow!("no session in {s}"))?;
        let file = node.post_with(
            "/v1/account/export-key",
            &json!({ "password": PASSWORD }),
            Some(session),
        )?;
        node.post_with("/v1/signout", &json!({}), Some(session))?;
        let mut own = Node::new(index, root, node.bin(), boots)?;
        let key_file = root.join(format!("{}.key", m.login));
        std::fs::write(&key_file, serde_json::to_vec(&file)?)?;
        std::fs::create_dir_all(&own.dir)?;
        let out = Command::new(node.bin())
            .arg("--data-dir")
            .arg(&own.dir)
            .arg("init")
            .arg("--import-key")
            .arg(&key_file)
            .env("PASSALONG_KEY_PASSWORD", PASSWORD)
            .output()
            .context("passalong init --import-key")?;
        if !out.status.success() {
            bail!(
                "passalong init --import-key for {}: {}",
                m.login,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        own.start()?;
        if own.public_key != m.key {
            bail!(
                "{}'s own node runs as {}, not her key {}",
                m.login,
                own.public_key,
                m.key
            );
        }
        Ok(own)
    }
}

/// The community each referral among `envelopes` names (by the referral's id, hex).
pub fn named(envelopes: &[Vec<u8>]) -> HashMap<String, Option<Id>> {
    envelopes
        .iter()
        .filter_map(|e| Attestation::decode(e).ok())
        .filter_map(|a| match a.body {
            Body::Referral(r) => Some((a.id.to_hex(), r.community)),
            _ => None,
        })
        .collect()
}

/// What `connector` earned in the sellers' ledgers of `state`, in minor units (every offer
/// of the testnet is in EUR).
pub fn earned(state: &State, sellers: &[PublicKey], connector: &PublicKey) -> u128 {
    sellers
        .iter()
        .flat_map(|s| state.ledger(s).entries)
        .filter(|e| e.participant == *connector)
        .map(|e| e.earned)
        .sum()
}

/// What the sale `receipt` paid `connector`, offline: its earnings from every envelope, less
/// those from all but the receipt.
pub fn share_of(
    envelopes: &[Vec<u8>],
    receipt: &str,
    sellers: &[PublicKey],
    connector: &PublicKey,
    now_ms: u64,
) -> Result<u128> {
    let receipt = Id::from_hex(receipt)?;
    let all = State::from_envelopes(envelopes.iter().map(Vec::as_slice), now_ms);
    let without = State::from_envelopes(
        envelopes
            .iter()
            .filter(|e| Id::of_envelope(e) != receipt)
            .map(Vec::as_slice),
        now_ms,
    );
    Ok(earned(&all, sellers, connector).saturating_sub(earned(&without, sellers, connector)))
}

/// What the community node `node` says its connector key earned (`GET /v1/community/earnings`).
pub fn earned_on(node: &Node) -> Result<u128> {
    let v = node.get_operator("/v1/community/earnings")?;
    Ok(v["totals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["earned_minor"].as_u64())
        .map(u128::from)
        .sum())
}
