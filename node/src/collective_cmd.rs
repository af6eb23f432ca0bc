//! The member's daily commands for collectives, through the running node:
//! `collective`, `consent`, `election`, `peers`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guild_api::Method;
use guild_api::methods::collective::{
    ConsentInput, close_election, create, create_invite, get_remote_heads, get_status,
    grant_consent, join, leave, list_collectives, open_election, revoke_consent, vote,
};
use guild_api::methods::node::get_peers;
use serde::Serialize;

use crate::client_cmd::{connect, explain};

/// `guild collective …`
#[derive(Debug, Subcommand)]
pub enum CollectiveCmd {
    /// Found a collective; you become its first steward. Prints its id.
    Create {
        /// The collective's name.
        #[arg(long)]
        name: String,
        /// What it is for.
        #[arg(long)]
        purpose: Option<String>,
        /// Steward seats.
        #[arg(long, default_value_t = 3)]
        seats: i64,
        /// Steward signatures an agreement or a bundle needs (capped by the number of
        /// stewards).
        #[arg(long, default_value_t = 1)]
        countersignatures: i64,
        /// How people join: `invite` (invites only), `approval` (invites, or a request a
        /// steward approves), `vote` (invites, or a request the members vote on).
        #[arg(long, default_value = "invite", value_parser = ["invite", "approval", "vote"])]
        admission: String,
        /// Licence templates to offer (default: the five standard ones).
        #[arg(long = "template", value_name = "ID")]
        templates: Vec<String>,
        /// Keep agreements' prices off the public agreement list.
        #[arg(long)]
        private_prices: bool,
        /// Per-licensee canary records in every bundle (0 to 64; default none): each
        /// builder's bundles carry canaries made for it alone, so a leak is traced to it.
        #[arg(long, value_name = "N")]
        canaries: Option<i64>,
    },
    /// Invite someone (stewards only): prints one invite string to hand over.
    Invite {
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Only this DID may use the invite.
        #[arg(long)]
        invitee: Option<String>,
        /// Days the invite stays valid (default: the charter's).
        #[arg(long)]
        expires_days: Option<i64>,
    },
    /// Join a collective with an invite string.
    Join {
        /// The invite (`guild-invite:…`).
        invite: String,
    },
    /// Members, stewards, consents, elections, peers and sync state.
    Status {
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
        /// List at most this many members, former members and consent registers (each is
        /// still counted in full); default: all.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// List the members after this DID (in DID order): with `--limit`, the next page after
        /// the `next page: --after DID` line of the page before.
        #[arg(long, value_name = "DID")]
        after: Option<String>,
    },
    /// The collectives this node holds.
    List {
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Ask another member's node which repo heads it holds in the collective's space (its own
    /// repo and, on a steward's node, the replicas): a check that your works reached the
    /// stewards. Nodes answer members only.
    Heads {
        /// The other member's DID.
        #[arg(long, value_name = "DID")]
        from: String,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Leave a collective.
    Leave {
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
}

/// `guild consent …`
#[derive(Debug, Subcommand)]
pub enum ConsentCmd {
    /// Consent to licence templates for your records in the collective.
    Grant {
        /// A licence template id (repeat for several).
        #[arg(long = "template", value_name = "ID", required = true)]
        templates: Vec<String>,
        /// Only records of these collections (default: all your records).
        #[arg(long = "collection", value_name = "NSID")]
        collections: Vec<String>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
    /// Withdraw consent: your records stop entering new bundles at once.
    Revoke {
        /// A licence template id (repeat for several).
        #[arg(long = "template", value_name = "ID", required = true)]
        templates: Vec<String>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
}

/// `guild election …`
#[derive(Debug, Subcommand)]
pub enum ElectionCmd {
    /// Open a steward election (approval voting). Prints the election's id.
    Open {
        /// Seats to fill (default: the charter's).
        #[arg(long)]
        seats: Option<i64>,
        /// A candidate's DID (repeat; default: every member).
        #[arg(long = "candidate", value_name = "DID")]
        candidates: Vec<String>,
        /// When tellers may close it: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "1d")]
        closes_in: String,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
    /// Vote: approve one or more candidates (voting again replaces your ballot).
    Vote {
        /// The election's id.
        #[arg(long)]
        election: String,
        /// A candidate you approve (repeat).
        #[arg(long = "approve", value_name = "DID")]
        approve: Vec<String>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
    /// Close an election (tellers only): seal the ballots you counted and the result. The
    /// result is certified when a majority of tellers sealed the same.
    Close {
        /// The election's id.
        #[arg(long)]
        election: String,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
    /// Elections and their results.
    Results {
        /// Only this election.
        #[arg(long)]
        election: Option<String>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Calls one of Guild's methods on the running node.
fn call<M: Method>(data_dir: &Path, input: &M::Input) -> Result<M::Output> {
    let (client, _) = connect(data_dir)?;
    client.call::<M>(input).map_err(explain)
}

/// Prints an answer as the node's JSON.
fn print_json<T: Serialize>(out: &T) -> Result<()> {
    println!("{}", serde_json::to_string(out)?);
    Ok(())
}

/// The collective's status, with at most `limit` items in each of its long lists (members,
/// departed, consents).
fn status_of(
    data_dir: &Path,
    collective: Option<String>,
    limit: Option<u64>,
) -> Result<get_status::Output> {
    call::<get_status::GetStatus>(
        data_dir,
        &get_status::Params {
            collective,
            limit,
            members_after: None,
            consents_of: None,
        },
    )
}

/// `guild collective`
pub fn collective(data_dir: &Path, cmd: CollectiveCmd) -> Result<ExitCode> {
    match cmd {
        CollectiveCmd::Create {
            name,
            purpose,
            seats,
            countersignatures,
            admission,
            templates,
            private_prices,
            canaries,
        } => {
            let mut input = create_input(name, purpose, seats, &admission, templates);
            input.countersignatures = Some(countersignatures);
            input.private_prices = private_prices.then_some(true);
            input.canaries_per_bundle = canaries;
            let out = call::<create::Create>(data_dir, &input)?;
            println!("{}", out.collective);
            eprintln!("founded; invite members with: guild collective invite");
        }
        CollectiveCmd::Invite {
            collective,
            invitee,
            expires_days,
        } => {
            let input = create_invite::Input {
                collective,
                invitee,
                expires_in_days: expires_days,
            };
            let out = call::<create_invite::CreateInvite>(data_dir, &input)?;
            println!("{}", out.invite);
            eprintln!("hand this invite to the new member; it can be used once");
        }
        CollectiveCmd::Join { invite } => {
            let out = call::<join::Join>(data_dir, &join::Input { invite })?;
            println!("{}", out.collective);
            eprintln!("joined; see the collective with: guild collective status");
        }
        CollectiveCmd::Status {
            collective,
            json,
            limit,
            after,
        } => {
            let s = call::<get_status::GetStatus>(
                data_dir,
                &get_status::Params {
                    collective,
                    limit,
                    members_after: after,
                    consents_of: None,
                },
            )?;
            if json {
                print_json(&s)?;
            } else {
                print_status(&s);
            }
        }
        CollectiveCmd::List { json } => {
            let out =
                call::<list_collectives::ListCollectives>(data_dir, &list_collectives::Params {})?;
            if json {
                print_json(&out)?;
            } else {
                print_collectives(out);
            }
        }
        CollectiveCmd::Heads {
            from,
            collective,
            json,
        } => {
            let params = get_remote_heads::Params {
                peer: from.clone(),
                collective,
            };
            let out = call::<get_remote_heads::GetRemoteHeads>(data_dir, &params)?;
            if json {
                print_json(&out)?;
            } else {
                print_heads(&from, out);
            }
        }
        CollectiveCmd::Leave { collective } => {
            let out = call::<leave::Leave>(data_dir, &leave::Input { collective })?;
            println!("{}", out.op);
            eprintln!("you have left the collective");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `guild collective create`'s request; `admission` other than `approval` or `vote` is
/// `invite`.
fn create_input(
    name: String,
    purpose: Option<String>,
    seats: i64,
    admission: &str,
    templates: Vec<String>,
) -> create::Input {
    let admission = match admission {
        "approval" => create::Admission::Approval,
        "vote" => create::Admission::Vote,
        _ => create::Admission::Invite,
    };
    create::Input {
        name,
        purpose,
        seats: Some(seats),
        countersignatures: None,
        admission: Some(admission),
        templates,
        private_prices: None,
        canaries_per_bundle: None,
    }
}

/// `guild collective list`'s lines.
fn print_collectives(out: list_collectives::Output) {
    if out.collectives.is_empty() {
        println!("no collectives yet");
    }
    for c in out.collectives {
        println!(
            "{}  {}  ({} members{})",
            c.collective,
            c.name.unwrap_or_default(),
            c.members,
            if c.member {
                ""
            } else {
                ", you are not a member"
            }
        );
    }
}

/// `guild collective heads`'s lines.
fn print_heads(from: &str, out: get_remote_heads::Output) {
    if out.heads.is_empty() {
        println!("{from} holds no repos in this collective's space");
    }
    for h in out.heads {
        let which = if h.public { "  (public repo)" } else { "" };
        println!("{}  rev {}  commit {}{which}", h.did, h.rev, h.commit);
    }
}

/// A note that a list shows fewer items than there are (`--limit`).
fn shown(listed: usize, total: u64) -> String {
    if u64::try_from(listed).is_ok_and(|l| l >= total) {
        String::new()
    } else {
        format!(" ({listed} listed)")
    }
}

fn print_status(s: &get_status::Output) {
    println!("collective: {}", s.collective);
    println!("name:       {}", s.name.as_deref().unwrap_or_default());
    let role = s.role.as_deref().unwrap_or("not a member");
    println!("you:        {} ({role})", s.you);
    println!(
        "members:    {}{}",
        s.member_count,
        shown(s.members.len(), s.member_count)
    );
    for m in &s.members {
        println!("  {}  {}", m.did, m.role);
    }
    if let Some(cursor) = &s.members_cursor {
        println!("  next page: --after {cursor}");
    }
    println!("stewards:   {} (quorum {})", s.stewards.len(), s.quorum);
    println!(
        "consents:   {}{}",
        s.consent_count,
        shown(s.consents.len(), s.consent_count)
    );
    for c in &s.consents {
        println!(
            "  {}  {}  {} (rev {})",
            c.member,
            c.template,
            if c.granted { "granted" } else { "revoked" },
            c.rev
        );
    }
    if !s.elections.is_empty() {
        println!("elections:  {}", s.elections.len());
        for e in &s.elections {
            let state = match &e.certified {
                None => format!("open ({} voters, {} seals)", e.voters, e.seals),
                Some(c) => format!("certified: {}", c.outcome),
            };
            println!("  {}  {}", e.id, state);
        }
    }
    println!("peers:      {} connected", s.peers.len());
    for p in &s.peers {
        println!("  {p}");
    }
    for r in &s.replica_refusals {
        if r.member == s.you {
            println!(
                "replica refused by steward {}: {} (since {})",
                r.steward, r.reason, r.at
            );
        } else {
            println!(
                "refusing {}'s repo as a replica: {} (since {})",
                r.member, r.reason, r.at
            );
        }
    }
    println!(
        "sync:       {} ops, {} heads, {} waiting for parents, {} wanted",
        s.sync.ops,
        s.sync.heads.len(),
        s.sync.pending,
        s.sync.wanted
    );
}

/// `guild consent`
pub fn consent(data_dir: &Path, cmd: ConsentCmd) -> Result<ExitCode> {
    let (out, done) = match cmd {
        ConsentCmd::Grant {
            templates,
            collections,
            collective,
        } => {
            let input = ConsentInput {
                collective,
                templates,
                collections,
            };
            (
                call::<grant_consent::GrantConsent>(data_dir, &input)?,
                "consent granted",
            )
        }
        ConsentCmd::Revoke {
            templates,
            collective,
        } => {
            let input = ConsentInput {
                collective,
                templates,
                collections: Vec::new(),
            };
            (
                call::<revoke_consent::RevokeConsent>(data_dir, &input)?,
                "consent revoked: your records enter no new bundle under these templates",
            )
        }
    };
    println!("{}", out.op);
    eprintln!("{done}");
    Ok(ExitCode::SUCCESS)
}

/// Seconds in "90", "90s", "10m", "2h", "1d".
pub(crate) fn parse_duration(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration (try 90s, 10m, 2h or 1d)"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("{s:?}: the unit must be s, m, h or d"),
    };
    if n < 0 {
        bail!("{s:?}: a duration cannot be negative");
    }
    Ok(n.saturating_mul(mult))
}

/// `guild election`
pub fn election(data_dir: &Path, cmd: ElectionCmd) -> Result<ExitCode> {
    match cmd {
        ElectionCmd::Open {
            seats,
            candidates,
            closes_in,
            collective,
        } => {
            let input = open_election::Input {
                collective,
                seats,
                candidates,
                closes_in_secs: Some(parse_duration(&closes_in)?),
            };
            let out = call::<open_election::OpenElection>(data_dir, &input)?;
            println!("{}", out.op);
            eprintln!(
                "election opened; members vote with: guild election vote --election <id> --approve <DID>"
            );
        }
        ElectionCmd::Vote {
            election,
            approve,
            collective,
        } => {
            let input = vote::Input {
                collective,
                election,
                approvals: approve,
            };
            let out = call::<vote::Vote>(data_dir, &input)?;
            println!("{}", out.op);
            eprintln!("ballot cast");
        }
        ElectionCmd::Close {
            election,
            collective,
        } => {
            let input = close_election::Input {
                collective,
                election,
            };
            let out = call::<close_election::CloseElection>(data_dir, &input)?;
            println!("{}", out.op);
            eprintln!("sealed; the result is certified once a majority of tellers sealed the same");
        }
        ElectionCmd::Results {
            election,
            collective,
            json,
        } => {
            // Only the elections are read: none of the long lists.
            let s = status_of(data_dir, collective, Some(0))?;
            let chosen: Vec<get_status::Election> = s
                .elections
                .into_iter()
                .filter(|e| election.as_deref().is_none_or(|id| e.id == id))
                .collect();
            if let Some(id) = &election
                && chosen.is_empty()
            {
                bail!("no election {id} in this collective");
            }
            if json {
                print_json(&chosen)?;
                return Ok(ExitCode::SUCCESS);
            }
            if chosen.is_empty() {
                println!("no elections yet");
            }
            for e in chosen {
                println!("election:   {}", e.id);
                println!("closes:     {}", e.closes_after);
                println!("voters:     {}, seals: {}", e.voters, e.seals);
                match e.certified {
                    None => println!("result:     not certified yet (incumbents stay)"),
                    Some(c) => {
                        println!("result:     {}", c.outcome);
                        for t in &c.tally {
                            println!("  {}  {}", t.choice, t.approvals);
                        }
                        for d in &c.elected {
                            println!("elected:    {d}");
                        }
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `guild peers`
pub fn peers(data_dir: &Path, json_out: bool) -> Result<ExitCode> {
    let out = call::<get_peers::GetPeers>(data_dir, &get_peers::Params {})?;
    if json_out {
        print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("peer id: {}", out.peer);
    for a in &out.listen {
        println!("listen:  {a}");
    }
    println!(
        "traffic: {} bytes in, {} bytes out",
        out.bytes_in, out.bytes_out
    );
    println!("peers:   {} connected", out.peers.len());
    for p in out.peers {
        println!(
            "  {}  {}",
            p.did.as_deref().unwrap_or("(unknown DID)"),
            p.addrs.first().map(String::as_str).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("1d").unwrap(), 86_400);
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3w").is_err());
    }
}
