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

use crate::canary::{canary_guid, canary_string, licensee_canaries};
use crate::error::BundleError;
use crate::select::{SelectRequest, Selection};

/// The manifest's record type.
pub const NSID: &str = "coop.guild.bundle.manifest";

/// The record type of a page of the manifest's records.
pub const PAGE_NSID: &str = "coop.guild.bundle.page";

/// Records to a page: every page but the last holds exactly this many, so the paging, and
/// with it every page CID, is a function of the records alone. With usual DIDs and paths an
/// entry is about 330 bytes, a page about 330 KB; a page over the 1 MB record limit (entries
/// averaging over 1 KB) is refused when the manifest is built.
pub const PAGE_SIZE: usize = 1_000;

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
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// The member.
    pub member: Did,
    /// How it was computed (`knn-shapley`, `leave-one-out`, `group-shapley`, …).
    pub method: String,
    /// The estimate as an exact decimal string.
    pub value: String,
    /// The method's parameters (K, metric, features, exact or sampled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
    /// `sha256:<hex>` of the evaluation set (its points' DAG-CBOR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_set: Option<String>,
    /// `sha256:<hex>` of the baseline the value is over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
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

/// A bundle manifest in memory: the root block's fields, with the records of its pages
/// (`recordPages`, `recordCount` in the root) as one list.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Always [`NSID`].
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
    /// The records, by author DID then path (in the blocks: [`PAGE_SIZE`] to a page).
    pub records: Vec<Entry>,
    /// The members to credit, by DID.
    pub credits: Vec<Credit>,
    /// Contribution estimates, by member then method.
    pub estimates: Vec<Estimate>,
    /// The licence in machine-readable forms.
    pub licence: Option<LicenceForms>,
    /// Evaluation bundles: the canary string.
    pub canary: Option<String>,
    /// Evaluation bundles: the bundle's GUID.
    pub guid: Option<String>,
    /// The per-licensee canary records' CIDs, in index order (empty unless the charter
    /// asks for them and the bundle has records): [`crate::canary::licensee_canaries`].
    pub licensee_canaries: Vec<Cid>,
    /// The proposal's `createdAt`.
    pub created_at: Datetime,
}

/// The manifest's root block, field for field as its lexicon writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Root {
    #[serde(rename = "$type")]
    record_type: String,
    collective: CidRef,
    agreement: CidRef,
    proposal: CidRef,
    kind: Open<BundleKind>,
    terms: Template,
    cut: Cut,
    record_count: u64,
    record_pages: Vec<Cid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    credits: Vec<Credit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    estimates: Vec<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    licence: Option<LicenceForms>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    canary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    licensee_canaries: Vec<Cid>,
    created_at: Datetime,
}

