//! Canaries, of two kinds.
//!
//! **Evaluation data**: an evaluation bundle carries a canary string with a GUID of its own,
//! and no record delivered in a sealed evaluation bundle ever enters a training bundle.
//!
//! **Per-licensee canaries** ([`licensee_canaries`]): when the charter at the bundle's cut
//! asks for them (`canaries.perBundle`), a bundle with records carries that many canary
//! records made for its builder alone, so that a leaked copy of the data, or a model that
//! memorised it, can be traced to the licensee. Each is a `coop.guild.data.text` record
//! whose words are drawn from SHA-256("coop.guild.bundle.licensee-canary\0" ‖ proposal CID
//! bytes ‖ builder DID ‖ index): a function of the proposal (one per bundle, in the
//! collective's private log) and the builder, so every steward writes the same blocks, a
//! verifier recomputes them, no two builders' bundles share one, and no one outside the
//! collective can predict them. The manifest lists their CIDs (`licenseeCanaries`); their
//! blocks sit among the record blocks, which is where a copy of the data takes them.
//!
//! The rule, by construction: a training selection needs the manifest of every evaluation
//! bundle sealed at its cut ([`EvaluationLedger::for_cut`] refuses to build without one), and
//! leaves out every record whose author and path, or whose CID, an evaluation manifest lists.
//! By path, so that a later edit of an evaluation record stays out; by CID, so that a copy of
//! it under another path or in another member's repo does too.

use std::collections::BTreeMap;

use guild_core::Cid;
use guild_core::cids;
use guild_core::data;
use guild_core::syntax::{Datetime, Did};
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

/// Domain separation for the licensee canaries' hash.
const LICENSEE_DOMAIN: &[u8] = b"coop.guild.bundle.licensee-canary\0";

/// The most canary records a bundle carries (the lexicon's `perBundle` maximum).
pub const MAX_LICENSEE_CANARIES: u32 = 64;

/// The record type of a licensee canary.
pub const LICENSEE_CANARY_TYPE: &str = "coop.guild.data.text";

/// One per-licensee canary record: its text, and its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseeCanary {
    /// The record's CID.
    pub cid: Cid,
    /// The record's DAG-CBOR bytes (a `coop.guild.data.text` record).
    pub bytes: Vec<u8>,
    /// Its title.
    pub title: String,
    /// Its body: what to search a leak or a model's output for.
    pub body: String,
}

/// The `count` canary records of the bundle assembled from `proposal` (created at
/// `created_at`) for `builder`, in index order (at most [`MAX_LICENSEE_CANARIES`]).
pub fn licensee_canaries(
    proposal: &Cid,
    builder: &Did,
    created_at: &Datetime,
    count: u32,
) -> Result<Vec<LicenseeCanary>, BundleError> {
    (0..count.min(MAX_LICENSEE_CANARIES))
        .map(|i| {
            let mut input = LICENSEE_DOMAIN.to_vec();
            input.extend_from_slice(&proposal.to_bytes());
            input.extend_from_slice(builder.as_str().as_bytes());
            input.push(0);
            input.extend_from_slice(&i.to_be_bytes());
            let d = cids::sha256(&input);
            let word = |b: u8| WORDS[usize::from(b)];
            let sentence = |bytes: &[u8]| {
                let mut words: Vec<&str> = bytes.iter().map(|&b| word(b)).collect();
                let mut out = String::new();
                if let Some(first) = words.first_mut() {
                    let mut c = first.chars();
                    if let Some(h) = c.next() {
                        out.extend(h.to_uppercase());
                        out.push_str(c.as_str());
                    }
                }
                for w in words.iter().skip(1) {
                    out.push(' ');
                    out.push_str(w);
                }
                out.push('.');
                out
            };
            let title = format!("Notes on the {} {}", word(d[0]), word(d[1]));
            let body = [&d[2..12], &d[12..22], &d[22..32]]
                .iter()
                .map(|b| sentence(b))
                .collect::<Vec<_>>()
                .join(" ");
            let record = serde_json::json!({
                "$type": LICENSEE_CANARY_TYPE,
                "title": title,
                "body": body,
                "language": "en",
                "createdAt": created_at.as_str(),
            });
            let (cid, bytes) = data::encode_record_json(&record)
                .map_err(|e| BundleError::Encode(e.to_string()))?;
            Ok(LicenseeCanary {
                cid,
                bytes,
                title,
                body,
            })
        })
        .collect()
}

