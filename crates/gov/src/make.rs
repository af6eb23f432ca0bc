//! Builders for the fields of common ops, the standard licence templates, and the invite code
//! a member hands to a candidate. Pure: secrets and times are arguments.

use guild_core::syntax::{Datetime, Did, Nsid};
use guild_core::{Cid, cids};
use serde_bytes::ByteBuf;

use crate::body::{
    Admission, AdmissionPolicy, ApprovalMode, Attribution, BallotBody, CanaryPolicy, CharterBody,
    Choice, CidRef, Compensation, ConsentBody, FlowDown, InviteBody, JoinBody, Money, OpBody, Open,
    OpenBody, PayoutPolicy, Quorum, Reporting, Scope, SealBody, Stewardship, TellerRule, Template,
    VotingMethod,
};
use crate::state::{ElectionKind, State};

/// The standard licence templates (protocol.md §6): Training-Commercial-Standard,
/// Training-Commercial-Attribution, Retrieval-Attribution, Research-Open, Eval-Public.
pub fn standard_templates() -> Vec<Template> {
    [
        TemplateSpec {
            id: "training-commercial-standard",
            title: "Training, commercial",
            uses: &["train"],
            classes: &["commercial"],
            attribution: false,
            compensation: revenue_share(300),
            on_termination: "retain-trained-models",
            canary: false,
        },
        TemplateSpec {
            id: "training-commercial-attribution",
            title: "Training, commercial, with attribution",
            uses: &["train"],
            classes: &["commercial"],
            attribution: true,
            compensation: revenue_share(250),
            on_termination: "retain-trained-models",
            canary: false,
        },
        TemplateSpec {
            id: "retrieval-attribution",
            title: "Retrieval and display, with attribution",
            uses: &["retrieve-and-display", "index"],
            classes: &["commercial", "research"],
            attribution: true,
            compensation: Compensation::PerQuery {
                fee_per_thousand: Money {
                    amount: 100,
                    currency: "EUR".to_owned(),
                },
            },
            on_termination: "delete-records",
            canary: false,
        },
        TemplateSpec {
            id: "research-open",
            title: "Research, open",
            uses: &["train", "evaluate"],
            classes: &["research", "non-profit"],
            attribution: true,
            compensation: no_fee("open research"),
            on_termination: "retain-trained-models",
            canary: false,
        },
        TemplateSpec {
            id: "eval-public",
            title: "Evaluation, public",
            uses: &["evaluate"],
            classes: &["commercial", "research", "non-profit"],
            attribution: true,
            compensation: no_fee("public evaluation"),
            on_termination: "retain-all",
            canary: true,
        },
    ]
    .into_iter()
    .map(TemplateSpec::template)
    .collect()
}

/// What sets one standard template apart from the others.
struct TemplateSpec {
    id: &'static str,
    title: &'static str,
    uses: &'static [&'static str],
    classes: &'static [&'static str],
    attribution: bool,
    compensation: Compensation,
    on_termination: &'static str,
    canary: bool,
}

impl TemplateSpec {
    /// The template: version 1, flowing down to synthetic data but not downstream models,
    /// attribution (when required) in the model card, a year's term with 90 days' notice,
    /// and reports every 90 days.
    fn template(self) -> Template {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Template {
            id: self.id.to_owned(),
            title: self.title.to_owned(),
            version: 1,
            uses: strings(self.uses),
            user_classes: strings(self.classes),
            territories: None,
            flow_down: FlowDown {
                synthetic_data: true,
                downstream_models: false,
            },
            attribution: Attribution {
                required: self.attribution,
                form: self.attribution.then(|| "model-card".to_owned()),
                text: None,
            },
            compensation: self.compensation,
            term_days: Some(365),
            notice_days: 90,
            on_termination: self.on_termination.to_owned(),
            reporting: Reporting {
                required: true,
                interval_days: Some(90),
                contents: None,
            },
            canary: self.canary.then_some(true),
            collections: None,
        }
    }
}

