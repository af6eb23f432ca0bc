//! The member's daily commands for collectives, through the running node:
//! `collective`, `consent`, `election`, `peers`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

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
        /// How people join: `invite` (invites only), `approval` (invites, or a request a
        /// steward approves), `vote` (invites, or a request the members vote on).
        #[arg(long, default_value = "invite", value_parser = ["invite", "approval", "vote"])]
        admission: String,
        /// Licence templates to offer (default: the five standard ones).
        #[arg(long = "template", value_name = "ID")]
        templates: Vec<String>,
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

fn with_collective(mut body: Value, collective: &Option<String>) -> Value {
    if let Some(c) = collective {
        body["collective"] = Value::String(c.clone());
    }
    body
}

fn status_of(data_dir: &Path, collective: &Option<String>) -> Result<Value> {
    let (client, _) = connect(data_dir)?;
    let mut params = Vec::new();
    if let Some(c) = collective {
        params.push(("collective", c.as_str()));
    }
    client
        .query("coop.guild.collective.getStatus", &params)
        .map_err(explain)
}

fn call(data_dir: &Path, method: &str, body: Value) -> Result<Value> {
    let (client, _) = connect(data_dir)?;
    client
        .procedure(&format!("coop.guild.collective.{method}"), &body)
        .map_err(explain)
}