/// Which of `canaries` `text` holds: the indexes of those one of whose sentences (ten
/// words drawn from 80 bits of hash) appears in it, compared case-insensitively with runs of
/// white space as one space, so that a canary survives re-wrapping and re-casing.
pub fn find_canaries(text: &str, canaries: &[LicenseeCanary]) -> Vec<usize> {
    fn normalise(s: &str) -> String {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    }
    let hay = normalise(text);
    canaries
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.body
                .split_terminator('.')
                .map(normalise)
                .filter(|s| !s.is_empty())
                .any(|s| hay.contains(&s))
        })
        .map(|(i, _)| i)
        .collect()
}

/// The words a canary's sentences are made of, one per hash byte.
const WORDS: [&str; 256] = [
    "acorn", "almond", "amber", "anchor", "apple", "arrow", "autumn", "badge", "badger", "bakery",
    "balcony", "bamboo", "banner", "barley", "basket", "beacon", "beetle", "berry", "bicycle",
    "birch", "blanket", "blossom", "bonfire", "border", "bottle", "bramble", "breeze", "brick",
    "bridge", "bronze", "bucket", "butter", "cabin", "cactus", "camera", "canal", "candle",
    "canvas", "canyon", "carbon", "carpet", "castle", "cedar", "cellar", "chalk", "channel",
    "cherry", "chimney", "cider", "circle", "citrus", "clay", "cliff", "clock", "cloud", "clover",
    "cobalt", "cobble", "coffee", "comet", "compass", "copper", "coral", "cotton", "county",
    "crane", "crater", "cricket", "crystal", "curtain", "cypress", "dagger", "daisy", "dawn",
    "delta", "desert", "dial", "diamond", "dinner", "dolphin", "donkey", "dragon", "drum", "dune",
    "dusk", "eagle", "echo", "elm", "ember", "engine", "fabric", "falcon", "feather", "fennel",
    "fern", "ferry", "fiddle", "field", "fig", "flame", "flint", "forest", "fossil", "fountain",
    "fox", "frost", "galaxy", "garden", "garlic", "gate", "glacier", "glass", "granite", "grape",
    "gravel", "gull", "harbor", "harvest", "hazel", "hedge", "helmet", "heron", "hollow", "honey",
    "horizon", "iris", "island", "ivory", "jacket", "jasmine", "jelly", "jungle", "juniper",
    "kelp", "kettle", "kite", "ladder", "lagoon", "lantern", "larch", "lark", "lemon", "lentil",
    "library", "lily", "linen", "lizard", "locket", "lotus", "magnet", "mango", "maple", "marble",
    "market", "meadow", "melon", "mirror", "mist", "mole", "monsoon", "mosaic", "moss", "motor",
    "mountain", "mural", "needle", "nest", "nettle", "nickel", "nutmeg", "oak", "oasis", "ocean",
    "olive", "onion", "orbit", "orchard", "otter", "owl", "paddle", "palace", "panda", "paper",
    "parrot", "pasta", "pebble", "pepper", "pigeon", "pillow", "pine", "planet", "plaster", "plum",
    "pocket", "pond", "poppy", "porch", "potato", "prairie", "quarry", "quill", "rabbit", "radish",
    "rain", "raven", "reef", "ribbon", "ridge", "river", "robin", "rocket", "saddle", "saffron",
    "salmon", "sand", "satin", "scarf", "shadow", "shell", "silver", "slate", "sparrow", "spruce",
    "squash", "stable", "stone", "straw", "stream", "summit", "sunset", "swan", "tablet", "teapot",
    "temple", "thistle", "thunder", "tiger", "timber", "tomato", "torch", "tower", "trumpet",
    "tulip", "tunnel", "turtle", "valley", "velvet", "village", "violet", "walnut", "water",
    "wheat", "willow", "window", "winter", "wolf",
];
