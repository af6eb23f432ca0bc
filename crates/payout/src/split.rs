//! Largest-remainder (Hamilton) apportionment in exact integer arithmetic.

use std::cmp::Reverse;

use guild_core::syntax::Did;
use sha2::{Digest, Sha256};

use crate::PayoutError;

/// The tie-break key of `member` in period `period_id`:
/// `SHA-256(period id bytes ‖ 0x00 ‖ DID bytes)`. Among equal remainders the smallest
/// digest gets the unit first.
pub fn tie_digest(period_id: &str, member: &Did) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(period_id.as_bytes());
    h.update([0u8]);
    h.update(member.as_str().as_bytes());
    h.finalize().into()
}

/// Splits `total` minor units over `weights` by the largest-remainder method.
///
/// With `S = Σwᵢ`, line `i` gets its floor quota `⌊total·wᵢ/S⌋`, and the `L` units those
/// leave go one each to the `L` lines with the largest remainder `total·wᵢ mod S`; equal
/// remainders are ordered by [`tie_digest`] (smallest first), then by DID. Everything is
/// exact (`u128`), so the amounts sum to `total`, each is its floor quota or one more, a
/// weight of 0 gets 0, and the result does not depend on the order of `weights`.
///
/// Returns one line per member, zero amounts included, sorted by DID (byte order). Refused:
/// a member listed twice; a positive `total` when every weight is 0 or there is no member
/// (a `total` of 0 gives every line 0); a sum of weights that overflows.
pub fn split(
    total: u64,
    period_id: &str,
    weights: &[(Did, u64)],
) -> Result<Vec<(Did, u64)>, PayoutError> {
    let mut lines: Vec<&(Did, u64)> = weights.iter().collect();
    lines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = lines.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(PayoutError::DuplicateMember(w[0].0.clone()));
    }
    let sum = lines
        .iter()
        .try_fold(0u128, |s, (_, w)| s.checked_add(u128::from(*w)))
        .ok_or(PayoutError::Overflow("the sum of the weights"))?;
    if sum == 0 {
        if total == 0 {
            return Ok(lines.into_iter().map(|(d, _)| (d.clone(), 0)).collect());
        }
        return Err(PayoutError::NoWeight(total));
    }
    let total128 = u128::from(total);
    // total·wᵢ < 2^128: both factors are below 2^64.
    let mut amounts = Vec::with_capacity(lines.len());
    let mut remainders = Vec::with_capacity(lines.len());
    let mut given: u128 = 0;
    for (i, (_, w)) in lines.iter().enumerate() {
        let product = total128 * u128::from(*w);
        let quota = product / sum;
        given += quota; // Σ quotas ≤ total
        amounts.push(quota);
        let rem = product % sum;
        if rem > 0 {
            remainders.push(i);
        }
    }
    let left = total128 - given;
    // Σ remainders = left·S and each remainder is below S, so more than `left` lines have
    // one: the units left all go to lines with a positive remainder.
    let left = usize::try_from(left).map_err(|_| PayoutError::Overflow("units left"))?;
    if left > 0 {
        let mut ranked: Vec<(Reverse<u128>, [u8; 32], usize)> = remainders
            .into_iter()
            .map(|i| {
                let (member, w) = lines[i];
                let rem = (total128 * u128::from(*w)) % sum;
                (Reverse(rem), tie_digest(period_id, member), i)
            })
            .collect();
        // Lines are in DID order, so the index breaks a (never seen) digest tie by DID.
        ranked.sort_unstable();
        for &(_, _, i) in ranked.iter().take(left) {
            amounts[i] += 1;
        }
    }
    lines
        .into_iter()
        .zip(amounts)
        .map(|((d, _), a)| {
            // a ≤ total, a u64.
            u64::try_from(a)
                .map(|a| (d.clone(), a))
                .map_err(|_| PayoutError::Overflow("an amount"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn did(s: &str) -> Did {
        Did::parse(&format!("did:example:{s}")).unwrap()
    }

    fn w(list: &[(&str, u64)]) -> Vec<(Did, u64)> {
        list.iter().map(|(d, w)| (did(d), *w)).collect()
    }

    fn amounts(lines: &[(Did, u64)]) -> Vec<u64> {
        lines.iter().map(|(_, a)| *a).collect()
    }

    #[test]
    fn the_digest_is_of_period_zero_did() {
        let d = did("a");
        let mut bytes = b"2026-01".to_vec();
        bytes.push(0);
        bytes.extend_from_slice(b"did:example:a");
        assert_eq!(tie_digest("2026-01", &d), guild_core::cids::sha256(&bytes));
        assert_ne!(tie_digest("2026-01", &d), tie_digest("2026-02", &d));
    }

    #[test]
    fn one_hundred_over_three_equal_weights() {
        // 100·1/3 = 33 r 1 each; one unit left, to the smallest tie digest.
        let input = w(&[("a", 1), ("b", 1), ("c", 1)]);
        let out = split(100, "2026-01", &input).unwrap();
        let dids: Vec<Did> = out.iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(dids, vec![did("a"), did("b"), did("c")]);
        let winner = ["a", "b", "c"]
            .into_iter()
            .min_by_key(|d| tie_digest("2026-01", &did(d)))
            .unwrap();
        for (d, a) in &out {
            let expect = if *d == did(winner) { 34 } else { 33 };
            assert_eq!(*a, expect, "{d:?}");
        }
        assert_eq!(amounts(&out).iter().sum::<u64>(), 100);
        // Worked by hand (Python's hashlib): SHA-256("2026-01\0did:example:b") starts
        // 2b21e737…, below c's 8978ebcf… and a's b4253ebd…, so b gets the 34.
        assert_eq!(winner, "b");
        assert_eq!(amounts(&out), vec![33, 34, 33]);
        // Another period id may pick another member; this pair is known to differ.
        let winners: std::collections::BTreeSet<&str> = ["p1", "p2", "p3", "p4", "p5", "p6"]
            .into_iter()
            .map(|p| {
                ["a", "b", "c"]
                    .into_iter()
                    .min_by_key(|d| tie_digest(p, &did(d)))
                    .unwrap()
            })
            .collect();
        assert!(
            winners.len() > 1,
            "the period id plays no part in the tie-break"
        );
    }

    #[test]
    fn zero_weights_get_nothing() {
        let out = split(10, "p", &w(&[("a", 0), ("b", 0), ("c", 5)])).unwrap();
        assert_eq!(amounts(&out), vec![0, 0, 10]);
    }

    #[test]
    fn largest_remainders_win_before_any_tie_break() {
        // 10 over 1,2,4 (S = 7): 10/7 = 1 r3, 20/7 = 2 r6, 40/7 = 5 r5; floors 8, two left,
        // to b (r6) then c (r5).
        let out = split(10, "p", &w(&[("a", 1), ("b", 2), ("c", 4)])).unwrap();
        assert_eq!(amounts(&out), vec![1, 3, 6]);
        // 7 over 3,3,1 (S = 7): exact quotas 3, 3, 1; nothing left.
        let out = split(7, "p", &w(&[("c", 1), ("a", 3), ("b", 3)])).unwrap();
        assert_eq!(amounts(&out), vec![3, 3, 1]);
        // 5 over 2,2,2,1 (S = 7): 10/7 = 1 r3 three times, 5/7 = 0 r5; floors 3, two left:
        // d (r5) first, then the smallest-digest of a, b, c.
        let input = w(&[("a", 2), ("b", 2), ("c", 2), ("d", 1)]);
        let out = split(5, "q", &input).unwrap();
        assert_eq!(out[3].1, 1);
        let winner = ["a", "b", "c"]
            .into_iter()
            .min_by_key(|d| tie_digest("q", &did(d)))
            .unwrap();
        for (d, a) in &out[..3] {
            assert_eq!(*a, if *d == did(winner) { 2 } else { 1 });
        }
    }

    #[test]
    fn zero_totals_and_empty_inputs() {
        assert_eq!(split(0, "p", &[]).unwrap(), vec![]);
        assert_eq!(
            amounts(&split(0, "p", &w(&[("a", 0), ("b", 0)])).unwrap()),
            vec![0, 0]
        );
        assert_eq!(
            amounts(&split(0, "p", &w(&[("a", 3), ("b", 1)])).unwrap()),
            vec![0, 0]
        );
        assert_eq!(split(1, "p", &[]), Err(PayoutError::NoWeight(1)));
        assert_eq!(
            split(5, "p", &w(&[("a", 0), ("b", 0)])),
            Err(PayoutError::NoWeight(5))
        );
    }

    #[test]
    fn duplicates_are_refused() {
        assert_eq!(
            split(5, "p", &w(&[("b", 1), ("a", 1), ("b", 2)])),
            Err(PayoutError::DuplicateMember(did("b")))
        );
        assert_eq!(
            split(0, "p", &w(&[("a", 0), ("a", 0)])),
            Err(PayoutError::DuplicateMember(did("a")))
        );
    }

    #[test]
    fn extreme_values_are_exact() {
        let out = split(u64::MAX, "p", &w(&[("a", u64::MAX), ("b", u64::MAX)])).unwrap();
        // u64::MAX is odd: one gets the extra unit.
        assert_eq!(out[0].1 + out[1].1, u64::MAX);
        assert_eq!(out[0].1.abs_diff(out[1].1), 1);
        let out = split(u64::MAX, "p", &w(&[("a", 1), ("b", u64::MAX - 1)])).unwrap();
        assert_eq!(amounts(&out), vec![1, u64::MAX - 1]);
        let out = split(1, "p", &w(&[("a", u64::MAX), ("b", 1)])).unwrap();
        assert_eq!(amounts(&out), vec![1, 0]);
    }
}
