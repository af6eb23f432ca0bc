//! Bundles on a steward's node (protocol.md §6): proposing one, recomputing every proposal
//! from this node's own replicas and approving only the manifest it computed, packaging a
//! sealed bundle, and the revocation notices a sealed bundle collects.
//!
//! Every protocol decision is guild-bundle's (which records, the manifest's bytes) or
//! guild-gov's (who may propose or approve, when a bundle is sealed or void); the one policy
//! of the node's own (below: not signing a proposal that leaves out a replica it holds) is
//! documented in docs/protocol-notes.md. This module reads the replicas
//! from the node's store, calls those pure functions off the async runtime, writes the ops
//! through the collectives engine and keeps its files under the node's `bundles/` directory:
//!
//! - `manifests/<manifest CID>.car`: every manifest this node computed (an evaluation
//!   bundle's manifest is what keeps its records out of later training bundles);
//! - `proposals/<proposal CID>`: the manifest CID this node computed for a proposal;
//! - `sealed/<manifest CID>.car`: a sealed bundle, packaged (written to a temporary file and
//!   renamed, so a file there is always whole).
//!
//! A steward's node approves a proposal only when it holds every replica head the proposal
//! names (it waits for its replicas to catch up) and when the proposal leaves out no replica
//! of a consenting member that this node holds; otherwise it records why and does not sign.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cid::Cid;
use guild_bundle::{
    BundleError, CutState, EvaluationLedger, Manifest, ManifestParams, RecordListing, Replica,
    select,
};
use guild_core::syntax::{Datetime, Did};
use guild_gov::body::{ApprovalBody, BundleKind, Cut, OpBody, Open, ProposalBody, ReplicaHead};
use guild_gov::{Log, OpKind, Role, State};
use guild_repo::Repo;
use guild_store::{Space, Staged};

use crate::engine::{CollectiveEngine, EngineError};
use crate::service::{NodeStore, RepoService};

/// Where a proposal stands, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleStatus {
    /// Proposed; not yet approved by a quorum of stewards.
    Proposed,
    /// Sealed by a quorum of stewards' approvals of one manifest.
    Sealed,
    /// Voided by a revocation concurrent with it.
    Void,
}

impl BundleStatus {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleStatus::Proposed => "proposed",
            BundleStatus::Sealed => "sealed",
            BundleStatus::Void => "void",
        }
    }
}

/// A bundle proposal and what became of it.
#[derive(Debug, Clone)]
pub struct BundleInfo {
    /// The proposal op.
    pub proposal: Cid,
    /// The agreement.
    pub agreement: Cid,
    /// The agreement's template.
    pub template: String,
    /// `training` or `evaluation`.
    pub kind: String,
    /// The steward who proposed it.
    pub proposed_by: Did,
    /// When.
    pub proposed_at: Datetime,
    /// Where it stands.
    pub status: BundleStatus,
    /// The sealed manifest.
    pub manifest: Option<Cid>,
    /// The manifest this node computed from its own replicas.
    pub computed: Option<Cid>,
    /// Each approving steward and the manifest they approved.
    pub approvals: Vec<(Did, Cid)>,
    /// Approvals needed to seal (the quorum now).
    pub quorum: usize,
    /// Records and authors in the manifest this node holds for it.
    pub records: Option<(u64, u64)>,
    /// The packaged CAR on this node, with its size in bytes.
    pub car: Option<(PathBuf, u64)>,
    /// Why this node has not approved it (waiting for a replica, or refused).
    pub note: Option<String>,
    /// This node's member's records in it, as this node recomputes them from its own repo at
    /// the commit the proposal names and the log (the stewards' deterministic selection,
    /// restricted to this member): `None` when that commit is no longer held.
    pub mine: Option<MyPart>,
    /// The builder's receipt of the sealed bundle (its op), if the builder acknowledged it.
    pub receipt: Option<Cid>,
    /// The agreement's builder.
    pub builder: Option<Did>,
}

/// A member's part of one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyPart {
    /// How many of the member's records the bundle holds.
    pub records: u64,
    /// Their paths (`collection/rkey`), in the manifest's order (at most [`MY_PATHS`]).
    pub paths: Vec<String>,
    /// The member's contribution estimate in the manifest, when this node holds the manifest
    /// (a steward's node): (method, value).
    pub estimate: Option<(String, String)>,
}

/// Most paths a [`MyPart`] lists.
pub const MY_PATHS: usize = 200;

