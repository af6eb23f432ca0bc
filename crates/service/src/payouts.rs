//! Payout statements on a steward's node (protocol.md §8): booking a period's revenue for an
//! agreement, recomputing every other steward's statement and publishing the same one when it
//! agrees, and listing the statements with the stewards who agree on each.
//!
//! Every rule is guild-payout's (the split, member-days, weights) or guild-gov's (who may
//! publish a statement, that its lines sum to its total). A statement is computed at a cut:
//! the booking steward's at its log's heads, and every other steward recomputes it at the
//! statement op's `prev`, from its own copy of the sealed bundles' manifests, so that agreement
//! means the same bytes from the same inputs. A steward whose recomputation differs does not
//! publish, and says why in its log.

use std::collections::BTreeMap;
use std::sync::Arc;

use cid::Cid;
use guild_bundle::Manifest;
use guild_core::syntax::Did;
use guild_gov::body::{Money, OpBody, Period, StatementBody};
use guild_gov::{Log, OpKind, State};
use guild_payout::Basis;

use crate::bundles::{Hold, Stewardship, StewardshipError, io, read_manifest};
use crate::service::NodeStore;

/// A statement as the collective has it: its body, and every steward who published it.
#[derive(Debug, Clone)]
pub struct StatementView {
    /// The body every listed steward published.
    pub body: StatementBody,
    /// (steward, their statement op), in DID order; the first booking is among them.
    pub by: Vec<(Did, Cid)>,
    /// The agreement's builder, if the statement is per agreement.
    pub builder: Option<Did>,
}

/// The sealed, unvoided bundles of `agreement` proposed within `period` at this state, with
/// their manifests read from this node's files.
fn sealed_in_period(
    dir: &std::path::Path,
    log: &Log,
    state: &State,
    agreement: &Cid,
    period: &Period,
) -> Result<Vec<(Cid, Manifest)>, StewardshipError> {
    let (start, end) = (period.start.to_unix_micros(), period.end.to_unix_micros());
    let mut out = Vec::new();
    for (pid, b) in &state.bundles {
        let (Some((manifest, _)), None) = (&b.sealed, &b.voided) else {
            continue;
        };
        if b.agreement != *agreement {
            continue;
        }
        let Some(at) = log.get(pid).map(|op| op.created_at().to_unix_micros()) else {
            continue;
        };
        if at < start || at >= end {
            continue;
        }
        let bytes = read_manifest(dir, manifest)?.ok_or_else(|| {
            StewardshipError::Io(format!(
                "the manifest of sealed bundle {manifest} is not on this node yet"
            ))
        })?;
        let m = Manifest::from_car(&bytes).map_err(StewardshipError::Io)?.1;
        out.push((*manifest, m));
    }
    out.sort_by_key(|(c, _)| *c);
    Ok(out)
}

/// The statement at the cut `heads` of `log`.
fn compute_at(
    dir: &std::path::Path,
    log: &Log,
    heads: &[Cid],
    agreement: &Cid,
    period: Period,
    total: Money,
    basis: &Basis,
) -> Result<StatementBody, StewardshipError> {
    let state = log.state_at(heads);
    let sealed = sealed_in_period(dir, log, &state, agreement, &period)?;
    let refs: Vec<(Cid, &Manifest)> = sealed.iter().map(|(c, m)| (*c, m)).collect();
    Ok(guild_payout::compute(
        log, heads, &state, agreement, period, total, basis, &refs,
    )?)
}

impl<S: NodeStore> Stewardship<S> {
    /// Books `total` for `agreement` over `period`: computes the statement at this node's log
    /// heads and publishes it (stewards only; the rules refuse anyone else). Returns the op.
    pub async fn book_statement(
        &self,
        collective: Cid,
        agreement: Cid,
        period: Period,
        total: Money,
        basis: Basis,
    ) -> Result<(Cid, StatementBody), StewardshipError> {
        let log = Arc::new(self.engine.log(collective).await?);
        let dir = self.dir.clone();
        let body = {
            let log = log.clone();
            tokio::task::spawn_blocking(move || {
                let heads = log.heads();
                compute_at(&dir, &log, &heads, &agreement, period, total, &basis)
            })
            .await
            .map_err(io)??
        };
        let written = body.clone();
        let op = self
            .engine
            .write(
                collective,
                OpKind::PayoutStatement,
                Box::new(move |_, _| Ok(OpBody::PayoutStatement(Box::new(written)))),
            )
            .await?;
        tracing::info!(%op, period = %body.period.id, total = body.total.amount, "payout statement booked");
        Ok((op, body))
    }