/// A share of gross revenue, in basis points.
fn revenue_share(bp: u32) -> Compensation {
    Compensation::RevenueShare {
        share: bp,
        base: "gross-revenue".to_owned(),
        minimum: None,
    }
}

/// No fee, and why.
fn no_fee(why: &str) -> Compensation {
    Compensation::NoFee {
        reason: Some(why.to_owned()),
    }
}

/// The rules a collective is founded with.
#[derive(Debug, Clone, PartialEq)]
pub struct CharterParams {
    /// The collective's name.
    pub name: String,
    /// What it is for.
    pub purpose: Option<String>,
    /// Who may ask to join.
    pub admission_policy: AdmissionPolicy,
    /// Who admits a candidate who asked.
    pub admission_approval: ApprovalMode,
    /// Days an invite stays valid.
    pub invite_ttl_days: i64,
    /// Steward seats.
    pub seats: i64,
    /// A steward's term in days.
    pub term_days: i64,
    /// Share of yes votes an amendment needs (basis points).
    pub amendment_bp: u32,
    /// Share of yes votes a removal needs; `None`: stewards remove.
    pub removal_bp: Option<u32>,
    /// Turnout a vote needs (basis points of the electorate).
    pub turnout_bp: u32,
    /// Steward countersignatures for agreements and bundles.
    pub countersignatures: u32,
    /// Record types members may contribute.
    pub accepted_lexicons: Vec<Nsid>,
    /// Licence templates offered.
    pub templates: Vec<Template>,
    /// `monthly`, `quarterly` or `per-agreement`.
    pub payout_period: String,
    /// `equal`, `knn-shapley`, `leave-one-out` or `group-shapley`.
    pub payout_method: String,
    /// Whether agreements' prices stay off the public agreement list.
    pub private_prices: bool,
    /// Per-licensee canary records in every bundle (0: none).
    pub canaries_per_bundle: u32,
}

impl CharterParams {
    /// Working defaults: invite only, steward approval, 3 seats for a year, amendments by
    /// two thirds, removal by stewards, 30 % turnout, one countersignature, text and file
    /// records, the standard templates, equal monthly payouts.
    pub fn new(name: &str) -> CharterParams {
        CharterParams {
            name: name.to_owned(),
            purpose: None,
            admission_policy: AdmissionPolicy::InviteOnly,
            admission_approval: ApprovalMode::Steward,
            invite_ttl_days: 14,
            seats: 3,
            term_days: 365,
            amendment_bp: 6667,
            removal_bp: None,
            turnout_bp: 3000,
            countersignatures: 1,
            accepted_lexicons: ["coop.guild.data.text", "coop.guild.data.file"]
                .into_iter()
                .filter_map(|n| Nsid::parse(n).ok())
                .collect(),
            templates: standard_templates(),
            payout_period: "monthly".into(),
            payout_method: "equal".into(),
            private_prices: false,
            canaries_per_bundle: 0,
        }
    }

    /// The charter op's body.
    pub fn body(&self) -> OpBody {
        OpBody::Charter(Box::new(CharterBody {
            name: self.name.clone(),
            purpose: self.purpose.clone(),
            admission: Admission {
                policy: self.admission_policy.into(),
                approval: self.admission_approval.into(),
                invite_ttl_days: Some(self.invite_ttl_days),
            },
            stewardship: Stewardship {
                seats: self.seats,
                term_days: self.term_days,
                election_method: VotingMethod::Approval.into(),
                tellers: Some(Open::Known(TellerRule::Stewards)),
            },
            quorum: Quorum {
                amendment: self.amendment_bp,
                removal: self.removal_bp,
                turnout: self.turnout_bp,
                countersignatures: self.countersignatures,
            },
            accepted_lexicons: self.accepted_lexicons.clone(),
            licence_templates: self.templates.clone(),
            payout_policy: PayoutPolicy {
                period: self.payout_period.clone(),
                method: self.payout_method.clone(),
                steward_share: None,
                reserve_share: None,
            },
            // Absent unless set, so that a default charter's bytes do not change.
            private_prices: self.private_prices.then_some(true),
            canaries: (self.canaries_per_bundle > 0).then_some(CanaryPolicy {
                per_bundle: self.canaries_per_bundle,
            }),
        }))
    }
}

