//! A causal cut of the governance log: the heads that name it, the state folded from its
//! causal past, and its time.

use guild_core::Cid;
use guild_core::syntax::Datetime;
use guild_gov::{Log, State};

use crate::error::BundleError;

/// The state of a collective at a causal cut.
#[derive(Debug, Clone)]
pub struct CutState {
    /// The heads, in CID order, none twice, none an ancestor of another.
    pub heads: Vec<Cid>,
    /// The state folded from the ops in the heads' causal past (the heads included).
    pub state: State,
    /// The cut's time: the latest `createdAt` of its heads. Time runs forward along the DAG
    /// (guild-gov refuses an op dated before a parent), so no op of the cut is dated later.
    /// Consent `effectiveFrom` and the agreement's term are judged at this time.
    pub time: Datetime,
}

impl CutState {
    /// The cut named by `heads` in `log`. Every head must be in the log: a node that lacks
    /// an op of the cut cannot compute the proposer's selection, and says so rather than
    /// computing another. Heads given in any order, or twice, name the same cut; a head in
    /// the causal past of another is refused (it would name the same cut differently).
    pub fn at(log: &Log, heads: &[Cid]) -> Result<CutState, BundleError> {
        let mut heads = heads.to_vec();
        heads.sort_unstable();
        heads.dedup();
        let mut time: Option<Datetime> = None;
        for h in &heads {
            let op = log.get(h).ok_or(BundleError::UnknownHead(*h))?;
            if time.as_ref().is_none_or(|t| op.created_at() > t) {
                time = Some(op.created_at().clone());
            }
        }
        let time = time.ok_or(BundleError::EmptyCut)?;
        for a in &heads {
            if heads.iter().any(|b| log.is_ancestor(a, b)) {
                return Err(BundleError::NotHeads(*a));
            }
        }
        let state = log.state_at(&heads);
        Ok(CutState { heads, state, time })
    }
}
