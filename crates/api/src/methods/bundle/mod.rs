//! `coop.guild.bundle.*`: bundles on a steward's node.

pub mod list_bundles;
pub mod list_revocations;
pub mod propose_bundle;