    /// The statements other stewards published for an (agreement, period) this node has not
    /// published for, and has not refused: one per (agreement, period), the first by op id.
    pub(crate) fn statements_to_confirm(&self, st: &State, me: &str) -> Vec<Cid> {
        let mut seen: std::collections::BTreeSet<(Option<Cid>, String)> = st
            .payouts
            .values()
            .filter(|q| q.by.as_str() == me)
            .map(|q| (q.agreement, q.period.clone()))
            .collect();
        st.payouts
            .iter()
            .filter(|(id, p)| {
                p.by.as_str() != me
                    && !self.held(id)
                    && seen.insert((p.agreement, p.period.clone()))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Recomputes each statement of `pending` (see [`Self::statements_to_confirm`]) at its
    /// op's cut, and publishes the same body when its recomputation agrees.
    pub(crate) async fn confirm_statements(
        &self,
        collective: Cid,
        log: &Arc<Log>,
        pending: &[Cid],
    ) -> Result<(), StewardshipError> {
        for id in pending {
            let Some(op) = log.get(id) else { continue };
            let OpBody::PayoutStatement(theirs) = op.body() else {
                continue;
            };
            let (Some(agreement), Some(basis)) = (
                theirs.agreement.as_ref().map(|a| a.0),
                Basis::parse(theirs.basis.as_deref().unwrap_or("records")),
            ) else {
                self.hold_statement(*id, "not per agreement, or an unknown basis".into());
                continue;
            };
            let heads = op.prev().to_vec();
            let (dir, log2, theirs2) = (self.dir.clone(), log.clone(), theirs.clone());
            let recomputed = tokio::task::spawn_blocking(move || {
                compute_at(
                    &dir,
                    &log2,
                    &heads,
                    &agreement,
                    theirs2.period.clone(),
                    theirs2.total.clone(),
                    &basis,
                )
            })
            .await
            .map_err(io)?;
            match recomputed {
                Ok(body) if body == **theirs => {
                    let op = self
                        .engine
                        .write(
                            collective,
                            OpKind::PayoutStatement,
                            Box::new(move |_, _| Ok(OpBody::PayoutStatement(Box::new(body)))),
                        )
                        .await?;
                    tracing::info!(statement = %id, confirmation = %op, "payout statement recomputed identically and published");
                }
                Ok(_) => self.hold_statement(
                    *id,
                    "this node computes a different statement at its cut".into(),
                ),
                // A manifest not here yet: try again at the next pass.
                Err(StewardshipError::Io(why)) => {
                    tracing::debug!(statement = %id, why, "payout statement: waiting")
                }
                Err(e) => self.hold_statement(*id, e.to_string()),
            }
        }
        Ok(())
    }

    fn held(&self, id: &Cid) -> bool {
        self.holds
            .lock()
            .map(|h| matches!(h.get(id), Some(Hold::Refused(_))))
            .unwrap_or(false)
    }

    fn hold_statement(&self, id: Cid, why: String) {
        tracing::warn!(statement = %id, why, "payout statement not confirmed");
        if let Ok(mut h) = self.holds.lock() {
            h.insert(id, Hold::Refused(why));
        }
    }

    /// The collective's statements, one per distinct body, with the stewards who published
    /// each (oldest booking first by period id, then by agreement).
    pub async fn statements(
        &self,
        collective: Cid,
    ) -> Result<Vec<StatementView>, StewardshipError> {
        let status = self.engine.status(collective).await?;
        let log = self.engine.log(collective).await?;
        let mut by_body: BTreeMap<Vec<u8>, StatementView> = BTreeMap::new();
        for (id, p) in &status.state.payouts {
            let Some(op) = log.get(id) else { continue };
            let OpBody::PayoutStatement(body) = op.body() else {
                continue;
            };
            let key = guild_core::data::encode_serde(body).map_err(io)?;
            let builder = body
                .agreement
                .as_ref()
                .and_then(|a| status.state.agreements.get(&a.0))
                .map(|a| a.builder.clone());
            let view = by_body.entry(key).or_insert_with(|| StatementView {
                body: (**body).clone(),
                by: Vec::new(),
                builder,
            });
            view.by.push((p.by.clone(), *id));
        }
        let mut out: Vec<StatementView> = by_body.into_values().collect();
        for v in &mut out {
            v.by.sort();
        }
        out.sort_by(|a, b| {
            (&a.body.period.id, &a.body.agreement).cmp(&(&b.body.period.id, &b.body.agreement))
        });
        Ok(out)
    }
}