/// A page of the manifest's records (`coop.guild.bundle.page`), to encode.
#[derive(Serialize)]
struct PageOut<'a> {
    #[serde(rename = "$type")]
    record_type: &'static str,
    entries: &'a [Entry],
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
pub(crate) fn registry() -> &'static Registry {
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
        let manifest = Manifest::build_from(selection, records, params)?;
        manifest.check()?;
        Ok(manifest)
    }

    /// The manifest of `selection` with `records` standing for its selected records (the
    /// entries [`Manifest::build`] makes of them; a verifier that checked a file's entries one
    /// by one hands those in), not checked against the lexicons (the caller encodes it).
    pub(crate) fn build_from(
        selection: &Selection,
        records: Vec<Entry>,
        params: &ManifestParams,
    ) -> Result<Manifest, BundleError> {
        // Records are in author order, so each author's run is contiguous.
        let mut runs: Vec<(&Did, u64)> = Vec::new();
        for e in &records {
            match runs.last_mut() {
                Some((did, n)) if **did == e.author => *n += 1,
                _ => runs.push((&e.author, 1)),
            }
        }
        let mut manifest = Manifest::build_counted(selection, runs, records.len(), params)?;
        manifest.records = records;
        Ok(manifest)
    }

    /// [`Manifest::build_from`] without the entries: each author's number of records (in
    /// the entries' author order) and their total stand for them. The manifest's `records`
    /// is empty; [`Manifest::encode_root_with`] is told the count.
    pub(crate) fn build_counted<'d>(
        selection: &Selection,
        runs: impl IntoIterator<Item = (&'d Did, u64)>,
        record_count: usize,
        params: &ManifestParams,
    ) -> Result<Manifest, BundleError> {
        let credits: Vec<Credit> = runs
            .into_iter()
            .map(|(did, n)| Credit {
                did: did.clone(),
                name: selection
                    .names
                    .get(did)
                    .cloned()
                    .unwrap_or_else(|| did.to_string()),
                records: Some(n),
            })
            .collect();
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
        let licensee_canaries = if record_count == 0 {
            Vec::new()
        } else {
            licensee_canaries(
                &params.proposal,
                &selection.builder,
                &params.created_at,
                selection.canaries,
            )?
            .into_iter()
            .map(|c| c.cid)
            .collect()
        };
        Ok(Manifest {
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
            records: Vec::new(),
            credits,
            estimates,
            licence,
            canary: guid.as_deref().map(canary_string),
            guid,
            licensee_canaries,
            created_at: params.created_at.clone(),
        })
    }

    /// The root block as a data-model value, checked against its lexicon (the records are
    /// named by `recordPages`, their pages' CIDs, which this computes).
    pub fn to_ipld(&self) -> Result<Ipld, BundleError> {
        let pages = self.pages()?;
        self.root_ipld(
            self.records.len() as u64,
            pages.iter().map(|(c, _)| *c).collect(),
        )
    }

    fn root_ipld(&self, record_count: u64, record_pages: Vec<Cid>) -> Result<Ipld, BundleError> {
        let root = Root {
            record_type: self.record_type.clone(),
            collective: self.collective,
            agreement: self.agreement,
            proposal: self.proposal,
            kind: self.kind.clone(),
            terms: self.terms.clone(),
            cut: self.cut.clone(),
            record_count,
            record_pages,
            credits: self.credits.clone(),
            estimates: self.estimates.clone(),
            licence: self.licence.clone(),
            canary: self.canary.clone(),
            guid: self.guid.clone(),
            licensee_canaries: self.licensee_canaries.clone(),
            created_at: self.created_at.clone(),
        };
        checked(&root)
    }

    /// The pages' CIDs and bytes, in order. Encoded from the typed entries directly (a
    /// million records would spend seconds going through generic values): every field but
    /// the path is a checked type, so the page lexicon's one other rule is checked here.
    fn pages(&self) -> Result<Vec<(Cid, Vec<u8>)>, BundleError> {
        self.records
            .chunks(PAGE_SIZE)
            .map(|entries| {
                check_entries(entries).map_err(BundleError::Lexicon)?;
                let bytes = data::encode_serde(&PageOut {
                    record_type: PAGE_NSID,
                    entries,
                })
                .map_err(|e| BundleError::Encode(e.to_string()))?;
                if bytes.len() > data::MAX_RECORD_BYTES {
                    return Err(BundleError::Lexicon(format!(
                        "a record page of {} bytes is over the record limit of {}",
                        bytes.len(),
                        data::MAX_RECORD_BYTES
                    )));
                }
                Ok((guild_core::cids::cid_for_cbor(&bytes), bytes))
            })
            .collect()
    }

    /// The root block for `record_count` records in pages whose CIDs the caller already has
    /// (a verifier that checked the file's pages and entries): the pages are a function of
    /// the records, so they need not be encoded again, nor the records held here.
    pub(crate) fn encode_root_with(
        &self,
        record_count: u64,
        record_pages: Vec<Cid>,
    ) -> Result<(Cid, Vec<u8>), BundleError> {
        let value = self.root_ipld(record_count, record_pages)?;
        data::encode_record(&value).map_err(|e| BundleError::Encode(e.to_string()))
    }

    /// The manifest's root block: its canonical DAG-CBOR bytes and their CID (the bundle's
    /// id, which the stewards sign in their approvals; it covers the pages by their CIDs).
    pub fn encode(&self) -> Result<(Cid, Vec<u8>), BundleError> {
        let mut blocks = self.blocks()?;
        if blocks.is_empty() {
            return Err(BundleError::Encode("no root block".into()));
        }
        Ok(blocks.swap_remove(0))
    }

    /// Every block of the manifest: the root first, then its record pages in order.
    pub fn blocks(&self) -> Result<Vec<(Cid, Vec<u8>)>, BundleError> {
        let pages = self.pages()?;
        let value = self.root_ipld(
            self.records.len() as u64,
            pages.iter().map(|(c, _)| *c).collect(),
        )?;
        let root = data::encode_record(&value).map_err(|e| BundleError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(pages.len() + 1);
        out.push(root);
        out.extend(pages);
        Ok(out)
    }

    /// Reads a manifest from its root block and its pages, fetched by CID with `get`
    /// (strictly: canonical DAG-CBOR, every block hashing to its CID, each valid against its
    /// lexicon, the pages full but the last and their entries adding up to `recordCount`).
    pub fn decode_blocks(
        root: &Cid,
        get: impl Fn(&Cid) -> Option<Vec<u8>>,
    ) -> Result<Manifest, String> {
        let bytes = get(root).ok_or_else(|| format!("the manifest block {root} is missing"))?;
        let mut reading = Reading::root(root, &bytes, false)?;
        while let Some(cid) = reading.next_page().copied() {
            let page = get(&cid).ok_or_else(|| format!("the record page {cid} is missing"))?;
            reading.page(&cid, &page, false)?;
        }
        reading.finish()
    }

    /// Reads a manifest's root block alone (strictly: canonical DAG-CBOR only). Its records
    /// are in its pages: a root with any page is refused (see [`Manifest::decode_blocks`]).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let cid = guild_core::cids::cid_for_cbor(bytes);
        Manifest::decode_blocks(&cid, |c| (*c == cid).then(|| bytes.to_vec()))
    }

    /// The manifest as a small CAR v1: its root block as the one root, then its pages.
    pub fn to_car(&self) -> Result<Vec<u8>, BundleError> {
        let blocks = self.blocks()?;
        let roots: Vec<Cid> = blocks.first().map(|(c, _)| *c).into_iter().collect();
        Ok(guild_repo::car::car_bytes(
            &roots,
            blocks.iter().map(|(c, b)| (c, b.as_slice())),
        ))
    }

    /// Reads a manifest CAR written by [`Manifest::to_car`] (every block's hash checked);
    /// returns the root's CID with it.
    pub fn from_car(bytes: &[u8]) -> Result<(Cid, Manifest), String> {
        let car = guild_repo::read_car(bytes).map_err(|e| e.to_string())?;
        let [root] = car.roots[..] else {
            return Err(format!("{} roots, not one", car.roots.len()));
        };
        let m = Manifest::decode_blocks(&root, |c| car.blocks.get(c).map(<[u8]>::to_vec))?;
        if car.blocks.len() != m.records.len().div_ceil(PAGE_SIZE) + 1 {
            return Err("the CAR holds blocks that are not the manifest's".into());
        }
        Ok((root, m))
    }

    /// Checks the root and every page against their lexicons.
    pub fn check(&self) -> Result<(), BundleError> {
        self.blocks().map(|_| ())
    }

    /// Whether this is an evaluation bundle's manifest.
    pub fn is_evaluation(&self) -> bool {
        self.kind.is(BundleKind::Evaluation)
    }
}