/// An invite's body: the hash of the one-time `secret`, optionally the invitee and an
/// expiry.
pub fn invite(secret: &[u8], invitee: Option<&Did>, expires_at: Option<&Datetime>) -> OpBody {
    OpBody::Invite(Box::new(InviteBody {
        secret_hash: ByteBuf::from(cids::sha256(secret).to_vec()),
        invitee: invitee.cloned(),
        expires_at: expires_at.cloned(),
        note: None,
    }))
}

/// A join's body: with an invite, its id and the revealed secret; without, a request.
pub fn join(invite: Option<(&Cid, &[u8])>) -> OpBody {
    OpBody::Join(Box::new(match invite {
        Some((id, secret)) => JoinBody {
            invite: Some(CidRef(*id)),
            secret: Some(ByteBuf::from(secret.to_vec())),
            statement: None,
        },
        None => JoinBody::default(),
    }))
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
    use crate::op::Op;
    use crate::state::Reason;
    let Some(founder) = keys.first() else {
        return Err(Reason::NoCharter);
    };
    let at = |i: i64| Datetime::from_unix_micros(start_micros.saturating_add(i * 1_000));
    let mut params = CharterParams::new(name);
    params.admission_policy = AdmissionPolicy::InviteOnly;
    let genesis = Op::write(&params.body(), None, founder, &[], &at(0))?;
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
        let body = invite(&secret, None, None);
        let invite = Op::write(&body, Some(&id), founder, &log.heads(), &at(2 * i as i64))?;
        let invite_id = *invite.id();
        add(&mut log, invite)?;
        let body = join(Some((&invite_id, &secret)));
        let join = Op::write(&body, Some(&id), key, &log.heads(), &at(2 * i as i64 + 1))?;
        add(&mut log, join)?;
    }
    Ok((
        id,
        log.export()
            .into_iter()
            .map(std::borrow::Cow::into_owned)
            .collect(),
    ))
}

/// A consent write for `templates` (wrap it in [`OpBody::ConsentGrant`] or
/// [`OpBody::ConsentRevoke`]), at the register revision that follows the member's highest in
/// `state`, with a scope of some collections (or the whole repo when `collections` is empty),
/// effective from `from`.
pub fn consent(
    state: &State,
    member: &Did,
    templates: &[String],
    collections: &[Nsid],
    from: &Datetime,
) -> ConsentBody {
    let rev = templates
        .iter()
        .filter_map(|t| {
            state
                .consents
                .get(&(member.clone(), std::sync::Arc::from(t.as_str())))
        })
        .map(|c| c.rev)
        .max()
        .unwrap_or(0)
        + 1;
    let scope = if collections.is_empty() {
        Scope::Repo {}
    } else {
        Scope::Collections {
            collections: collections.to_vec(),
        }
    };
    ConsentBody {
        templates: templates
            .iter()
            .map(|t| crate::body::shared_str(t))
            .collect(),
        rev,
        scope: Some(std::sync::Arc::new(scope)),
        effective_from: from.clone(),
        grant: None,
        note: None,
        reason: None,
    }
}