/// A revocation that came after a sealed bundle: the records of the revoking member the
/// bundle delivered, which the builder must treat as the agreement's termination terms say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationNotice {
    /// The consent revoke op.
    pub revocation: Cid,
    /// The member who revoked.
    pub member: Did,
    /// The template revoked.
    pub template: String,
    /// When (the revoke op's `createdAt`).
    pub at: Datetime,
    /// The sealed bundle's manifest.
    pub bundle: Cid,
    /// The agreement it was delivered under.
    pub agreement: Cid,
    /// The member's records in the bundle, as `at://<did>/<path>` URIs, with their CIDs.
    pub records: Vec<(String, Cid)>,
    /// The builder's receipt op for this notice, once it sent one.
    pub receipt: Option<Cid>,
}

/// Why this node did not (yet) approve a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hold {
    /// It will retry: a replica head it names has not reached this node yet.
    Waiting(String),
    /// It will not approve: the proposal cannot be recomputed identically here.
    Refused(String),
}

/// A steward node's bundle work: see the module doc.
pub struct Stewardship<S> {
    pub(crate) service: Arc<RepoService<S>>,
    pub(crate) engine: Arc<dyn CollectiveEngine>,
    pub(crate) dir: PathBuf,
    pub(crate) holds: Mutex<BTreeMap<Cid, Hold>>,
    /// Sealed bundles whose packaging failed, with when to try again.
    retry: Mutex<BTreeMap<Cid, std::time::Instant>>,
    /// The member's selected records per proposal, once computed (deterministic).
    mine: Mutex<BTreeMap<Cid, Option<Vec<guild_bundle::Selected>>>>,
}

/// How long after a failed packaging the next attempt waits (a missing block, a full disk).
const PACKAGE_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

impl<S> std::fmt::Debug for Stewardship<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stewardship")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Why a bundle call failed.
#[derive(Debug, thiserror::Error)]
pub enum StewardshipError {
    /// The collectives engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The bundle rules refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The node's files or store failed.
    #[error("{0}")]
    Io(String),
    /// No such bundle on this node.
    #[error("no sealed bundle {0} on this node")]
    NotFound(Cid),
    /// The payout rules refused (guild-payout's reason).
    #[error(transparent)]
    Payout(#[from] guild_payout::PayoutError),
    /// The bundle was sealed, then voided (a contributor's revocation concurrent with it).
    #[error("bundle {manifest} is void: revocation {by} was concurrent with it")]
    Voided {
        /// The bundle's manifest.
        manifest: Cid,
        /// The op that voided it.
        by: Cid,
    },
}

/// The files of a packaged bundle: the CAR and the forms a builder needs with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFile {
    /// The CAR (`application/vnd.ipld.car`).
    Car,
    /// The Croissant 1.1 metadata (`croissant.json`).
    Croissant,
    /// The dataset card (`README.md`).
    Card,
    /// The disclosure file (`disclosure.json`).
    Disclosure,
}

impl BundleFile {
    /// The forms, written beside the CAR.
    pub const FORMS: [BundleFile; 3] = [
        BundleFile::Croissant,
        BundleFile::Card,
        BundleFile::Disclosure,
    ];

    /// Its name in `coop.guild.bundle.get`'s `file` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleFile::Car => "car",
            BundleFile::Croissant => "croissant",
            BundleFile::Card => "card",
            BundleFile::Disclosure => "disclosure",
        }
    }

    /// From the `file` parameter.
    pub fn parse(s: &str) -> Option<BundleFile> {
        [
            BundleFile::Car,
            BundleFile::Croissant,
            BundleFile::Card,
            BundleFile::Disclosure,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }

    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            BundleFile::Car => "application/vnd.ipld.car",
            BundleFile::Croissant => "application/ld+json",
            BundleFile::Card => "text/markdown; charset=utf-8",
            BundleFile::Disclosure => "application/json",
        }
    }

    /// The name a builder's client writes it under.
    pub fn file_name(self) -> &'static str {
        match self {
            BundleFile::Car => "bundle.car",
            BundleFile::Croissant => "croissant.json",
            BundleFile::Card => "README.md",
            BundleFile::Disclosure => "disclosure.json",
        }
    }
}

/// Where a packaged bundle's form is kept: `sealed/<manifest>.<file name>`.
fn form_path(dir: &std::path::Path, manifest: &Cid, file: BundleFile) -> PathBuf {
    dir.join("sealed")
        .join(format!("{manifest}.{}", file.file_name()))
}

pub(crate) fn io(e: impl std::fmt::Display) -> StewardshipError {
    StewardshipError::Io(e.to_string())
}