/// `value` as a data-model value, checked against its lexicon.
fn checked<T: Serialize>(value: &T) -> Result<Ipld, BundleError> {
    let value = ipld_core::serde::to_ipld(value).map_err(|e| BundleError::Encode(e.to_string()))?;
    registry()
        .validate_record(&value)
        .map_err(|e| BundleError::Lexicon(e.to_string()))?;
    Ok(value)
}

/// Checks that `bytes` hash to `cid` (unless the caller just did), decode strictly and are
/// valid against the lexicon.
fn decode_checked<T: serde::de::DeserializeOwned>(
    cid: &Cid,
    bytes: &[u8],
    hashed: bool,
) -> Result<T, String> {
    if !hashed {
        guild_core::cids::verify_block(cid, bytes).map_err(|e| format!("block {cid}: {e}"))?;
    }
    let value = data::decode(bytes).map_err(|e| format!("block {cid}: {e}"))?;
    registry()
        .validate_record(&value)
        .map_err(|e| format!("block {cid}: {e}"))?;
    data::decode_as::<T>(bytes).map_err(|e| format!("block {cid}: {e}"))
}

/// Where a manifest's entries go as its pages are read: a vector of [`Entry`], or the
/// compact form verification holds a million of (`crate::entries`).
pub(crate) trait Records: Default {
    /// One page's entries, decoded on its own (on any core).
    type Page: EntrySink + Default + Send;
    /// Room for `n` entries.
    fn reserve(&mut self, n: usize);
    /// Appends a page's entries; returns how many.
    fn append(&mut self, page: Self::Page) -> Result<usize, String>;
}