/// `guild collective`
pub fn collective(data_dir: &Path, cmd: CollectiveCmd) -> Result<ExitCode> {
    match cmd {
        CollectiveCmd::Create {
            name,
            purpose,
            seats,
            admission,
            templates,
        } => {
            let mut body = json!({"name": name, "seats": seats, "admission": admission});
            if let Some(p) = purpose {
                body["purpose"] = Value::String(p);
            }
            if !templates.is_empty() {
                body["templates"] = json!(templates);
            }
            let out = call(data_dir, "create", body)?;
            println!("{}", out["collective"].as_str().unwrap_or_default());
            eprintln!("founded; invite members with: guild collective invite");
        }
        CollectiveCmd::Invite {
            collective,
            invitee,
            expires_days,
        } => {
            let mut body = with_collective(json!({}), &collective);
            if let Some(i) = invitee {
                body["invitee"] = Value::String(i);
            }
            if let Some(d) = expires_days {
                body["expiresInDays"] = json!(d);
            }
            let out = call(data_dir, "createInvite", body)?;
            println!("{}", out["invite"].as_str().unwrap_or_default());
            eprintln!("hand this invite to the new member; it can be used once");
        }
        CollectiveCmd::Join { invite } => {
            let out = call(data_dir, "join", json!({"invite": invite}))?;
            println!("{}", out["collective"].as_str().unwrap_or_default());
            eprintln!("joined; see the collective with: guild collective status");
        }
        CollectiveCmd::Status { collective, json } => {
            let s = status_of(data_dir, &collective)?;
            if json {
                println!("{s}");
            } else {
                print_status(&s);
            }
        }
        CollectiveCmd::List { json } => {
            let (client, _) = connect(data_dir)?;
            let out = client
                .query("coop.guild.collective.listCollectives", &[])
                .map_err(explain)?;
            if json {
                println!("{out}");
            } else {
                let list = out["collectives"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no collectives yet");
                }
                for c in list {
                    println!(
                        "{}  {}  ({} members{})",
                        c["collective"].as_str().unwrap_or_default(),
                        c["name"].as_str().unwrap_or_default(),
                        c["members"],
                        if c["member"].as_bool() == Some(true) {
                            ""
                        } else {
                            ", you are not a member"
                        }
                    );
                }
            }
        }
        CollectiveCmd::Heads {
            from,
            collective,
            json,
        } => {
            let (client, _) = connect(data_dir)?;
            let mut params = vec![("peer", from.as_str())];
            if let Some(c) = &collective {
                params.push(("collective", c.as_str()));
            }
            let out = client
                .query("coop.guild.collective.getRemoteHeads", &params)
                .map_err(explain)?;
            if json {
                println!("{out}");
            } else {
                let heads = out["heads"].as_array().cloned().unwrap_or_default();
                if heads.is_empty() {
                    println!("{from} holds no repos in this collective's space");
                }
                for h in heads {
                    println!(
                        "{}  rev {}  commit {}",
                        h["did"].as_str().unwrap_or_default(),
                        h["rev"].as_str().unwrap_or_default(),
                        h["commit"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        CollectiveCmd::Leave { collective } => {
            let out = call(data_dir, "leave", with_collective(json!({}), &collective))?;
            println!("{}", out["op"].as_str().unwrap_or_default());
            eprintln!("you have left the collective");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    println!("collective: {}", text(&s["collective"]));
    println!("name:       {}", text(&s["name"]));
    let role = s["role"].as_str().unwrap_or("not a member");
    println!("you:        {} ({role})", text(&s["you"]));
    let members = s["members"].as_array().cloned().unwrap_or_default();
    println!("members:    {}", members.len());
    for m in &members {
        println!("  {}  {}", text(&m["did"]), text(&m["role"]));
    }
    let stewards = s["stewards"].as_array().map_or(0, Vec::len);
    println!("stewards:   {stewards} (quorum {})", s["quorum"]);
    let consents: Vec<&Value> = s["consents"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    println!("consents:   {}", consents.len());
    for c in consents {
        println!(
            "  {}  {}  {} (rev {})",
            text(&c["member"]),
            text(&c["template"]),
            if c["granted"].as_bool() == Some(true) {
                "granted"
            } else {
                "revoked"
            },
            c["rev"]
        );
    }
    let elections = s["elections"].as_array().cloned().unwrap_or_default();
    if !elections.is_empty() {
        println!("elections:  {}", elections.len());
        for e in &elections {
            let state = if e["certified"].is_null() {
                format!("open ({} voters, {} seals)", e["voters"], e["seals"])
            } else {
                format!("certified: {}", text(&e["certified"]["outcome"]))
            };
            println!("  {}  {}", text(&e["id"]), state);
        }
    }
    let peers = s["peers"].as_array().cloned().unwrap_or_default();
    println!("peers:      {} connected", peers.len());
    for p in &peers {
        println!("  {}", p.as_str().unwrap_or_default());
    }
    let sync = &s["sync"];
    println!(
        "sync:       {} ops, {} heads, {} waiting for parents, {} wanted",
        sync["ops"],
        sync["heads"].as_array().map_or(0, Vec::len),
        sync["pending"],
        sync["wanted"]
    );
}

/// `guild consent`
pub fn consent(data_dir: &Path, cmd: ConsentCmd) -> Result<ExitCode> {
    let (method, body, done) = match cmd {
        ConsentCmd::Grant {
            templates,
            collections,
            collective,
        } => (
            "grantConsent",
            with_collective(
                json!({"templates": templates, "collections": collections}),
                &collective,
            ),
            "consent granted",
        ),
        ConsentCmd::Revoke {
            templates,
            collective,
        } => (
            "revokeConsent",
            with_collective(json!({"templates": templates}), &collective),
            "consent revoked: your records enter no new bundle under these templates",
        ),
    };
    let out = call(data_dir, method, body)?;
    println!("{}", out["op"].as_str().unwrap_or_default());
    eprintln!("{done}");
    Ok(ExitCode::SUCCESS)
}

/// Seconds in "90", "90s", "10m", "2h", "1d".
fn parse_duration(s: &str) -> Result<i64> {
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
            let mut body = json!({"closesInSecs": parse_duration(&closes_in)?});
            if let Some(n) = seats {
                body["seats"] = json!(n);
            }
            if !candidates.is_empty() {
                body["candidates"] = json!(candidates);
            }
            let out = call(data_dir, "openElection", with_collective(body, &collective))?;
            println!("{}", out["op"].as_str().unwrap_or_default());
            eprintln!(
                "election opened; members vote with: guild election vote --election <id> --approve <DID>"
            );
        }
        ElectionCmd::Vote {
            election,
            approve,
            collective,
        } => {
            let body = json!({"election": election, "approvals": approve});
            let out = call(data_dir, "vote", with_collective(body, &collective))?;
            println!("{}", out["op"].as_str().unwrap_or_default());
            eprintln!("ballot cast");
        }
        ElectionCmd::Close {
            election,
            collective,
        } => {
            let body = json!({"election": election});
            let out = call(
                data_dir,
                "closeElection",
                with_collective(body, &collective),
            )?;
            println!("{}", out["op"].as_str().unwrap_or_default());
            eprintln!("sealed; the result is certified once a majority of tellers sealed the same");
        }
        ElectionCmd::Results {
            election,
            collective,
            json,
        } => {
            let s = status_of(data_dir, &collective)?;
            let all = s["elections"].as_array().cloned().unwrap_or_default();
            let chosen: Vec<Value> = all
                .into_iter()
                .filter(|e| election.as_deref().is_none_or(|id| e["id"] == id))
                .collect();
            if let Some(id) = &election
                && chosen.is_empty()
            {
                bail!("no election {id} in this collective");
            }
            if json {
                println!("{}", Value::Array(chosen));
                return Ok(ExitCode::SUCCESS);
            }
            if chosen.is_empty() {
                println!("no elections yet");
            }
            for e in chosen {
                println!("election:   {}", e["id"].as_str().unwrap_or_default());
                println!(
                    "closes:     {}",
                    e["closesAfter"].as_str().unwrap_or_default()
                );
                println!("voters:     {}, seals: {}", e["voters"], e["seals"]);
                match e["certified"].as_object() {
                    None => println!("result:     not certified yet (incumbents stay)"),
                    Some(c) => {
                        println!(
                            "result:     {}",
                            c.get("outcome").and_then(Value::as_str).unwrap_or_default()
                        );
                        for t in c
                            .get("tally")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            println!(
                                "  {}  {}",
                                t["choice"].as_str().unwrap_or_default(),
                                t["approvals"]
                            );
                        }
                        for d in c
                            .get("elected")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            println!("elected:    {}", d.as_str().unwrap_or_default());
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
    let (client, _) = connect(data_dir)?;
    let out = client
        .query("coop.guild.node.getPeers", &[])
        .map_err(explain)?;
    if json_out {
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("peer id: {}", out["peer"].as_str().unwrap_or_default());
    for a in out["listen"].as_array().into_iter().flatten() {
        println!("listen:  {}", a.as_str().unwrap_or_default());
    }
    println!(
        "traffic: {} bytes in, {} bytes out",
        out["bytesIn"].as_u64().unwrap_or_default(),
        out["bytesOut"].as_u64().unwrap_or_default()
    );
    let peers = out["peers"].as_array().cloned().unwrap_or_default();
    println!("peers:   {} connected", peers.len());
    for p in peers {
        println!(
            "  {}  {}",
            p["did"].as_str().unwrap_or("(unknown DID)"),
            p["addrs"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .unwrap_or_default()
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
