//! Builders for the fields of common ops, the standard licence templates, and the invite code
//! a member hands to a candidate. Pure: secrets and times are arguments.

use std::collections::BTreeMap;

use guild_core::syntax::Datetime;
use guild_core::{Cid, Ipld, cids, data};

use crate::state::{ElectionKind, State};

fn s(x: &str) -> Ipld {
    Ipld::String(x.to_owned())
}

fn int(i: i64) -> Ipld {
    Ipld::Integer(i.into())
}

fn map(pairs: Vec<(&str, Ipld)>) -> Ipld {
    Ipld::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Ipld {
    Ipld::List(items.into_iter().map(s).collect())
}

/// The standard licence templates (protocol.md §6): Training-Commercial-Standard,
/// Training-Commercial-Attribution, Retrieval-Attribution, Research-Open, Eval-Public.
pub fn standard_templates() -> Vec<Ipld> {
    let template = |id: &str,
                    title: &str,
                    uses: &[&str],
                    classes: &[&str],
                    attribution: bool,
                    compensation: Ipld,
                    on_termination: &str,
                    canary: bool| {
        let mut t = vec![
            ("id", s(id)),
            ("title", s(title)),
            ("version", int(1)),
            ("uses", strings(uses.iter().copied())),
            ("userClasses", strings(classes.iter().copied())),
            (
                "flowDown",
                map(vec![
                    ("syntheticData", Ipld::Bool(true)),
                    ("downstreamModels", Ipld::Bool(false)),
                ]),
            ),
            (
                "attribution",
                if attribution {
                    map(vec![
                        ("required", Ipld::Bool(true)),
                        ("form", s("model-card")),
                    ])
                } else {
                    map(vec![("required", Ipld::Bool(false))])
                },
            ),
            ("compensation", compensation),
            ("termDays", int(365)),
            ("noticeDays", int(90)),
            ("onTermination", s(on_termination)),
            (
                "reporting",
                map(vec![
                    ("required", Ipld::Bool(true)),
                    ("intervalDays", int(90)),
                ]),
            ),
        ];
        if canary {
            t.push(("canary", Ipld::Bool(true)));
        }
        map(t)
    };
    let share = |bp: i64| {
        map(vec![
            ("$type", s("coop.guild.licence.template#revenueShare")),
            ("share", int(bp)),
            ("base", s("gross-revenue")),
        ])
    };
    let no_fee = |why: &str| {
        map(vec![
            ("$type", s("coop.guild.licence.template#noFee")),
            ("reason", s(why)),
        ])
    };
    vec![
        template(
            "training-commercial-standard",
            "Training, commercial",
            &["train"],
            &["commercial"],
            false,
            share(300),
            "retain-trained-models",
            false,
        ),
        template(
            "training-commercial-attribution",
            "Training, commercial, with attribution",
            &["train"],
            &["commercial"],
            true,
            share(250),
            "retain-trained-models",
            false,
        ),
        template(
            "retrieval-attribution",
            "Retrieval and display, with attribution",
            &["retrieve-and-display", "index"],
            &["commercial", "research"],
            true,
            map(vec![
                ("$type", s("coop.guild.licence.template#perQuery")),
                (
                    "feePerThousand",
                    map(vec![("amount", int(100)), ("currency", s("EUR"))]),
                ),
            ]),
            "delete-records",
            false,
        ),
        template(
            "research-open",
            "Research, open",
            &["train", "evaluate"],
            &["research", "non-profit"],
            true,
            no_fee("open research"),
            "retain-trained-models",
            false,
        ),
        template(
            "eval-public",
            "Evaluation, public",
            &["evaluate"],
            &["commercial", "research", "non-profit"],
            true,
            no_fee("public evaluation"),
            "retain-all",
            true,
        ),
    ]
}

/// The rules a collective is founded with.
#[derive(Debug, Clone, PartialEq)]
pub struct CharterParams {
    /// The collective's name.
    pub name: String,
    /// What it is for.
    pub purpose: Option<String>,
    /// `invite-only` or `invite-or-request`.
    pub admission_policy: String,
    /// `steward` or `vote`.
    pub admission_approval: String,
    /// Days an invite stays valid.
    pub invite_ttl_days: i64,
    /// Steward seats.
    pub seats: i64,
    /// A steward's term in days.
    pub term_days: i64,
    /// Share of yes votes an amendment needs (basis points).
    pub amendment_bp: i64,
    /// Share of yes votes a removal needs; `None`: stewards remove.
    pub removal_bp: Option<i64>,
    /// Turnout a vote needs (basis points of the electorate).
    pub turnout_bp: i64,
    /// Steward countersignatures for agreements and bundles.
    pub countersignatures: i64,
    /// Record types members may contribute.
    pub accepted_lexicons: Vec<String>,
    /// Licence templates offered.
    pub templates: Vec<Ipld>,
    /// `monthly`, `quarterly` or `per-agreement`.
    pub payout_period: String,
    /// `equal`, `knn-shapley`, `leave-one-out` or `group-shapley`.
    pub payout_method: String,
}

impl CharterParams {
    /// Working defaults: invite only, steward approval, 3 seats for a year, amendments by
    /// two thirds, removal by stewards, 30 % turnout, one countersignature, text and file
    /// records, the standard templates, equal monthly payouts.
    pub fn new(name: &str) -> CharterParams {
        CharterParams {
            name: name.to_owned(),
            purpose: None,
            admission_policy: "invite-only".into(),
            admission_approval: "steward".into(),
            invite_ttl_days: 14,
            seats: 3,
            term_days: 365,
            amendment_bp: 6667,
            removal_bp: None,
            turnout_bp: 3000,
            countersignatures: 1,
            accepted_lexicons: vec!["coop.guild.data.text".into(), "coop.guild.data.file".into()],
            templates: standard_templates(),
            payout_period: "monthly".into(),
            payout_method: "equal".into(),
        }
    }

    /// The charter op's fields.
    pub fn fields(&self) -> BTreeMap<String, Ipld> {
        let mut quorum = vec![
            ("amendment", int(self.amendment_bp)),
            ("turnout", int(self.turnout_bp)),
            ("countersignatures", int(self.countersignatures)),
        ];
        if let Some(r) = self.removal_bp {
            quorum.push(("removal", int(r)));
        }
        let mut f = vec![
            ("name", s(&self.name)),
            (
                "admission",
                map(vec![
                    ("policy", s(&self.admission_policy)),
                    ("approval", s(&self.admission_approval)),
                    ("inviteTtlDays", int(self.invite_ttl_days)),
                ]),
            ),
            (
                "stewardship",
                map(vec![
                    ("seats", int(self.seats)),
                    ("termDays", int(self.term_days)),
                    ("electionMethod", s("approval")),
                    ("tellers", s("stewards")),
                ]),
            ),
            ("quorum", map(quorum)),
            (
                "acceptedLexicons",
                strings(self.accepted_lexicons.iter().map(String::as_str)),
            ),
            ("licenceTemplates", Ipld::List(self.templates.clone())),
            (
                "payoutPolicy",
                map(vec![
                    ("period", s(&self.payout_period)),
                    ("method", s(&self.payout_method)),
                ]),
            ),
        ];
        if let Some(p) = &self.purpose {
            f.push(("purpose", s(p)));
        }
        f.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

fn fields(pairs: Vec<(&str, Ipld)>) -> BTreeMap<String, Ipld> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// An invite's fields: the hash of the one-time `secret`, optionally the invitee and an
/// expiry.
pub fn invite(
    secret: &[u8],
    invitee: Option<&str>,
    expires_at: Option<&Datetime>,
) -> BTreeMap<String, Ipld> {
    let mut f = fields(vec![(
        "secretHash",
        Ipld::Bytes(cids::sha256(secret).to_vec()),
    )]);
    if let Some(i) = invitee {
        f.insert("invitee".into(), s(i));
    }
    if let Some(e) = expires_at {
        f.insert("expiresAt".into(), s(e.as_str()));
    }
    f
}

/// A join's fields: with an invite, its id and the revealed secret; without, a request.
pub fn join(invite: Option<(&Cid, &[u8])>) -> BTreeMap<String, Ipld> {
    match invite {
        Some((id, secret)) => fields(vec![
            ("invite", s(&id.to_string())),
            ("secret", Ipld::Bytes(secret.to_vec())),
        ]),
        None => BTreeMap::new(),
    }
}

/// A whole collective built offline: the first key founds it (an `invite-only` charter named
/// `name`), then for every other key the founder writes an invite and the key joins with it,
/// one op per millisecond from `start_micros`. Returns the collective's id and every op's
/// signed bytes, parents first: what a devnet, a test or a benchmark seeds its nodes' stores
/// with. Fails on an empty key list, or if an op is refused (which would be a bug here).
pub fn invited_collective(
    name: &str,
    keys: &[guild_core::Keypair],
    start_micros: i64,
) -> Result<(Cid, Vec<Vec<u8>>), crate::state::Reason> {
    use crate::log::{Inserted, Log};
    use crate::op::{Op, OpKind};
    use crate::state::Reason;
    let Some(founder) = keys.first() else {
        return Err(Reason::NoCharter);
    };
    let at = |i: i64| Datetime::from_unix_micros(start_micros.saturating_add(i * 1_000));
    let mut params = CharterParams::new(name);
    params.admission_policy = "invite-only".into();
    let genesis = Op::sign(OpKind::Charter, None, params.fields(), founder, &[], &at(0))?;
    let id = *genesis.id();
    let mut log = Log::new(id);
    let add = |log: &mut Log, op| match log.insert(op, 0) {
        Inserted::Applied | Inserted::Duplicate => Ok(()),
        Inserted::Rejected(r) => Err(r),
        Inserted::Pending { .. } => Err(Reason::NoCharter),
    };
    add(&mut log, genesis)?;
    for (i, key) in keys.iter().enumerate().skip(1) {
        let mut secret = cids::sha256(&id.to_bytes()).to_vec();
        secret.extend_from_slice(&(i as u64).to_le_bytes());
        let invite = Op::sign(
            OpKind::Invite,
            Some(&id),
            invite(&secret, None, None),
            founder,
            &log.heads(),
            &at(2 * i as i64),
        )?;
        let invite_id = *invite.id();
        add(&mut log, invite)?;
        let join = Op::sign(
            OpKind::Join,
            Some(&id),
            join(Some((&invite_id, &secret))),
            key,
            &log.heads(),
            &at(2 * i as i64 + 1),
        )?;
        add(&mut log, join)?;
    }
    Ok((id, log.export().into_iter().map(<[u8]>::to_vec).collect()))
}

/// A consent grant's or revoke's fields for `templates`, at the register revision that
/// follows the member's highest in `state`, with a scope of some collections (or the whole
/// repo when `collections` is empty), effective from `from`.
pub fn consent(
    state: &State,
    member: &str,
    templates: &[String],
    collections: &[String],
    from: &Datetime,
) -> BTreeMap<String, Ipld> {
    let rev = templates
        .iter()
        .filter_map(|t| state.consents.get(&(member.to_owned(), t.clone())))
        .map(|c| c.rev)
        .max()
        .unwrap_or(0)
        + 1;
    let scope = if collections.is_empty() {
        map(vec![("$type", s("coop.guild.consent.grant#repo"))])
    } else {
        map(vec![
            ("$type", s("coop.guild.consent.grant#collections")),
            (
                "collections",
                strings(collections.iter().map(String::as_str)),
            ),
        ])
    };
    fields(vec![
        ("templates", strings(templates.iter().map(String::as_str))),
        ("rev", int(i64::try_from(rev).unwrap_or(i64::MAX))),
        ("scope", scope),
        ("effectiveFrom", s(from.as_str())),
    ])
}

/// An election open op's fields against `state` (the state the op will be written on):
/// the electorate and tellers are taken from it.
pub fn election_open(
    state: &State,
    kind: ElectionKind,
    seats: Option<i64>,
    candidates: &[String],
    proposal: Option<&Cid>,
    closes_after: &Datetime,
) -> BTreeMap<String, Ipld> {
    let kind = match kind {
        ElectionKind::Stewards => "stewards",
        ElectionKind::Amendment => "amendment",
        ElectionKind::Admission => "admission",
        ElectionKind::Removal => "removal",
    };
    let mut f = fields(vec![
        ("kind", s(kind)),
        ("method", s("approval")),
        ("electorate", s(&state.electorate_cid().to_string())),
        (
            "tellers",
            strings(state.tellers().iter().map(String::as_str)),
        ),
        ("closesAfter", s(closes_after.as_str())),
    ]);
    if let Some(n) = seats {
        f.insert("seats".into(), int(n));
    }
    if !candidates.is_empty() {
        f.insert(
            "candidates".into(),
            strings(candidates.iter().map(String::as_str)),
        );
    }
    if let Some(p) = proposal {
        f.insert("proposal".into(), s(&p.to_string()));
    }
    f
}

/// A ballot's fields: the voter's next revision in `state`, approving `choices`.
pub fn ballot(
    state: &State,
    election: &Cid,
    voter: &str,
    choices: &[String],
) -> BTreeMap<String, Ipld> {
    let rev = state
        .elections
        .get(election)
        .and_then(|e| e.ballots.get(voter))
        .map_or(0, |v| v.rev + 1);
    fields(vec![
        ("election", s(&election.to_string())),
        ("rev", int(i64::try_from(rev).unwrap_or(i64::MAX))),
        ("approvals", strings(choices.iter().map(String::as_str))),
    ])
}

/// A teller's seal of `election` as `state` counts it, or `None` if there is no such
/// election or it has no charter.
pub fn seal(state: &State, election: &Cid) -> Option<BTreeMap<String, Ipld>> {
    let e = state.elections.get(election)?;
    let counted = e.counted();
    let tally = e.tally(election, &counted, state.charter.as_deref()?);
    Some(fields(vec![
        ("election", s(&election.to_string())),
        (
            "ballots",
            Ipld::List(counted.iter().map(|c| s(&c.to_string())).collect()),
        ),
        ("result", tally.to_ipld()),
    ]))
}

/// What a candidate needs to join: the collective, the invite op, the one-time secret and
/// where to reach members. Written as `guild-invite:` followed by base58btc of a DAG-CBOR map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode {
    /// The collective's id.
    pub collective: Cid,
    /// The invite op's id.
    pub invite: Cid,
    /// The one-time secret (its hash is in the invite op).
    pub secret: Vec<u8>,
    /// Multiaddresses of members' nodes (with `/p2p/<peer id>`).
    pub peers: Vec<String>,
}

/// Why a string is not an invite code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteCodeError {
    /// It does not start with `guild-invite:`.
    #[error("not a Guild invite (it should start with \"guild-invite:\")")]
    Prefix,
    /// The rest is not base58btc.
    #[error("the invite is damaged (not base58): {0}")]
    Base58(String),
    /// The bytes are not the expected DAG-CBOR map.
    #[error("the invite is damaged: {0}")]
    Content(&'static str),
}

const INVITE_PREFIX: &str = "guild-invite:";

impl InviteCode {
    /// The invite as a string.
    pub fn encode(&self) -> String {
        let m = map(vec![
            ("c", Ipld::Link(self.collective)),
            ("i", Ipld::Link(self.invite)),
            ("s", Ipld::Bytes(self.secret.clone())),
            ("p", strings(self.peers.iter().map(String::as_str))),
        ]);
        // A map of links, bytes and strings always encodes.
        let bytes = data::encode(&m).unwrap_or_default();
        format!("{INVITE_PREFIX}{}", bs58::encode(bytes).into_string())
    }

    /// Reads an invite string (surrounding whitespace ignored).
    pub fn decode(text: &str) -> Result<InviteCode, InviteCodeError> {
        let rest = text
            .trim()
            .strip_prefix(INVITE_PREFIX)
            .ok_or(InviteCodeError::Prefix)?;
        if rest.len() > 16 * 1024 {
            return Err(InviteCodeError::Content("too long"));
        }
        let bytes = bs58::decode(rest)
            .into_vec()
            .map_err(|e| InviteCodeError::Base58(e.to_string()))?;
        let Ok(Ipld::Map(m)) = data::decode(&bytes) else {
            return Err(InviteCodeError::Content("not a DAG-CBOR map"));
        };
        let link = |k: &str| match m.get(k) {
            Some(Ipld::Link(c)) => Ok(*c),
            _ => Err(InviteCodeError::Content("missing collective or invite id")),
        };
        let secret = match m.get("s") {
            Some(Ipld::Bytes(b)) if !b.is_empty() && b.len() <= 256 => b.clone(),
            _ => return Err(InviteCodeError::Content("missing secret")),
        };
        let peers = match m.get("p") {
            Some(Ipld::List(items)) => items
                .iter()
                .map(|i| match i {
                    Ipld::String(p) => Ok(p.clone()),
                    _ => Err(InviteCodeError::Content("a peer address is not a string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        Ok(InviteCode {
            collective: link("c")?,
            invite: link("i")?,
            secret,
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Inserted, Log, Op, OpKind};
    use guild_core::Keypair;

    #[test]
    fn invite_codes_round_trip_and_refuse_damage() {
        let code = InviteCode {
            collective: cids::cid_for_cbor(b"\xa0"),
            invite: cids::cid_for_cbor(b"\x80"),
            secret: vec![7; 32],
            peers: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW".into()],
        };
        let text = code.encode();
        assert!(text.starts_with("guild-invite:"));
        assert_eq!(InviteCode::decode(&format!(" {text}\n")).unwrap(), code);
        assert_eq!(InviteCode::decode("hello"), Err(InviteCodeError::Prefix));
        assert!(matches!(
            InviteCode::decode("guild-invite:0OIl"),
            Err(InviteCodeError::Base58(_))
        ));
        assert!(matches!(
            InviteCode::decode(&format!(
                "guild-invite:{}",
                bs58::encode(b"xyz").into_string()
            )),
            Err(InviteCodeError::Content(_))
        ));
    }

    #[test]
    fn builders_make_ops_the_log_accepts() {
        let founder = Keypair::from_secret_bytes(&[1; 32]);
        let member = Keypair::from_secret_bytes(&[2; 32]);
        let at = |s: i64| Datetime::from_unix_micros(1_700_000_000_000_000 + s * 1_000_000);
        let mut params = CharterParams::new("Poets");
        params.purpose = Some("Licensing poems".into());
        let genesis = Op::sign(
            OpKind::Charter,
            None,
            params.fields(),
            &founder,
            &[],
            &at(0),
        )
        .unwrap();
        let id = *genesis.id();
        let mut log = Log::new(id);
        assert_eq!(log.insert(genesis, 0), Inserted::Applied);
        assert_eq!(log.state().charter.unwrap().templates.len(), 5);
        let add = |log: &mut Log, kind, f, by: &Keypair, s| {
            let op = Op::sign(kind, Some(&id), f, by, &log.heads(), &at(s)).unwrap();
            assert_eq!(log.insert(op.clone(), 0), Inserted::Applied, "{kind:?}");
            op
        };
        let inv = add(
            &mut log,
            OpKind::Invite,
            invite(b"a secret of sixteen+ bytes", None, None),
            &founder,
            1,
        );
        add(
            &mut log,
            OpKind::Join,
            join(Some((inv.id(), b"a secret of sixteen+ bytes"))),
            &member,
            2,
        );
        let st = log.state();
        let templates = vec!["research-open".to_owned()];
        let f = consent(
            &st,
            &member.did(),
            &templates,
            &["coop.guild.data.text".into()],
            &at(3),
        );
        add(&mut log, OpKind::ConsentGrant, f, &member, 3);
        let st = log.state();
        let f = consent(&st, &member.did(), &templates, &[], &at(4));
        add(&mut log, OpKind::ConsentRevoke, f, &member, 4);
        assert_eq!(
            log.state().consents[&(member.did(), templates[0].clone())].rev,
            2
        );
        let st = log.state();
        let f = election_open(
            &st,
            ElectionKind::Stewards,
            Some(1),
            &[member.did()],
            None,
            &at(8),
        );
        let e = add(&mut log, OpKind::ElectionOpen, f, &founder, 5);
        let st = log.state();
        add(
            &mut log,
            OpKind::Ballot,
            ballot(&st, e.id(), &member.did(), &[member.did()]),
            &member,
            6,
        );
        let st = log.state();
        add(
            &mut log,
            OpKind::Ballot,
            ballot(&st, e.id(), &founder.did(), &[member.did()]),
            &founder,
            7,
        );
        let st = log.state();
        add(
            &mut log,
            OpKind::Seal,
            seal(&st, e.id()).unwrap(),
            &founder,
            8,
        );
        assert_eq!(
            log.state().stewards().collect::<Vec<_>>(),
            vec![member.did()]
        );
    }
}
