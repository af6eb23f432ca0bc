//! Evaluation data: an evaluation bundle carries a canary string with a GUID of its own, and
//! no record delivered in a sealed evaluation bundle ever enters a training bundle.
//!
//! The rule, by construction: a training selection needs the manifest of every evaluation
//! bundle sealed at its cut ([`EvaluationLedger::for_cut`] refuses to build without one), and
//! leaves out every record whose author and path, or whose CID, an evaluation manifest lists.
//! By path, so that a later edit of an evaluation record stays out; by CID, so that a copy of
//! it under another path or in another member's repo does too.

use std::collections::BTreeMap;

use guild_core::Cid;
use guild_core::cids;
use guild_core::syntax::Did;
use guild_gov::body::BundleKind;

use crate::cut::CutState;
use crate::error::BundleError;
use crate::manifest::Manifest;

/// What every canary string starts with; the bundle's GUID follows.
pub const CANARY_PREFIX: &str =
    "GUILD EVALUATION DATA: NEVER TRAIN ON IT, NEVER PUT IT IN A TRAINING CORPUS. canary GUID ";

/// Domain separation for the GUID's hash.
const GUID_DOMAIN: &[u8] = b"coop.guild.bundle.canary\0";

/// The GUID of the evaluation bundle assembled from `proposal`: a UUID version 8 made of the
/// first 16 bytes of SHA-256("coop.guild.bundle.canary\0" ‖ the proposal CID's bytes). One
/// bundle per proposal, so one GUID per bundle; every steward computes the same, with no
/// randomness.
pub fn canary_guid(proposal: &Cid) -> String {
    let mut input = GUID_DOMAIN.to_vec();
    input.extend_from_slice(&proposal.to_bytes());
    let digest = cids::sha256(&input);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(first).hyphenated().to_string()
}

/// The canary string of the bundle with this GUID.
pub fn canary_string(guid: &str) -> String {
    format!("{CANARY_PREFIX}{guid}")
}

/// The records delivered in the evaluation bundles sealed at a cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvaluationLedger {
    /// (author, path) → the first evaluation manifest (in CID order) that lists it.
    paths: BTreeMap<(Did, String), Cid>,
    /// Record CID → the first evaluation manifest that lists it.
    cids: BTreeMap<Cid, Cid>,
}

impl EvaluationLedger {
    /// No evaluation bundle.
    pub fn empty() -> EvaluationLedger {
        EvaluationLedger::default()
    }

    /// The ledger of every evaluation bundle sealed at `cut`, from their manifests as CARs
    /// (`(manifest CID, bytes of` [`Manifest::to_car`]`)`, in any order; manifests of other
    /// bundles are ignored). Fails if one is missing, is not the manifest of that CID (its
    /// root, every block's hash), or does not decode.
    pub fn for_cut(cut: &CutState, manifests: &[(Cid, &[u8])]) -> Result<Self, BundleError> {
        let mut needed: Vec<Cid> = cut
            .state
            .bundles
            .values()
            .filter(|b| b.kind.is(BundleKind::Evaluation))
            .filter_map(|b| b.sealed.as_ref().map(|(m, _)| *m))
            .collect();
        needed.sort_unstable();
        needed.dedup();
        let mut ledger = EvaluationLedger::empty();
        for cid in needed {
            let (_, bytes) = manifests
                .iter()
                .find(|(c, _)| *c == cid)
                .ok_or(BundleError::MissingEvaluationManifest(cid))?;
            let (root, m) =
                Manifest::from_car(bytes).map_err(|e| BundleError::ManifestDecode(cid, e))?;
            if root != cid {
                return Err(BundleError::ManifestMismatch(cid));
            }
            ledger.add(cid, &m);
        }
        Ok(ledger)
    }

    /// Adds the records of one evaluation manifest (`cid` is its CID).
    pub fn add(&mut self, cid: Cid, manifest: &Manifest) {
        for e in &manifest.records {
            self.paths
                .entry((e.author.clone(), e.path.clone()))
                .or_insert(cid);
            self.cids.entry(e.cid.0).or_insert(cid);
        }
    }

    /// The evaluation manifest that delivered this record (by author and path, or by CID),
    /// if one did.
    pub fn delivered(&self, author: &Did, path: &str, cid: &Cid) -> Option<Cid> {
        self.paths
            .get(&(author.clone(), path.to_owned()))
            .or_else(|| self.cids.get(cid))
            .copied()
    }

    /// Whether no record was delivered for evaluation.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}