impl Records for Vec<Entry> {
    type Page = Vec<Entry>;

    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }

    fn append(&mut self, page: Vec<Entry>) -> Result<usize, String> {
        let n = page.len();
        self.extend(page);
        Ok(n)
    }
}

/// A manifest read block by block: the root, then each page it names, in order (what
/// verification does as the blocks stream past).
pub(crate) struct Reading<S = Vec<Entry>> {
    root: Root,
    /// The entries of the pages read so far, in order (appended page by page, so that a
    /// million entries are held once, not once per page and once more).
    records: S,
    /// How many entries each page read so far held.
    sizes: Vec<usize>,
    /// Pages taken but not decoded yet ([`Reading::expect_page`]), after those.
    pending: Vec<Cid>,
}

impl<S: Records> Reading<S> {
    /// Starts from the root block (`hashed`: the caller checked its hash).
    pub(crate) fn root(cid: &Cid, bytes: &[u8], hashed: bool) -> Result<Reading<S>, String> {
        let root = decode_root(cid, bytes, hashed)?;
        Ok(Reading {
            records: S::default(),
            sizes: Vec::with_capacity(root.record_pages.len()),
            pending: Vec::new(),
            root,
        })
    }

    /// The record pages the root names, in order.
    pub(crate) fn page_cids(&self) -> &[Cid] {
        &self.root.record_pages
    }

    /// The CID of the page to read next, if any is left.
    pub(crate) fn next_page(&self) -> Option<&Cid> {
        self.root
            .record_pages
            .get(self.sizes.len() + self.pending.len())
    }

    fn expect_next(&self, cid: &Cid) -> Result<(), String> {
        match self.next_page() {
            Some(next) if next == cid => Ok(()),
            Some(next) => Err(format!(
                "record page {} is {next}, not {cid}",
                self.sizes.len() + self.pending.len()
            )),
            None => Err(format!("{cid} is not one of the record pages")),
        }
    }

    /// Reads the next page (`hashed`: the caller checked its hash).
    pub(crate) fn page(&mut self, cid: &Cid, bytes: &[u8], hashed: bool) -> Result<(), String> {
        self.expect_next(cid)?;
        if !self.pending.is_empty() {
            return Err("pages taken as bytes are not decoded yet".into());
        }
        let mut entries = S::Page::default();
        decode_page_into(cid, bytes, hashed, &mut entries)?;
        self.append(entries)
    }