/// An election open op's body against `state` (the state the op will be written on): the
/// electorate and tellers are taken from it. Fails if a teller is not a DID (the state's
/// members always are).
pub fn election_open(
    state: &State,
    kind: ElectionKind,
    seats: Option<i64>,
    candidates: &[Did],
    proposal: Option<&Cid>,
    closes_after: &Datetime,
) -> Result<OpBody, guild_core::syntax::SyntaxError> {
    let tellers = state.tellers().into_iter().collect();
    Ok(OpBody::ElectionOpen(Box::new(OpenBody {
        kind: kind.into(),
        method: VotingMethod::Approval.into(),
        seats,
        candidates: (!candidates.is_empty()).then(|| candidates.to_vec()),
        proposal: proposal.map(|p| CidRef(*p)),
        electorate: CidRef(state.electorate_cid()),
        tellers,
        closes_after: closes_after.clone(),
    })))
}

/// A ballot's body: the voter's next revision in `state`, approving `choices`.
pub fn ballot(state: &State, election: &Cid, voter: &str, choices: &[Choice]) -> OpBody {
    let rev = state
        .elections
        .get(election)
        .and_then(|e| e.ballots.get(voter))
        .map_or(0, |v| v.rev + 1);
    OpBody::Ballot(Box::new(BallotBody {
        election: CidRef(*election),
        rev,
        approvals: choices.to_vec(),
    }))
}

/// A teller's seal of `election` as `state` counts it, or `None` if there is no such
/// election or it has no charter.
pub fn seal(state: &State, election: &Cid) -> Option<OpBody> {
    let e = state.elections.get(election)?;
    let counted = e.counted();
    let tally = e.tally(election, &counted, state.charter.as_deref()?);
    Some(OpBody::Seal(Box::new(SealBody {
        election: CidRef(*election),
        ballot_set: CidRef(counted.cid()),
        ballot_count: counted.len() as u64,
        result: tally.to_result(),
    })))
}

/// What a candidate needs to join: the collective, the invite op, the one-time secret and
/// where to reach members. Written as `guild-invite:` followed by base58btc of a DAG-CBOR map
/// `{v: 1, c: collective, i: invite, s: secret, p: [multiaddr]}` ([`INVITE_CODE_VERSION`]).
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

/// The invite code format's version.
pub const INVITE_CODE_VERSION: u64 = 1;

/// The wire form of an invite code.
#[derive(serde::Serialize, serde::Deserialize)]
struct InviteCodeWire {
    v: u64,
    c: Cid,
    i: Cid,
    s: ByteBuf,
    p: Vec<String>,
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
    /// The invite was written by a version of Guild this one cannot read.
    #[error("the invite is version {0}; this node reads version {INVITE_CODE_VERSION}")]
    Version(u64),
    /// The invite could not be encoded.
    #[error("the invite cannot be encoded: {0}")]
    Encode(String),
}

const INVITE_PREFIX: &str = "guild-invite:";

