//! A statement from the collective's log and its sealed bundles, at a cut: what a steward
//! books and what every other steward recomputes before it publishes the same statement.
//!
//! Inputs, all fixed by the cut (the statement op's `prev`), so that every steward computes
//! the same bytes:
//! - **member-days** come from the consent ops for the agreement's template in the cut's
//!   causal past: per member, in register order (`rev`), a grant opens an interval at its
//!   `effectiveFrom` and a revoke closes it at its own; a departure (leave or removal op at
//!   the cut) closes any interval at the op's `createdAt`. Times are the authors' own
//!   (protocol.md: clocks are informative), clamped to the period by [`member_days`];
//! - **weights** come from the sealed bundles of the agreement the caller passes (those
//!   proposed within the period): with [`Basis::Estimates`], the sum of each member's
//!   estimates of that method, in billionths (parsed from the decimal strings, never through
//!   floating point; digits beyond the ninth decimal are dropped); with [`Basis::Records`],
//!   the member's records in those bundles.

use std::collections::BTreeMap;

use guild_bundle::Manifest;
use guild_core::Cid;
use guild_core::syntax::Did;
use guild_gov::body::{CidRef, Money, OpBody, Period, StatementBody};
use guild_gov::{Departure, Log, State};

use crate::{PayoutError, Share, statement};

/// What the weights of a statement are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The members' contribution estimates of this method.
    Estimates(String),
    /// The members' records in the bundles.
    Records,
}

impl Basis {
    /// From its wire form (`estimates:<method>`, `records`).
    pub fn parse(s: &str) -> Option<Basis> {
        match s {
            "records" => Some(Basis::Records),
            _ => s
                .strip_prefix("estimates:")
                .filter(|m| !m.is_empty())
                .map(|m| Basis::Estimates(m.to_owned())),
        }
    }

    /// Its wire form.
    pub fn as_string(&self) -> String {
        match self {
            Basis::Estimates(m) => format!("estimates:{m}"),
            Basis::Records => "records".to_owned(),
        }
    }
}

/// Per member, the intervals (unix seconds, end exclusive) in which their consent for
/// `template` was in force, from the ops in the causal past of `heads`.
pub fn in_force(
    log: &Log,
    heads: &[Cid],
    state: &State,
    template: &str,
) -> BTreeMap<Did, Vec<(i64, Option<i64>)>> {
    let secs = |micros: i64| micros.div_euclid(1_000_000);
    let mut events: BTreeMap<Did, Vec<(u64, bool, i64)>> = BTreeMap::new();
    let past = log.ancestors(heads);
    for id in log.topo_order(&past) {
        if log.is_suppressed(&id) {
            continue;
        }
        let Some(op) = log.get(&id) else { continue };
        let (grant, b) = match op.body() {
            OpBody::ConsentGrant(b) => (true, b),
            OpBody::ConsentRevoke(b) => (false, b),
            _ => continue,
        };
        if b.templates.iter().any(|t| &**t == template) {
            events.entry(op.author_did().clone()).or_default().push((
                b.rev,
                grant,
                secs(b.effective_from.to_unix_micros()),
            ));
        }
    }
    let mut out = BTreeMap::new();
    for (member, mut ev) in events {
        ev.sort_by_key(|e| e.0);
        let departed = state.departed.get(&member).and_then(|d| {
            let op = match d {
                Departure::Left(c) | Departure::Removed(c) => c,
            };
            log.get(op).map(|o| secs(o.created_at().to_unix_micros()))
        });
        let mut intervals: Vec<(i64, Option<i64>)> = Vec::new();
        let mut open: Option<i64> = None;
        for (_, grant, at) in ev {
            match (grant, open) {
                (true, None) => open = Some(at),
                (false, Some(from)) => {
                    intervals.push((from, Some(at)));
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(from) = open {
            intervals.push((from, None));
        }
        if let Some(left) = departed {
            intervals = intervals
                .into_iter()
                .map(|(from, until)| (from, Some(until.map_or(left, |u| u.min(left)))))
                .collect();
        }
        out.insert(member, intervals);
    }
    out
}

/// `value` (a decimal string such as `-0.0125`) in billionths, the extra digits dropped.
pub fn billionths(value: &str) -> Option<i128> {
    let (neg, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f: i128 = 0;
    for i in 0..9 {
        f = f * 10 + frac.as_bytes().get(i).map_or(0, |b| i128::from(b - b'0'));
    }
    let v = whole.checked_mul(1_000_000_000)?.checked_add(f)?;
    Some(if neg { -v } else { v })
}

/// The statement of `agreement` for `period` at the cut `heads` (`state` is the log's state
/// there), splitting `total` by `basis` over the `sealed` bundles given (manifest CID and
/// manifest), pro-rated by member-days.
#[allow(clippy::too_many_arguments)]
pub fn compute(
    log: &Log,
    heads: &[Cid],
    state: &State,
    agreement: &Cid,
    period: Period,
    total: Money,
    basis: &Basis,
    sealed: &[(Cid, &Manifest)],
) -> Result<StatementBody, PayoutError> {
    let a = state
        .agreements
        .get(agreement)
        .ok_or(PayoutError::UnknownAgreement(*agreement))?;
    let intervals = in_force(log, heads, state, &a.template);
    let mut weights: BTreeMap<&Did, i128> = BTreeMap::new();
    for (_, m) in sealed {
        match basis {
            Basis::Estimates(method) => {
                for e in m.estimates.iter().filter(|e| &e.method == method) {
                    let v = billionths(&e.value)
                        .ok_or_else(|| PayoutError::BadEstimate(e.value.clone()))?;
                    *weights.entry(&e.member).or_default() += v;
                }
            }
            Basis::Records => {
                for c in &m.credits {
                    *weights.entry(&c.did).or_default() += i128::from(c.records.unwrap_or(0));
                }
            }
        }
    }
    let shares: Vec<Share> = intervals
        .into_iter()
        .map(|(member, in_force)| {
            let w = weights.get(&member).copied().unwrap_or(0);
            Share {
                weight: i64::try_from(w.max(0)).unwrap_or(i64::MAX),
                member,
                in_force,
            }
        })
        .collect();
    let mut body = statement(Some(CidRef(*agreement)), period, total, &shares)?;
    body.basis = Some(basis.as_string());
    let mut bundles: Vec<Cid> = sealed.iter().map(|(c, _)| *c).collect();
    bundles.sort();
    body.bundles = bundles.into_iter().map(CidRef).collect();
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_parse_to_billionths_without_floats() {
        assert_eq!(billionths("0.25"), Some(250_000_000));
        assert_eq!(billionths("-0.0125"), Some(-12_500_000));
        assert_eq!(billionths("3"), Some(3_000_000_000));
        assert_eq!(billionths("0.0000000019"), Some(1));
        assert_eq!(billionths(".5"), Some(500_000_000));
        assert_eq!(billionths("1e-7"), None);
        assert_eq!(billionths("-"), None);
        assert_eq!(billionths("NaN"), None);
    }

    #[test]
    fn bases_round_trip() {
        for s in ["records", "estimates:group-shapley"] {
            assert_eq!(Basis::parse(s).unwrap().as_string(), s);
        }
        assert_eq!(Basis::parse("estimates:"), None);
        assert_eq!(Basis::parse("bytes"), None);
    }
}