    /// Takes the next page's place (its CID checked against the root's list); its entries
    /// come later, decoded by the caller with [`decode_page_into`], in order, through
    /// [`Reading::push_decoded`].
    pub(crate) fn expect_page(&mut self, cid: &Cid) -> Result<(), String> {
        self.expect_next(cid)?;
        self.pending.push(*cid);
        Ok(())
    }

    /// The entries of the oldest page taken with [`Reading::expect_page`].
    pub(crate) fn push_decoded(&mut self, entries: S::Page) -> Result<(), String> {
        if self.pending.is_empty() {
            return Err("a page decoded that was not taken".into());
        }
        self.pending.remove(0);
        self.append(entries)
    }

    fn append(&mut self, entries: S::Page) -> Result<(), String> {
        if self.sizes.is_empty() {
            // The count is the root's claim: reserve for at most a million entries up front.
            let claimed = usize::try_from(self.root.record_count).unwrap_or(usize::MAX);
            self.records.reserve(claimed.min(1 << 20));
        }
        let n = self.records.append(entries)?;
        self.sizes.push(n);
        Ok(())
    }

    /// The manifest, once every page is read, without its entries (its `records` is
    /// empty), and the entries.
    pub(crate) fn finish_parts(self) -> Result<(Manifest, S), String> {
        if let Some(next) = self.next_page() {
            return Err(format!("the record page {next} is missing"));
        }
        if let Some(page) = self.pending.first() {
            return Err(format!("the record page {page} is not decoded"));
        }
        Ok((assemble(self.root, &self.sizes)?, self.records))
    }
}

impl Reading<Vec<Entry>> {
    /// The manifest, once every page is read.
    pub(crate) fn finish(self) -> Result<Manifest, String> {
        let (mut manifest, records) = self.finish_parts()?;
        manifest.records = records;
        Ok(manifest)
    }
}

fn decode_root(cid: &Cid, bytes: &[u8], hashed: bool) -> Result<Root, String> {
    let r: Root = decode_checked(cid, bytes, hashed)?;
    if r.record_type != NSID {
        return Err(format!("block {cid} is a {}, not a {NSID}", r.record_type));
    }
    let expected = usize::try_from(r.record_count)
        .unwrap_or(usize::MAX)
        .div_ceil(PAGE_SIZE);
    if r.record_pages.len() != expected {
        return Err(format!(
            "{} record pages for {} records (pages of {PAGE_SIZE})",
            r.record_pages.len(),
            r.record_count
        ));
    }
    Ok(r)
}

/// The longest path the entry lexicon allows.
const MAX_PATH: usize = 1024;

/// The page lexicon's rules that typed entries do not already keep: a page holds 1 to
/// [`PAGE_SIZE`] entries, each path at most [`MAX_PATH`] bytes.
fn check_entries(entries: &[Entry]) -> Result<(), String> {
    if entries.is_empty() || entries.len() > PAGE_SIZE {
        return Err(format!(
            "a record page of {} entries (1 to {PAGE_SIZE})",
            entries.len()
        ));
    }
    match entries.iter().find(|e| e.path.len() > MAX_PATH) {
        Some(e) => Err(format!(
            "a path of {} bytes (at most {MAX_PATH})",
            e.path.len()
        )),
        None => Ok(()),
    }
}

/// A page's entry as written, its strings borrowed from the block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn<'a> {
    #[serde(borrow)]
    author: &'a str,
    #[serde(borrow)]
    commit: &'a str,
    #[serde(borrow)]
    path: &'a str,
    #[serde(borrow)]
    cid: &'a str,
    #[serde(borrow)]
    consent: &'a str,
}

/// A page as written, its strings borrowed from the block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageBorrowed<'a> {
    #[serde(rename = "$type", borrow)]
    record_type: &'a str,
    #[serde(borrow)]
    entries: Vec<EntryIn<'a>>,
}