impl<S: NodeStore> Stewardship<S> {
    /// Bundle work for the node whose repo service and engine these are, keeping its files
    /// under `dir` (created if absent).
    pub fn new(
        service: Arc<RepoService<S>>,
        engine: Arc<dyn CollectiveEngine>,
        dir: PathBuf,
    ) -> Result<Self, StewardshipError> {
        for sub in ["manifests", "proposals", "sealed"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                StewardshipError::Io(format!("cannot create {}: {e}", dir.join(sub).display()))
            })?;
        }
        Ok(Stewardship {
            service,
            engine,
            dir,
            holds: Mutex::new(BTreeMap::new()),
            retry: Mutex::new(BTreeMap::new()),
            mine: Mutex::new(BTreeMap::new()),
        })
    }

    /// The replica heads this node holds in the collective's space (its member's own repo
    /// included), by DID.
    fn held_heads(&self, collective: &Cid) -> Result<BTreeMap<Did, ReplicaHead>, StewardshipError> {
        let repos = self.service.store().repos().map_err(io)?;
        Ok(repos
            .into_iter()
            .filter(|(k, _)| k.space == Space::Collective(*collective))
            .map(|(k, h)| {
                let head = ReplicaHead {
                    did: k.did.clone(),
                    rev: h.rev,
                    commit: guild_gov::body::CidRef(h.commit),
                };
                (k.did, head)
            })
            .collect())
    }

    /// Proposes a bundle under `agreement` from the replicas this node holds now: the cut is
    /// the log's heads when the op is written, its replicas the heads of every consenting
    /// member's repo this node holds. Returns the proposal op.
    pub async fn propose(
        &self,
        collective: Cid,
        agreement: Cid,
        kind: BundleKind,
        note: Option<String>,
    ) -> Result<Cid, StewardshipError> {
        let held = self.held_heads(&collective)?;
        let op = self
            .engine
            .write(
                collective,
                OpKind::BundleProposal,
                Box::new(move |st: &State, _me: &str| {
                    let a = st.agreements.get(&agreement).ok_or_else(|| {
                        EngineError::Invalid(format!("no agreement {agreement} in the collective"))
                    })?;
                    let consenting = st.consenting(&a.template);
                    let replicas = held
                        .into_values()
                        .filter(|h| consenting.contains_key(&h.did))
                        .collect();
                    Ok(OpBody::BundleProposal(Box::new(ProposalBody {
                        agreement: guild_gov::body::CidRef(agreement),
                        // The engine's writer fills in the heads: they are the op's prev.
                        cut: Cut {
                            heads: Vec::new(),
                            replicas,
                        },
                        kind: Open::Known(kind),
                        note,
                    })))
                }),
            )
            .await?;
        Ok(op)
    }

    /// One pass over every collective: approves what this node can recompute, packages what
    /// was sealed. Errors are logged, not returned: the next pass retries.
    pub async fn step(&self) {
        let collectives = match self.engine.collectives().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "bundles: engine unavailable");
                return;
            }
        };
        for c in collectives {
            if let Err(e) = self.step_collective(c).await {
                tracing::warn!(collective = %c, error = %e, "bundles: pass failed");
            }
        }
    }

    async fn step_collective(&self, collective: Cid) -> Result<(), StewardshipError> {
        let status = self.engine.status(collective).await?;
        let st = &status.state;
        let me = self.service.did().to_owned();
        let steward = st
            .members
            .get(me.as_str())
            .is_some_and(|m| m.role == Role::Steward);
        if !steward {
            return Ok(());
        }
        let mut log: Option<Arc<Log>> = None;
        for (pid, b) in st.bundles.iter() {
            if b.voided.is_some() {
                continue;
            }
            match &b.sealed {
                Some((manifest, _)) => {
                    if self.sealed_path(manifest).exists() {
                        continue;
                    }
                    let log = match &log {
                        Some(l) => l.clone(),
                        None => log
                            .insert(Arc::new(self.engine.log(collective).await?))
                            .clone(),
                    };
                    if self.backing_off(manifest) {
                        continue;
                    }
                    if let Err(e) = self.package(log, *pid, *manifest).await {
                        tracing::warn!(%manifest, error = %e, "bundle: packaging failed; retrying in 30 s");
                        if let Ok(mut r) = self.retry.lock() {
                            r.insert(*manifest, std::time::Instant::now() + PACKAGE_RETRY);
                        }
                    }
                }
                None => {
                    let mine = b.approvals.contains_key(me.as_str())
                        || b.equivocating.contains(me.as_str());
                    let refused = matches!(self.hold(pid), Some(Hold::Refused(_)));
                    if mine || refused {
                        continue;
                    }
                    let log = match &log {
                        Some(l) => l.clone(),
                        None => log
                            .insert(Arc::new(self.engine.log(collective).await?))
                            .clone(),
                    };
                    self.approve(collective, log, *pid).await?;
                }
            }
        }
        // The log is copied only when another steward's statement awaits this node's
        // recomputation (most passes have none).
        let pending = self.statements_to_confirm(st, &me);
        if !pending.is_empty() {
            let log = match &log {
                Some(l) => l.clone(),
                None => Arc::new(self.engine.log(collective).await?),
            };
            self.confirm_statements(collective, &log, &pending).await?;
        }
        Ok(())
    }

    /// Whether packaging `manifest` failed less than [`PACKAGE_RETRY`] ago.
    fn backing_off(&self, manifest: &Cid) -> bool {
        self.retry
            .lock()
            .ok()
            .and_then(|r| r.get(manifest).copied())
            .is_some_and(|at| std::time::Instant::now() < at)
    }

    fn hold(&self, proposal: &Cid) -> Option<Hold> {
        self.holds.lock().ok()?.get(proposal).cloned()
    }

    fn set_hold(&self, proposal: Cid, hold: Option<Hold>) {
        if let Ok(mut h) = self.holds.lock() {
            match hold {
                Some(x) => h.insert(proposal, x),
                None => h.remove(&proposal),
            };
        }
    }

    /// Recomputes the proposal's manifest here and approves it.
    async fn approve(
        &self,
        collective: Cid,
        log: Arc<Log>,
        proposal: Cid,
    ) -> Result<(), StewardshipError> {
        let computed = {
            let service = self.service.clone();
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || compute(&service, &dir, &log, proposal))
                .await
                .map_err(io)?
        };
        let manifest = match computed {
            Ok(Computed::Manifest(cid)) => cid,
            Ok(Computed::Hold(h)) => {
                match &h {
                    Hold::Waiting(why) => {
                        tracing::debug!(%proposal, why, "bundle: waiting to recompute")
                    }
                    Hold::Refused(why) => {
                        tracing::warn!(%proposal, why, "bundle: not approved")
                    }
                }
                self.set_hold(proposal, Some(h));
                return Ok(());
            }
            Err(e) => {
                let why = e.to_string();
                // The bundle rules' refusals are final (the same inputs give the same
                // answer); a store, file or engine failure, or an evaluation manifest this
                // node has not computed yet, is retried at the next pass.
                let hold = match &e {
                    StewardshipError::Bundle(BundleError::MissingEvaluationManifest(_))
                    | StewardshipError::Io(_)
                    | StewardshipError::Engine(_) => Hold::Waiting(why.clone()),
                    StewardshipError::Bundle(_)
                    | StewardshipError::NotFound(_)
                    | StewardshipError::Payout(_)
                    | StewardshipError::Voided { .. } => Hold::Refused(why.clone()),
                };
                tracing::warn!(%proposal, why, "bundle: not approved");
                self.set_hold(proposal, Some(hold));
                return Ok(());
            }
        };
        self.set_hold(proposal, None);
        let op = self
            .engine
            .write(
                collective,
                OpKind::BundleApproval,
                Box::new(move |_, _| {
                    Ok(OpBody::BundleApproval(Box::new(ApprovalBody {
                        proposal: guild_gov::body::CidRef(proposal),
                        manifest: guild_gov::body::CidRef(manifest),
                    })))
                }),
            )
            .await;
        match op {
            Ok(op) => tracing::info!(%proposal, %manifest, approval = %op, "bundle approved"),
            Err(e) => {
                // Refused by the rules (sealed meanwhile, void): final; anything else (the
                // engine busy or stopping): retried.
                let why = format!("the approval was not written: {e}");
                tracing::warn!(%proposal, why, "bundle: not approved");
                let hold = match e {
                    EngineError::Refused(_) => Hold::Refused(why),
                    _ => Hold::Waiting(why),
                };
                self.set_hold(proposal, Some(hold));
            }
        }
        Ok(())
    }

    /// Packages a sealed bundle into `sealed/<manifest>.car`.
    async fn package(
        &self,
        log: Arc<Log>,
        proposal: Cid,
        manifest: Cid,
    ) -> Result<(), StewardshipError> {
        let service = self.service.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StewardshipError> {
            let bytes = match read_manifest(&dir, &manifest)? {
                Some(b) => b,
                None => match compute(&service, &dir, &log, proposal)? {
                    Computed::Manifest(m) if m == manifest => read_manifest(&dir, &manifest)?
                        .ok_or(StewardshipError::NotFound(manifest))?,
                    Computed::Manifest(m) => {
                        return Err(StewardshipError::Io(format!(
                            "the stewards sealed manifest {manifest}, this node computes {m}"
                        )));
                    }
                    Computed::Hold(Hold::Waiting(w) | Hold::Refused(w)) => {
                        return Err(StewardshipError::Io(w));
                    }
                },
            };
            let m = Manifest::from_car(&bytes).map_err(StewardshipError::Io)?.1;
            let path = dir.join("sealed").join(format!("{manifest}.car"));
            let tmp = dir.join("sealed").join(format!("{manifest}.car.tmp"));
            let file = std::fs::File::create(&tmp).map_err(io)?;
            let mut out = std::io::BufWriter::new(file);
            let store: &S = service.store();
            let summary = guild_bundle::write_bundle(&m, &log, store, &mut out)?;
            out.flush().map_err(io)?;
            out.into_inner()
                .map_err(|e| io(e.error()))?
                .sync_all()
                .map_err(io)?;
            // The bundle's forms beside it, before the CAR takes its name (the CAR's presence
            // means the bundle is packaged, forms included).
            let info = guild_bundle::CarInfo {
                sha256: summary.sha256,
                bytes: summary.bytes,
                file_name: "bundle.car".to_owned(),
            };
            for form in BundleFile::FORMS {
                let text = match form {
                    BundleFile::Croissant => guild_bundle::croissant::emit(&m, &info)?,
                    BundleFile::Card => guild_bundle::card::emit(&m, &info)?,
                    _ => guild_bundle::disclosure::emit(&m, &info)?,
                };
                let to = form_path(&dir, &manifest, form);
                let tmp_form = to.with_extension("tmp");
                std::fs::write(&tmp_form, text.as_bytes()).map_err(io)?;
                std::fs::rename(&tmp_form, &to).map_err(io)?;
            }
            std::fs::rename(&tmp, &path).map_err(io)?;
            tracing::info!(%manifest, bytes = summary.bytes, records = m.records.len(), "bundle sealed and packaged");
            Ok(())
        })
        .await
        .map_err(io)?
    }

    fn sealed_path(&self, manifest: &Cid) -> PathBuf {
        self.dir.join("sealed").join(format!("{manifest}.car"))
    }

    /// The packaged CAR of a bundle sealed, and not voided since, in a collective this node
    /// holds.
    pub async fn car_path(&self, manifest: &Cid) -> Result<PathBuf, StewardshipError> {
        for c in self.engine.collectives().await? {
            let status = self.engine.status(c).await?;
            for b in status.state.bundles.values() {
                if b.sealed.as_ref().map(|(m, _)| m) != Some(manifest) {
                    continue;
                }
                if let Some(by) = b.voided {
                    return Err(StewardshipError::Voided {
                        manifest: *manifest,
                        by,
                    });
                }
                let p = self.sealed_path(manifest);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(StewardshipError::NotFound(*manifest))
    }

    /// One file of a bundle sealed, and not voided since: the CAR ([`Stewardship::car_path`])
    /// or one of the forms written beside it when it was packaged.
    pub async fn file_path(
        &self,
        manifest: &Cid,
        file: BundleFile,
    ) -> Result<PathBuf, StewardshipError> {
        let car = self.car_path(manifest).await?;
        if file == BundleFile::Car {
            return Ok(car);
        }
        let p = form_path(&self.dir, manifest, file);
        if p.is_file() {
            Ok(p)
        } else {
            // (a bundle packaged by a node older than the forms)
            Err(StewardshipError::Io(format!(
                "bundle {manifest} was packaged without its {} file: `guild bundle export` \
                 writes it from the CAR",
                file.as_str()
            )))
        }
    }

    /// The agreement a sealed bundle (by manifest CID) was delivered under.
    pub async fn agreement_of(&self, manifest: &Cid) -> Result<Cid, StewardshipError> {
        for c in self.engine.collectives().await? {
            let status = self.engine.status(c).await?;
            if let Some(b) = status
                .state
                .bundles
                .values()
                .find(|b| b.sealed.as_ref().map(|(m, _)| m) == Some(manifest))
            {
                return Ok(b.agreement);
            }
        }
        Err(StewardshipError::NotFound(*manifest))
    }

    /// Every bundle proposed in the collective, with what this node knows of it.
    pub async fn list(&self, collective: Cid) -> Result<Vec<BundleInfo>, StewardshipError> {
        let status = self.engine.status(collective).await?;
        let st = &status.state;
        let log = self.engine.log(collective).await?;
        let mine = self.my_parts(&log).await?;
        let mut out = Vec::new();
        for (pid, b) in st.bundles.iter() {
            let Some(op) = log.get(pid) else { continue };
            let status = if b.voided.is_some() {
                BundleStatus::Void
            } else if b.sealed.is_some() {
                BundleStatus::Sealed
            } else {
                BundleStatus::Proposed
            };
            let computed = read_proposal(&self.dir, pid)?;
            let manifest = b.sealed.as_ref().map(|(m, _)| *m);
            let held = match manifest.as_ref().or(computed.as_ref()) {
                Some(m) => read_manifest(&self.dir, m)?
                    .and_then(|bytes| Manifest::from_car(&bytes).ok().map(|(_, m)| m)),
                None => None,
            };
            let records = held
                .as_ref()
                .map(|m| (m.records.len() as u64, m.credits.len() as u64));
            let me = self.service.did();
            let my_part = mine.get(pid).cloned().flatten().map(|sel| MyPart {
                records: sel.len() as u64,
                paths: sel.iter().take(MY_PATHS).map(|r| r.path.clone()).collect(),
                estimate: held.as_ref().and_then(|m| {
                    m.estimates
                        .iter()
                        .find(|e| e.member.as_str() == me)
                        .map(|e| (e.method.clone(), e.value.clone()))
                }),
            });
            let receipt = manifest
                .as_ref()
                .and_then(|m| st.receipts.get(&(b.agreement, *m)).copied());
            let builder = st.agreements.get(&b.agreement).map(|a| a.builder.clone());
            let car = match &manifest {
                Some(m) => {
                    let p = self.sealed_path(m);
                    std::fs::metadata(&p).ok().map(|md| (p, md.len()))
                }
                None => None,
            };
            let note = match self.hold(pid) {
                Some(Hold::Waiting(w)) => Some(format!("waiting: {w}")),
                Some(Hold::Refused(r)) => Some(format!("not approved here: {r}")),
                None => None,
            };
            out.push(BundleInfo {
                proposal: *pid,
                agreement: b.agreement,
                template: b.template.clone(),
                kind: b.kind.as_str().to_owned(),
                proposed_by: op.author_did().clone(),
                proposed_at: op.created_at().clone(),
                status,
                manifest,
                computed,
                approvals: b
                    .approvals
                    .iter()
                    .map(|(d, (_, m))| (d.clone(), *m))
                    .collect(),
                quorum: st.quorum(),
                records,
                car,
                note,
                mine: my_part,
                receipt,
                builder,
            });
        }
        out.sort_by(|a, b| (&a.proposed_at, &a.proposal).cmp(&(&b.proposed_at, &b.proposal)));
        Ok(out)
    }

    /// This node's member's selected records in each bundle of the log (computed once per
    /// proposal, then remembered), on a blocking thread.
    async fn my_parts(
        &self,
        log: &Log,
    ) -> Result<BTreeMap<Cid, Option<Vec<guild_bundle::Selected>>>, StewardshipError> {
        let proposals: Vec<Cid> = log.state_ref().bundles.keys().copied().collect();
        let mut memo = self
            .mine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if proposals.iter().all(|p| memo.contains_key(p)) {
            return Ok(memo);
        }
        let service = Arc::clone(&self.service);
        let log = log.clone();
        let memo = tokio::task::spawn_blocking(move || {
            for p in &proposals {
                my_selection(&service, &log, p, &mut memo)?;
            }
            Ok::<_, StewardshipError>(memo)
        })
        .await
        .map_err(|e| StewardshipError::Io(format!("worker failed: {e}")))??;
        *self
            .mine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = memo.clone();
        Ok(memo)
    }

    /// The revocation notices of the collective: for each sealed bundle this node holds the
    /// manifest of, each revoke of a contributor's consent to its template that is not in
    /// the causal past of the bundle's proposal, with the member's records it delivered.
    pub async fn revocation_notices(
        &self,
        collective: Cid,
    ) -> Result<Vec<RevocationNotice>, StewardshipError> {
        let status = self.engine.status(collective).await?;
        let st = &status.state;
        let log = self.engine.log(collective).await?;
        let mut out = Vec::new();
        for (pid, b) in st.bundles.iter() {
            let Some((manifest, _)) = &b.sealed else {
                continue;
            };
            let Some(bytes) = read_manifest(&self.dir, manifest)? else {
                continue;
            };
            let m = Manifest::from_car(&bytes).map_err(StewardshipError::Io)?.1;
            for ((did, template), revokes) in st.revocations.iter() {
                if **template != *b.template || !b.contributors.contains_key(did) {
                    continue;
                }
                for r in revokes.iter() {
                    if log.is_ancestor(&r, pid) {
                        continue;
                    }
                    let Some(op) = log.get(&r) else { continue };
                    let records: Vec<(String, Cid)> = m
                        .records
                        .iter()
                        .filter(|e| e.author == *did)
                        .map(|e| (format!("at://{}/{}", e.author, e.path), e.cid.0))
                        .collect();
                    if records.is_empty() {
                        continue;
                    }
                    out.push(RevocationNotice {
                        revocation: r,
                        member: did.clone(),
                        template: template.to_string(),
                        at: op.created_at().clone(),
                        bundle: *manifest,
                        agreement: b.agreement,
                        records,
                        receipt: st.receipts.get(&(b.agreement, r)).copied(),
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.at, &a.revocation, &a.bundle).cmp(&(&b.at, &b.revocation, &b.bundle))
        });
        Ok(out)
    }
}

/// What recomputing a proposal gave.
enum Computed {
    /// The manifest (written to `manifests/`), by CID.
    Manifest(Cid),
    /// Not now, or not here.
    Hold(Hold),
}

pub(crate) fn read_manifest(dir: &Path, cid: &Cid) -> Result<Option<Vec<u8>>, StewardshipError> {
    let p = dir.join("manifests").join(format!("{cid}.car"));
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

fn read_proposal(dir: &Path, proposal: &Cid) -> Result<Option<Cid>, StewardshipError> {
    let p = dir.join("proposals").join(proposal.to_string());
    match std::fs::read_to_string(&p) {
        Ok(s) => Cid::try_from(s.trim()).map(Some).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// Writes `bytes` to `path` whole: a temporary file renamed over it.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), StewardshipError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// The records of `did`'s repo at `commit`, read from the node's store.
fn listing<S: NodeStore>(
    store: &S,
    head: &ReplicaHead,
) -> Result<Option<Replica>, StewardshipError> {
    if store.get_block(&head.commit.0).map_err(io)?.is_none() {
        return Ok(None);
    }
    let repo = Repo::open(Staged::new(store), head.commit.0).map_err(io)?;
    let mut records = Vec::new();
    for (path, cid) in repo.records().map_err(io)? {
        let (collection, rkey) = guild_repo::parse_path(&path).map_err(io)?;
        records.push(RecordListing {
            collection,
            rkey,
            cid,
        });
    }
    Ok(Some(Replica {
        did: head.did.clone(),
        rev: head.rev.clone(),
        commit: head.commit.0,
        name: None,
        records,
    }))
}

/// The records of this node's member that `proposal`'s bundle holds: the stewards'
/// selection run on the member's own repo at the commit the proposal names (`[]` when it
/// names none of the member's), minus, for a training bundle, the member's records the
/// evaluation bundles sealed at its cut delivered (computed the same way). `None` when the
/// member's commit is no longer in the store. Remembered in `memo`. (The stewards also leave
/// out a record whose bytes equal another member's record delivered for evaluation; a
/// member's node, without the others' repos, cannot see that case.)
fn my_selection<S: NodeStore>(
    service: &RepoService<S>,
    log: &Log,
    proposal: &Cid,
    memo: &mut BTreeMap<Cid, Option<Vec<guild_bundle::Selected>>>,
) -> Result<Option<Vec<guild_bundle::Selected>>, StewardshipError> {
    if let Some(known) = memo.get(proposal) {
        return Ok(known.clone());
    }
    let op = log
        .get(proposal)
        .ok_or_else(|| StewardshipError::Io(format!("proposal {proposal} is not in the log")))?;
    let OpBody::BundleProposal(body) = op.body() else {
        return Err(StewardshipError::Io(format!(
            "{proposal} is not a proposal"
        )));
    };
    let me = service.did();
    let Some(head) = body.cut.replicas.iter().find(|r| r.did.as_str() == me) else {
        memo.insert(*proposal, Some(Vec::new()));
        return Ok(Some(Vec::new()));
    };
    let store: &S = service.store();
    let Some(replica) = listing(store, head)? else {
        memo.insert(*proposal, None);
        return Ok(None);
    };
    let (request, heads, _) = ManifestParams::from_proposal(&op)?;
    let cut = CutState::at(log, &heads)?;
    let selection = select(log, &cut, &request, &[replica], &EvaluationLedger::empty())?;
    let mut records = selection.records;
    if !body.kind.is(BundleKind::Evaluation) {
        let evaluations: Vec<Cid> = cut
            .state
            .bundles
            .iter()
            .filter(|(_, b)| b.kind.is(BundleKind::Evaluation) && b.sealed.is_some())
            .map(|(p, _)| *p)
            .collect();
        for e in evaluations {
            if let Some(delivered) = my_selection(service, log, &e, memo)? {
                records.retain(|r| !delivered.iter().any(|d| d.path == r.path || d.cid == r.cid));
            }
        }
    }
    memo.insert(*proposal, Some(records.clone()));
    Ok(Some(records))
}

/// Recomputes the manifest of `proposal` from this node's replicas (blocking work).
/// The evaluation set the builder's accept carries, for an agreement in force at the cut.
fn evaluation_of(log: &Log, state: &State, agreement: &Cid) -> Option<guild_gov::body::Evaluation> {
    let a = state.agreements.get(agreement)?;
    let guild_gov::AgreementStatus::InForce(countersign) = a.status else {
        return None;
    };
    let countersign = log.get(&countersign)?;
    let OpBody::AgreementCountersign(cs) = countersign.body() else {
        return None;
    };
    let accept = log.get(&cs.accept.0)?;
    let OpBody::AgreementAccept(accept) = accept.body() else {
        return None;
    };
    accept.evaluation.clone()
}

fn compute<S: NodeStore>(
    service: &RepoService<S>,
    dir: &Path,
    log: &Log,
    proposal: Cid,
) -> Result<Computed, StewardshipError> {
    let op = log
        .get(&proposal)
        .ok_or_else(|| StewardshipError::Io(format!("proposal {proposal} is not in the log")))?;
    let OpBody::BundleProposal(body) = op.body() else {
        return Err(StewardshipError::Io(format!(
            "{proposal} is not a proposal"
        )));
    };
    let (request, heads, params) = ManifestParams::from_proposal(&op)?;
    let cut = CutState::at(log, &heads)?;
    let store: &S = service.store();
    // Every replica head the proposal names must be here before any tree is listed (a
    // proposal still waiting costs a block lookup per head a pass, not a walk).
    for head in &body.cut.replicas {
        if store.get_block(&head.commit.0).map_err(io)?.is_none() {
            return Ok(Computed::Hold(Hold::Waiting(format!(
                "{}'s commit {} (rev {}) has not reached this node",
                head.did, head.commit.0, head.rev
            ))));
        }
    }
    let mut replicas = Vec::new();
    for head in &body.cut.replicas {
        match listing(store, head)? {
            Some(r) => replicas.push(r),
            None => {
                return Err(StewardshipError::Io(format!(
                    "{}'s commit {} vanished from the store",
                    head.did, head.commit.0
                )));
            }
        }
    }
    // A consenting member's replica this node holds that the proposal leaves out.
    if let Some(a) = cut.state.agreements.get(&request.agreement) {
        let named: std::collections::BTreeSet<&Did> =
            body.cut.replicas.iter().map(|r| &r.did).collect();
        let held = store.repos().map_err(io)?;
        let collective = *log.collective();
        for (did, _) in cut.state.consenting(&a.template) {
            let holds = held
                .iter()
                .any(|(k, _)| k.did == did && k.space == Space::Collective(collective));
            if holds && !named.contains(&did) {
                return Ok(Computed::Hold(Hold::Refused(format!(
                    "the proposal leaves out the replica of {did}, a consenting member this node holds"
                ))));
            }
        }
    }
    // The evaluation bundles sealed at the cut, from the manifests this node computed.
    let mut evaluations = Vec::new();
    for b in cut.state.bundles.values() {
        if let (true, Some((m, _))) = (b.kind.is(BundleKind::Evaluation), &b.sealed)
            && let Some(bytes) = read_manifest(dir, m)?
        {
            evaluations.push((*m, bytes));
        }
    }
    let refs: Vec<(Cid, &[u8])> = evaluations
        .iter()
        .map(|(c, b)| (*c, b.as_slice()))
        .collect();
    let ledger = EvaluationLedger::for_cut(&cut, &refs)?;
    let selection = select(log, &cut, &request, &replicas, &ledger)?;
    let mut params = params;
    if let Some(eval) = evaluation_of(log, &cut.state, &request.agreement) {
        let mut blocks = Vec::with_capacity(selection.records.len());
        for r in &selection.records {
            let bytes = store
                .get_block(&r.cid)
                .map_err(io)?
                .ok_or(StewardshipError::NotFound(r.cid))?;
            blocks.push((&r.author, bytes));
        }
        let valued: Vec<guild_bundle::estimate::Valued<'_>> = blocks
            .iter()
            .map(|(author, bytes)| guild_bundle::estimate::Valued {
                author,
                bytes: bytes.as_ref(),
            })
            .collect();
        params.estimates = guild_bundle::estimate::estimates(&valued, &eval, &proposal)?;
    }
    let manifest = Manifest::build(&selection, &params)?;
    let (cid, _) = manifest.encode()?;
    let bytes = manifest.to_car()?;
    write_whole(&dir.join("manifests").join(format!("{cid}.car")), &bytes)?;
    write_whole(
        &dir.join("proposals").join(proposal.to_string()),
        cid.to_string().as_bytes(),
    )?;
    Ok(Computed::Manifest(cid))
}
