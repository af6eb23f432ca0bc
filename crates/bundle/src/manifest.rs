//! The bundle manifest (`coop.guild.bundle.manifest`): a typed struct, checked against its
//! lexicon, encoded as canonical DAG-CBOR (guild-core's data model, as guild-gov encodes
//! ops) and named by its CID.
//!
//! Every field is a function of the selection and of the proposal (its id and `createdAt`),
//! so every steward that selects the same records writes the same bytes. Credits count
//! records, not bytes (the listing gives CIDs, not sizes; a record's bytes are checked when
//! the bundle is packaged). Estimates are a slot the valuation fills in later.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, Ipld, data};
use guild_gov::body::OpBody;
use guild_gov::body::{BundleKind, CidRef, Cut, Open, Template};
use guild_gov::op::SignedOp;
use guild_lexicon::Registry;
use guild_license::{AgreementParty, Format, Publication};
use serde::{Deserialize, Serialize};

use crate::canary::{canary_guid, canary_string};
use crate::error::BundleError;
use crate::select::{SelectRequest, Selection};

/// The manifest's record type.
pub const NSID: &str = "coop.guild.bundle.manifest";

/// One record of the bundle (`coop.guild.bundle.manifest#entry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The member who wrote it.
    pub author: Did,
    /// The commit it is proven against.
    pub commit: CidRef,
    /// Its path, `collection/rkey`.
    pub path: String,
    /// Its CID.
    pub cid: CidRef,
    /// The consent grant op that covers it.
    pub consent: CidRef,
}

/// A member to credit (`coop.guild.bundle.manifest#credit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// The member.
    pub did: Did,
    /// The name to credit (the replica's, or the DID).
    pub name: String,
    /// How many of the bundle's records are theirs (always written by this crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

/// One member's estimated contribution (`coop.guild.bundle.manifest#estimate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// The member.
    pub member: Did,
    /// How it was computed (`knn-shapley`, `leave-one-out`, `group-shapley`, …).
    pub method: String,
    /// The estimate as an exact decimal string.
    pub value: String,
}

/// The licence in machine-readable forms (`coop.guild.bundle.manifest#licenceForms`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenceForms {
    /// ODRL 2.2 JSON-LD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odrl: Option<String>,
    /// RSL 1.0 XML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsl: Option<String>,
    /// AI-preferences `Content-Usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_usage: Option<String>,
    /// Content Signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_signals: Option<String>,
    /// CC signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_signals: Option<String>,
    /// TDMRep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdmrep: Option<String>,
}

/// A bundle manifest, field for field as its lexicon writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`NSID`].
    #[serde(rename = "$type")]
    pub record_type: String,
    /// The collective.
    pub collective: CidRef,
    /// The agreement (its offer op).
    pub agreement: CidRef,
    /// The proposal it was assembled from.
    pub proposal: CidRef,
    /// Training or evaluation.
    pub kind: Open<BundleKind>,
    /// The agreement's terms (its template id is `terms.id`).
    pub terms: Template,
    /// The cut: governance heads and the replica heads of the consenting members.
    pub cut: Cut,
    /// The records, by author DID then path.
    pub records: Vec<Entry>,
    /// The members to credit, by DID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credits: Vec<Credit>,
    /// Contribution estimates, by member then method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimates: Vec<Estimate>,
    /// The licence in machine-readable forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<LicenceForms>,
    /// Evaluation bundles: the canary string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// Evaluation bundles: the bundle's GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// The proposal's `createdAt`.
    pub created_at: Datetime,
}

/// What a manifest takes beyond the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestParams {
    /// The proposal op the bundle is assembled from.
    pub proposal: Cid,
    /// Its `createdAt`.
    pub created_at: Datetime,
    /// Where the collective publishes its licences: with it the manifest carries every
    /// machine-readable form of the licence; without, only the terms (every form is a
    /// function of them).
    pub publication: Option<Publication>,
    /// Contribution estimates (empty until valuation fills the slot).
    pub estimates: Vec<Estimate>,
    /// Carry every licence form, emitted with the bundle's deterministic publication
    /// ([`publication`]): what a node's manifests always do, so that every steward and a
    /// verifier compute the same bytes. When set, `publication` is not used.
    pub deterministic_licence: bool,
}

/// The publication a bundle's licence forms are emitted with: a function of the collective,
/// the agreement (its offer op), the builder and when the agreement came into force only, so
/// that every steward and an offline verifier compute the same forms.
///
/// - base `urn:guild:collective:<collective cid>/licences`;
/// - assigner `urn:guild:collective:<collective cid>`;
/// - target `urn:guild:agreement:<offer cid>/records`;
/// - location `/`;
/// - the agreement party: uid `urn:guild:agreement:<offer cid>`, the builder, the start.
pub fn publication(selection: &Selection) -> Publication {
    let collective = format!("urn:guild:collective:{}", selection.collective);
    let agreement = format!("urn:guild:agreement:{}", selection.agreement);
    Publication {
        base: format!("{collective}/licences"),
        assigner: collective,
        target: format!("{agreement}/records"),
        location: "/".to_owned(),
        agreement: Some(AgreementParty {
            uid: agreement,
            assignee: selection.builder.clone(),
            start: selection.start.clone(),
        }),
    }
}