/// Lower-case base32 without padding, trailing bits checked: the multibase `b` alphabet.
fn base32_lower() -> &'static data_encoding::Encoding {
    static ENCODING: OnceLock<data_encoding::Encoding> = OnceLock::new();
    ENCODING.get_or_init(|| {
        let mut spec = data_encoding::Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        spec.check_trailing_bits = true;
        // (a fixed, valid specification)
        spec.encoding()
            .unwrap_or_else(|_| data_encoding::BASE32_NOPAD.clone())
    })
}

/// A CID string in its canonical form (what [`CidRef`] writes: `b` and the CIDv1's bytes
/// in lower-case base32), decoded without allocating: the alphabet, the trailing bits, the
/// CID's own minimal varints and its length make the string the only one for its CID.
fn canonical_cid(s: &str) -> Result<Cid, String> {
    let not = || format!("{s} is not a CID in its canonical form");
    let body = s.strip_prefix('b').ok_or_else(not)?;
    let enc = base32_lower();
    let len = enc.decode_len(body.len()).map_err(|_| not())?;
    let mut buf = [0u8; 128];
    let out = buf.get_mut(..len).ok_or_else(not)?;
    let n = enc.decode_mut(body.as_bytes(), out).map_err(|_| not())?;
    let bytes = out.get(..n).ok_or_else(not)?;
    let cid = Cid::read_bytes(bytes).map_err(|e| format!("{s}: {e}"))?;
    if cid.version() != cid::Version::V1 || cid.encoded_len() != bytes.len() {
        return Err(not());
    }
    Ok(cid)
}

/// The last string parsed into a `T`, to parse a run of equal strings once.
struct Last<'a, T> {
    text: &'a str,
    value: Option<T>,
}

impl<'a, T> Last<'a, T> {
    fn new() -> Self {
        Last {
            text: "",
            value: None,
        }
    }

    fn get(
        &mut self,
        s: &'a str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<&T, String> {
        if self.value.is_none() || self.text != s {
            self.value = Some(parse(s)?);
            self.text = s;
        }
        self.value
            .as_ref()
            .ok_or_else(|| format!("{s} was not parsed"))
    }
}

/// Where a page's entries go as they are decoded, each typed and checked.
pub(crate) trait EntrySink {
    /// One entry: its author, commit, path (at most [`MAX_PATH`] bytes), record and consent
    /// op.
    fn entry(
        &mut self,
        author: &Did,
        commit: &Cid,
        path: &str,
        cid: &Cid,
        consent: &Cid,
    ) -> Result<(), String>;
}

impl EntrySink for Vec<Entry> {
    fn entry(
        &mut self,
        author: &Did,
        commit: &Cid,
        path: &str,
        cid: &Cid,
        consent: &Cid,
    ) -> Result<(), String> {
        self.push(Entry {
            author: author.clone(),
            commit: CidRef(*commit),
            path: path.to_owned(),
            cid: CidRef(*cid),
            consent: CidRef(*consent),
        });
        Ok(())
    }
}

