//! # guild-bundle
//!
//! Bundles (protocol.md §6): what a collective delivers to a model builder under an agreement.
//!
//! It owns
//! - the cut ([`cut`]): a set of governance op heads, checked against the log, with the state
//!   folded from its causal past and its time (the latest `createdAt` of its heads);
//! - the deterministic selection ([`select`]): given an agreement in force at the cut, the
//!   replica heads and record listings the stewards hold, and the manifests of the evaluation
//!   bundles sealed at the cut, every record whose author's consent covers the agreement's
//!   template at the cut, in canonical order (author DID, then path), each with the consent op
//!   that covers it. Every use decision is guild-license's [`guild_license::may`];
//! - evaluation data ([`canary`]): an evaluation bundle's GUID and canary string, and the rule
//!   that no record delivered in a sealed evaluation bundle enters a training bundle;
//! - the manifest ([`manifest`]): `coop.guild.bundle.manifest` as a typed struct, checked
//!   against its lexicon, encoded as canonical DAG-CBOR with its CID, its licence forms
//!   emitted with the deterministic [`publication`];
//! - packaging ([`package`]): a sealed bundle as one CAR v1 (`docs/bundle-format.md`): the
//!   manifest, the governance ops that seal it, every record's inclusion proof, in a fixed
//!   order, streamed to a writer;
//! - verification ([`verify`]): everything a builder must trust, checked offline from the
//!   file alone in one sequential pass, each failure a one-line [`VerifyError`];
//! - the commons snapshot ([`snapshot`]): members' commons records, each with its licence
//!   record, proven against the authors' signed commits in one CAR, verified offline from
//!   the file alone, with its Croissant file and dataset card (`docs/commons-snapshot.md`);
//! - the dataset forms, pure functions of a manifest and its CAR's [`CarInfo`]: Croissant
//!   1.1 JSON-LD ([`croissant`]), the dataset card ([`card`]) and the disclosure file a
//!   builder needs for its own obligations ([`disclosure`]); `docs/bundle-forms.md`.
//!
//! It must not do I/O of its own (no runtime, disk, socket or clock: time comes from the
//! cut; the caller hands in a `Write` or a `Read`), and must not depend on input
//! order: the same inputs in any order give byte-identical manifests and bundle files. It
//! must not trust the file it verifies: stewards, elections and consent come from folding
//! the ops the file carries.
#![deny(missing_docs)]
// serde_json::json! nests deeply for the forms' documents.
#![recursion_limit = "256"]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod canary;
pub mod card;
pub mod croissant;
pub mod cut;
pub mod disclosure;
mod entries;
pub mod error;
pub mod estimate;
mod facts;
pub mod manifest;
pub mod package;
pub mod select;
pub mod snapshot;
pub mod verify;
mod walk;

pub use canary::{CANARY_PREFIX, EvaluationLedger, canary_guid, canary_string};
pub use cut::CutState;
pub use error::BundleError;
pub use facts::{CarInfo, UNKNOWN};
pub use manifest::{Credit, Entry, Estimate, LicenceForms, Manifest, ManifestParams, publication};
pub use package::{PackageSummary, write_bundle};
pub use select::{Exclusion, RecordListing, Replica, SelectRequest, Selected, Selection, select};
pub use verify::{Report, VerifyError, VerifyOptions, verify_bundle, verify_bundle_with};