impl ManifestParams {
    /// The selection request, the cut's heads and the manifest parameters a proposal op
    /// names: every licence form with the deterministic publication ([`publication`]), no
    /// estimates.
    pub fn from_proposal(
        op: &SignedOp,
    ) -> Result<(SelectRequest, Vec<Cid>, ManifestParams), BundleError> {
        let OpBody::BundleProposal(b) = op.body() else {
            return Err(BundleError::NotAProposal(*op.id()));
        };
        let request = SelectRequest {
            agreement: b.agreement.0,
            kind: b.kind.clone(),
        };
        let heads = b.cut.heads.iter().map(|h| h.0).collect();
        let params = ManifestParams {
            proposal: *op.id(),
            created_at: op.created_at().clone(),
            publication: None,
            estimates: Vec::new(),
            deterministic_licence: true,
        };
        Ok((request, heads, params))
    }
}

/// The built-in lexicons, parsed once.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::builtin)
}

impl Manifest {
    /// The manifest of `selection` assembled from the proposal in `params`.
    pub fn build(selection: &Selection, params: &ManifestParams) -> Result<Manifest, BundleError> {
        let records: Vec<Entry> = selection
            .records
            .iter()
            .map(|s| Entry {
                author: s.author.clone(),
                commit: CidRef(s.commit),
                path: s.path.clone(),
                cid: CidRef(s.cid),
                consent: CidRef(s.consent),
            })
            .collect();
        // Records are in author order, so each author's run is contiguous.
        let mut credits: Vec<Credit> = Vec::new();
        for e in &records {
            match credits.last_mut() {
                Some(c) if c.did == e.author => {
                    c.records = Some(c.records.unwrap_or(0) + 1);
                }
                _ => credits.push(Credit {
                    did: e.author.clone(),
                    name: selection
                        .names
                        .get(&e.author)
                        .cloned()
                        .unwrap_or_else(|| e.author.to_string()),
                    records: Some(1),
                }),
            }
        }
        let authors: BTreeSet<&Did> = credits.iter().map(|c| &c.did).collect();
        let mut estimates = params.estimates.clone();
        estimates.sort_by(|a, b| (&a.member, &a.method).cmp(&(&b.member, &b.method)));
        for (i, e) in estimates.iter().enumerate() {
            if !authors.contains(&e.member) {
                return Err(BundleError::Estimate(
                    e.member.clone(),
                    "no record of theirs in the bundle",
                ));
            }
            if i > 0 && estimates[i - 1].member == e.member && estimates[i - 1].method == e.method {
                return Err(BundleError::Estimate(e.member.clone(), "given twice"));
            }
        }
        let fixed;
        let chosen = if params.deterministic_licence {
            fixed = publication(selection);
            Some(&fixed)
        } else {
            params.publication.as_ref()
        };
        let licence = match chosen {
            None => None,
            Some(p) => {
                let form = |f: Format| f.emit(&selection.contract, p).map(Some);
                Some(LicenceForms {
                    odrl: form(Format::Odrl)?,
                    rsl: form(Format::Rsl)?,
                    content_usage: form(Format::ContentUsage)?,
                    content_signals: form(Format::ContentSignal)?,
                    cc_signals: form(Format::CcSignals)?,
                    tdmrep: form(Format::Tdmrep)?,
                })
            }
        };
        let guid = match selection.kind {
            BundleKind::Evaluation => Some(canary_guid(&params.proposal)),
            BundleKind::Training => None,
        };
        let manifest = Manifest {
            record_type: NSID.to_owned(),
            collective: CidRef(selection.collective),
            agreement: CidRef(selection.agreement),
            proposal: CidRef(params.proposal),
            kind: Open::Known(selection.kind),
            terms: selection.terms.clone(),
            cut: Cut {
                heads: selection.heads.iter().copied().map(CidRef).collect(),
                replicas: selection.replicas.clone(),
            },
            records,
            credits,
            estimates,
            licence,
            canary: guid.as_deref().map(canary_string),
            guid,
            created_at: params.created_at.clone(),
        };
        manifest.to_ipld()?;
        Ok(manifest)
    }

    /// The manifest as a data-model value, checked against its lexicon.
    pub fn to_ipld(&self) -> Result<Ipld, BundleError> {
        let value =
            ipld_core::serde::to_ipld(self).map_err(|e| BundleError::Encode(e.to_string()))?;
        registry()
            .validate_record(&value)
            .map_err(|e| BundleError::Lexicon(e.to_string()))?;
        Ok(value)
    }

    /// The manifest's canonical DAG-CBOR bytes and their CID (the bundle's id, which the
    /// stewards sign in their approvals).
    pub fn encode(&self) -> Result<(Cid, Vec<u8>), BundleError> {
        let value = self.to_ipld()?;
        data::encode_record(&value).map_err(|e| BundleError::Encode(e.to_string()))
    }

    /// Reads manifest bytes (strictly: canonical DAG-CBOR only).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        data::decode_as::<Manifest>(bytes).map_err(|e| e.to_string())
    }

    /// Whether this is an evaluation bundle's manifest.
    pub fn is_evaluation(&self) -> bool {
        self.kind.is(BundleKind::Evaluation)
    }
}