/// Decodes a page into `sink`: canonical DAG-CBOR with exactly the lexicon's fields (no
/// unknown one), typed (the DIDs and CIDs parse, each in its canonical string form, so that
/// encoding the entries again gives the same bytes), within the page lexicon. A page holds
/// runs of one author, commit and consent op: each distinct string is parsed once. Returns
/// the number of entries.
pub(crate) fn decode_page_into(
    cid: &Cid,
    bytes: &[u8],
    hashed: bool,
    sink: &mut impl EntrySink,
) -> Result<usize, String> {
    if !hashed {
        guild_core::cids::verify_block(cid, bytes).map_err(|e| format!("block {cid}: {e}"))?;
    }
    let bad = |e: String| format!("block {cid}: {e}");
    let p: PageBorrowed<'_> = data::decode_borrowed(bytes).map_err(|e| bad(e.to_string()))?;
    if p.record_type != PAGE_NSID {
        return Err(format!(
            "block {cid} is a {}, not a {PAGE_NSID}",
            p.record_type
        ));
    }
    if p.entries.is_empty() || p.entries.len() > PAGE_SIZE {
        return Err(bad(format!(
            "a record page of {} entries (1 to {PAGE_SIZE})",
            p.entries.len()
        )));
    }
    let (mut author, mut commit, mut consent) = (Last::new(), Last::new(), Last::new());
    for e in &p.entries {
        if e.path.len() > MAX_PATH {
            return Err(bad(format!(
                "a path of {} bytes (at most {MAX_PATH})",
                e.path.len()
            )));
        }
        let did = author
            .get(e.author, |s| {
                let d = Did::parse(s).map_err(|e| e.to_string())?;
                if d.as_str() != s {
                    return Err(format!("the DID {s} is not in its canonical form"));
                }
                Ok(d)
            })
            .map_err(bad)?;
        let commit = commit.get(e.commit, canonical_cid).map_err(bad)?;
        let consent = consent.get(e.consent, canonical_cid).map_err(bad)?;
        let record = canonical_cid(e.cid).map_err(bad)?;
        sink.entry(did, commit, e.path, &record, consent)
            .map_err(bad)?;
    }
    Ok(p.entries.len())
}

/// The manifest of a decoded root and the sizes of its decoded pages (checked: full pages
/// but the last, adding up to `recordCount`), its `records` empty.
fn assemble(r: Root, sizes: &[usize]) -> Result<Manifest, String> {
    let n = sizes.len();
    for (i, &len) in sizes.iter().enumerate() {
        let full = len == PAGE_SIZE;
        let last_ok = i + 1 == n && len > 0 && len <= PAGE_SIZE;
        if !(full || last_ok) {
            return Err(format!(
                "record page {i} holds {len} entries; pages hold {PAGE_SIZE} but the last"
            ));
        }
    }
    let count: usize = sizes.iter().sum();
    if count as u64 != r.record_count {
        return Err(format!(
            "the pages hold {count} records, recordCount says {}",
            r.record_count
        ));
    }
    Ok(Manifest {
        record_type: r.record_type,
        collective: r.collective,
        agreement: r.agreement,
        proposal: r.proposal,
        kind: r.kind,
        terms: r.terms,
        cut: r.cut,
        records: Vec::new(),
        credits: r.credits,
        estimates: r.estimates,
        licence: r.licence,
        canary: r.canary,
        guid: r.guid,
        licensee_canaries: r.licensee_canaries,
        created_at: r.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_cid_strings_are_the_ones_cidref_writes() {
        for bytes in [&b"a"[..], b"another block", &[0u8; 300]] {
            for cid in [
                guild_core::cids::cid_for_cbor(bytes),
                guild_core::cids::cid_for_raw(bytes),
            ] {
                let s = cid.to_string();
                assert_eq!(canonical_cid(&s), Ok(cid));
                // Another base, upper case, a trailing-bit change, a cut: refused.
                assert!(canonical_cid(&s.to_uppercase()).is_err());
                assert!(canonical_cid(&format!("B{}", &s[1..].to_uppercase())).is_err());
                let z = cid
                    .to_string_of_base(cid::multibase::Base::Base58Btc)
                    .unwrap();
                assert!(canonical_cid(&z).is_err());
                assert!(canonical_cid(&s[..s.len() - 1]).is_err());
                let mut last = s.clone();
                let c = last.pop().unwrap();
                last.push(if c == 'q' { 'r' } else { 'q' });
                assert!(canonical_cid(&last).is_err() || canonical_cid(&last) != Ok(cid));
                assert!(canonical_cid("").is_err());
                assert!(canonical_cid("b").is_err());
            }
        }
    }
}