impl InviteCode {
    /// The invite as a string.
    pub fn encode(&self) -> Result<String, InviteCodeError> {
        let wire = InviteCodeWire {
            v: INVITE_CODE_VERSION,
            c: self.collective,
            i: self.invite,
            s: ByteBuf::from(self.secret.clone()),
            p: self.peers.clone(),
        };
        let bytes = guild_core::data::encode_serde(&wire)
            .map_err(|e| InviteCodeError::Encode(e.to_string()))?;
        Ok(format!(
            "{INVITE_PREFIX}{}",
            bs58::encode(bytes).into_string()
        ))
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
        let wire: InviteCodeWire = guild_core::data::decode_as(&bytes)
            .map_err(|_| InviteCodeError::Content("not an invite code's DAG-CBOR map"))?;
        if wire.v != INVITE_CODE_VERSION {
            return Err(InviteCodeError::Version(wire.v));
        }
        if wire.s.is_empty() || wire.s.len() > 256 {
            return Err(InviteCodeError::Content(
                "the secret must be 1 to 256 bytes",
            ));
        }
        Ok(InviteCode {
            collective: wire.c,
            invite: wire.i,
            secret: wire.s.into_vec(),
            peers: wire.p,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Inserted, Log, Op, SignedOp};
    use guild_core::Keypair;

    #[test]
    fn invite_codes_round_trip_and_refuse_damage() {
        let code = InviteCode {
            collective: cids::cid_for_cbor(b"\xa0"),
            invite: cids::cid_for_cbor(b"\x80"),
            secret: vec![7; 32],
            peers: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW".into()],
        };
        let text = code.encode().unwrap();
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
    fn invite_codes_of_another_version_are_refused_by_name() {
        let wire = InviteCodeWire {
            v: 2,
            c: cids::cid_for_cbor(b"\xa0"),
            i: cids::cid_for_cbor(b"\x80"),
            s: ByteBuf::from(vec![7; 32]),
            p: Vec::new(),
        };
        let bytes = guild_core::data::encode_serde(&wire).unwrap();
        let text = format!("guild-invite:{}", bs58::encode(bytes).into_string());
        assert_eq!(InviteCode::decode(&text), Err(InviteCodeError::Version(2)));
    }

    fn did(k: &Keypair) -> Did {
        Did::parse(&k.did()).unwrap()
    }

    #[test]
    fn builders_make_ops_the_log_accepts() {
        let founder = Keypair::from_secret_bytes(&[1; 32]);
        let member = Keypair::from_secret_bytes(&[2; 32]);
        let at = |s: i64| Datetime::from_unix_micros(1_700_000_000_000_000 + s * 1_000_000);
        let mut params = CharterParams::new("Poets");
        params.purpose = Some("Licensing poems".into());
        let genesis = Op::write(&params.body(), None, &founder, &[], &at(0)).unwrap();
        let id = *genesis.id();
        let mut log = Log::new(id);
        assert_eq!(log.insert(genesis, 0), Inserted::Applied);
        assert_eq!(log.state().charter.unwrap().templates.len(), 5);
        let add = |log: &mut Log, body: OpBody, by: &Keypair, s| -> SignedOp {
            let op = Op::write(&body, Some(&id), by, &log.heads(), &at(s)).unwrap();
            assert_eq!(log.insert(op.clone(), 0), Inserted::Applied, "{body:?}");
            op
        };
        let inv = add(
            &mut log,
            invite(b"a secret of sixteen+ bytes", None, None),
            &founder,
            1,
        );
        add(
            &mut log,
            join(Some((inv.id(), b"a secret of sixteen+ bytes"))),
            &member,
            2,
        );
        let st = log.state();
        let templates = vec!["research-open".to_owned()];
        let text = Nsid::parse("coop.guild.data.text").unwrap();
        let f = consent(&st, &did(&member), &templates, &[text], &at(3));
        add(&mut log, OpBody::ConsentGrant(Box::new(f)), &member, 3);
        let st = log.state();
        let f = consent(&st, &did(&member), &templates, &[], &at(4));
        add(&mut log, OpBody::ConsentRevoke(Box::new(f)), &member, 4);
        assert_eq!(
            log.state()
                .consents
                .register(&member.did(), &templates[0])
                .map(|c| c.rev),
            Some(2)
        );
        let st = log.state();
        let f = election_open(
            &st,
            ElectionKind::Stewards,
            Some(1),
            &[did(&member)],
            None,
            &at(8),
        )
        .unwrap();
        let e = add(&mut log, f, &founder, 5);
        let st = log.state();
        let choice = [Choice::Candidate(did(&member))];
        add(
            &mut log,
            ballot(&st, e.id(), &member.did(), &choice),
            &member,
            6,
        );
        let st = log.state();
        add(
            &mut log,
            ballot(&st, e.id(), &founder.did(), &choice),
            &founder,
            7,
        );
        let st = log.state();
        add(&mut log, seal(&st, e.id()).unwrap(), &founder, 8);
        assert_eq!(
            log.state().stewards().collect::<Vec<_>>(),
            vec![member.did()]
        );
    }
}
