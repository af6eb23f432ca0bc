//! Ops signed elsewhere and submitted to this node over its API: a builder's accept or
//! receipt (a builder has a key, not a node). The op is decoded strictly, checked by guild-gov
//! (`State::may_take_accept`) against this node's state and clock, its parents must be in
//! the log, and then it goes through the driver like a local write: inserted by the rules,
//! stored, gossiped.

use guild_core::Cid;
use guild_gov::{OpStore, Reason, SignedOp};
use tracing::{debug, info};

use super::{EngineError, Task};

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    /// Submits an op signed elsewhere to collective `id`; see [`super::Engine::submit`].
    pub(super) async fn submit_signed(
        &mut self,
        id: Cid,
        bytes: &[u8],
    ) -> Result<Cid, EngineError> {
        let op = SignedOp::decode(bytes).map_err(|e| EngineError::Refused(Reason::Invalid(e)))?;
        if op.collective() != Some(&id) {
            return Err(EngineError::Refused(Reason::WrongCollective));
        }
        let now = self.now();
        let Some(c) = self.collectives.get_mut(&id) else {
            return Err(EngineError::UnknownCollective(id));
        };
        // The same op again: its id, nothing else (an accept is not taken twice).
        if c.driver.log().contains(op.id()) {
            return Ok(*op.id());
        }
        if op.prev().iter().any(|p| !c.driver.log().contains(p)) {
            return Err(EngineError::Refused(Reason::UnknownRef("prev")));
        }
        if let Err(reason) = c.driver.log().state_ref().may_take_accept(&op, now) {
            debug!(collective = %id, %reason, "refused a submitted op");
            return Err(EngineError::Refused(reason));
        }
        let author = op.author().to_owned();
        let mut out = Vec::new();
        let result = c.driver.submit(op, now, &mut out);
        self.perform(id, out).await;
        let op_id = result.map_err(EngineError::Refused)?;
        if !self.save(&id) {
            return Err(EngineError::Store("the op was not stored".into()));
        }
        self.dirty.remove(&id);
        info!(collective = %id, op = %op_id, %author, "took an op signed elsewhere");
        Ok(op_id)
    }

    /// The signed bytes of op `op` of collective `id`, if held.
    pub(super) fn op_bytes(&self, id: &Cid, op: &Cid) -> Result<Option<Vec<u8>>, EngineError> {
        let c = self
            .collectives
            .get(id)
            .ok_or(EngineError::UnknownCollective(*id))?;
        Ok(c.driver
            .log()
            .bytes_of(op)
            .map(std::borrow::Cow::into_owned))
    }
}
