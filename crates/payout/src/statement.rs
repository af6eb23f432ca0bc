//! A period's payout statement.

use guild_core::syntax::Did;
use guild_gov::body::{CidRef, Money, PayoutLine, Period, StatementBody};

use crate::{PayoutError, Window, member_days, split};

/// The rounding method this crate computes, as the statement names it.
pub const METHOD: &str = "largest-remainder";

/// The most lines a statement may carry (the lexicon's `maxLength` of `lines`).
pub const MAX_LINES: usize = 10_000;

/// One member's claim on a period's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The member (current or former: the governance rule refuses a line for anyone else).
    pub member: Did,
    /// Their integer weight (a contribution estimate scaled to an integer); a negative
    /// weight counts as 0.
    pub weight: i64,
    /// When they were in force (a member with consent in force), as `(from, until)` in unix
    /// seconds, `until` exclusive and `None` while still in force; see [`member_days`].
    pub in_force: Vec<(i64, Option<i64>)>,
}

/// The statement of `period` splitting `total` over `shares`, for `agreement` if the period
/// is per agreement.
///
/// Each member's weight is floored at 0 and multiplied by their [`member_days`] in the period;
/// the total's amount is split over those effective weights by [`split`] (method
/// [`METHOD`]). A member with no member-day in the period gets no line; every other member
/// gets one, with their floored weight, their member-days and their amount (possibly 0),
/// lines in DID byte order. The lines sum to the total exactly.
///
/// Refused: a negative total, a period that ends at or before its start, a member listed
/// twice, a positive total when no member has both weight and member-days, a weight times
/// member-days beyond `u64`, and more than [`MAX_LINES`] lines.
pub fn statement(
    agreement: Option<CidRef>,
    period: Period,
    total: Money,
    shares: &[Share],
) -> Result<StatementBody, PayoutError> {
    let amount =
        u64::try_from(total.amount).map_err(|_| PayoutError::NegativeTotal(total.amount))?;
    let window = Window::from_period(&period)?;
    // Duplicates are refused even among members the statement leaves out.
    let mut members: Vec<&Did> = shares.iter().map(|s| &s.member).collect();
    members.sort_unstable();
    if let Some(w) = members.windows(2).find(|w| w[0] == w[1]) {
        return Err(PayoutError::DuplicateMember(w[0].clone()));
    }
    let mut counted: Vec<(&Did, u64, u64)> = Vec::with_capacity(shares.len());
    for s in shares {
        let days = member_days(&window, &s.in_force);
        if days == 0 {
            continue;
        }
        let weight = u64::try_from(s.weight.max(0)).unwrap_or(0);
        counted.push((&s.member, weight, days));
    }
    if counted.len() > MAX_LINES {
        return Err(PayoutError::TooManyLines(counted.len()));
    }
    counted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let effective = counted
        .iter()
        .map(|&(member, weight, days)| {
            weight
                .checked_mul(days)
                .map(|w| (member.clone(), w))
                .ok_or(PayoutError::Overflow("a weight times member-days"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let amounts = split(amount, &period.id, &effective)?;
    // `split` returns its lines in DID order, as `counted` is.
    let lines = counted
        .into_iter()
        .zip(amounts)
        .map(|((member, weight, member_days), (_, amount))| PayoutLine {
            member: member.clone(),
            weight,
            member_days,
            amount,
        })
        .collect();
    Ok(StatementBody {
        agreement,
        period,
        total,
        method: METHOD.to_owned(),
        basis: None,
        bundles: Vec::new(),
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guild_core::syntax::Datetime;

    const D: i64 = crate::DAY_SECONDS;
    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;

    fn did(s: &str) -> Did {
        Did::parse(&format!("did:example:{s}")).unwrap()
    }

    fn january() -> Period {
        Period {
            id: "2026-01".into(),
            start: Datetime::parse("2026-01-01T00:00:00Z").unwrap(),
            end: Datetime::parse("2026-02-01T00:00:00Z").unwrap(),
        }
    }

    fn eur(amount: i64) -> Money {
        Money {
            amount,
            currency: "EUR".into(),
        }
    }

    fn share(m: &str, weight: i64, in_force: &[(i64, Option<i64>)]) -> Share {
        Share {
            member: did(m),
            weight,
            in_force: in_force.to_vec(),
        }
    }

    #[test]
    fn pro_rated_by_member_days() {
        // 31 days. a: whole month, weight 2 (62); b: from day 10, weight 2 (42);
        // c: weight -3, floored (0); d: left before the month (no line).
        let shares = [
            share("d", 5, &[(T0 - 40 * D, Some(T0 - D))]),
            share("b", 2, &[(T0 + 10 * D, None)]),
            share("c", -3, &[(T0, None)]),
            share("a", 2, &[(T0 - 5 * D, None)]),
        ];
        let st = statement(None, january(), eur(10_400), &shares).unwrap();
        assert_eq!(st.method, "largest-remainder");
        assert_eq!(st.total, eur(10_400));
        assert_eq!(st.period, january());
        let got: Vec<(Did, u64, u64, u64)> = st
            .lines
            .iter()
            .map(|l| (l.member.clone(), l.weight, l.member_days, l.amount))
            .collect();
        // 10 400·62/104 = 6200, 10 400·42/104 = 4200: exact.
        assert_eq!(
            got,
            vec![
                (did("a"), 2, 31, 6200),
                (did("b"), 2, 21, 4200),
                (did("c"), 0, 31, 0),
            ]
        );
    }

    #[test]
    fn lines_sum_to_the_total() {
        let shares = [
            share("a", 1, &[(T0, None)]),
            share("b", 1, &[(T0, None)]),
            share("c", 1, &[(T0, None)]),
        ];
        let st = statement(None, january(), eur(100), &shares).unwrap();
        let amounts: Vec<u64> = st.lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts.iter().sum::<u64>(), 100);
        let mut sorted = amounts.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![33, 33, 34]);
    }

    #[test]
    fn refusals() {
        let one = [share("a", 1, &[(T0, None)])];
        assert_eq!(
            statement(None, january(), eur(-1), &one),
            Err(PayoutError::NegativeTotal(-1))
        );
        let mut empty = january();
        empty.end = empty.start.clone();
        assert!(matches!(
            statement(None, empty, eur(1), &one),
            Err(PayoutError::EmptyPeriod { .. })
        ));
        // Duplicates, even when one of them is left out for having no member-days.
        let dup = [share("a", 1, &[(T0, None)]), share("a", 1, &[])];
        assert_eq!(
            statement(None, january(), eur(1), &dup),
            Err(PayoutError::DuplicateMember(did("a")))
        );
        // Nobody in force, or nobody with weight.
        assert_eq!(
            statement(None, january(), eur(5), &[share("a", 1, &[])]),
            Err(PayoutError::NoWeight(5))
        );
        assert_eq!(
            statement(None, january(), eur(5), &[share("a", 0, &[(T0, None)])]),
            Err(PayoutError::NoWeight(5))
        );
        // But a total of 0 is a statement of zeros.
        let st = statement(None, january(), eur(0), &[share("a", 0, &[(T0, None)])]).unwrap();
        assert_eq!(st.lines.len(), 1);
        assert_eq!(st.lines[0].amount, 0);
        // Weight times days beyond u64.
        assert_eq!(
            statement(
                None,
                january(),
                eur(5),
                &[share("a", i64::MAX, &[(T0, None)])]
            ),
            Err(PayoutError::Overflow("a weight times member-days"))
        );
        // Too many lines.
        let many: Vec<Share> = (0..=MAX_LINES)
            .map(|i| share(&format!("m{i}"), 1, &[(T0, None)]))
            .collect();
        assert_eq!(
            statement(None, january(), eur(5), &many),
            Err(PayoutError::TooManyLines(MAX_LINES + 1))
        );
        assert!(statement(None, january(), eur(5), &many[..MAX_LINES]).is_ok());
    }
}
