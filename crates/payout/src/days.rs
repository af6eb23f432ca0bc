//! A period's day slots and a member's member-days in it.

use guild_gov::body::Period;

use crate::PayoutError;

/// The length of a day slot, in seconds.
pub const DAY_SECONDS: i64 = 86_400;

/// A period `[start, end)` in unix seconds, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    start: i64,
    end: i64,
}

impl Window {
    /// The window `[start, end)`, in unix seconds; refused if `end <= start`.
    pub fn new(start: i64, end: i64) -> Result<Window, PayoutError> {
        if end <= start {
            return Err(PayoutError::EmptyPeriod {
                start: start.to_string(),
                end: end.to_string(),
            });
        }
        Ok(Window { start, end })
    }

    /// The window of a statement's period: its start rounded down to the second, its end
    /// rounded up, so that every instant of the period is in it. Refused if the period's
    /// end is not after its start.
    pub fn from_period(period: &Period) -> Result<Window, PayoutError> {
        let (start, end) = (period.start.to_unix_micros(), period.end.to_unix_micros());
        if end <= start {
            return Err(PayoutError::EmptyPeriod {
                start: period.start.as_str().to_owned(),
                end: period.end.as_str().to_owned(),
            });
        }
        let start = start.div_euclid(1_000_000);
        let end = ceil_div(i128::from(end), 1_000_000);
        // A datetime's year is at most 9999, so its seconds fit an i64 comfortably.
        let end = i64::try_from(end).map_err(|_| PayoutError::Overflow("period end"))?;
        Window::new(start, end)
    }

    /// Its start (inclusive), unix seconds.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Its end (exclusive), unix seconds.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// How many day slots it has: `⌈(end − start) / 86 400⌉` (at least 1).
    pub fn slots(&self) -> u64 {
        let n = ceil_div(
            i128::from(self.end) - i128::from(self.start),
            DAY_SECONDS.into(),
        );
        // 0 < n ≤ 2^64 / 86 400.
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// `⌈a / b⌉` for `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0)
}

/// A member's member-days in `period`: how many of its day slots
/// `[start + k·86 400, start + (k+1)·86 400)` (`k` from 0 while the slot's start is before the
/// period's end; the last slot may be shorter) begin at an instant when the member was in
/// force, i.e. inside some interval `(from, until)` with `from ≤ slot start` and
/// (`until` is `None` or `slot start < until`). Intervals may be unsorted and may overlap; each
/// slot counts once. An interval with `until ≤ from` is empty.
pub fn member_days(period: &Window, in_force: &[(i64, Option<i64>)]) -> u64 {
    let start = i128::from(period.start);
    let day = i128::from(DAY_SECONDS);
    let n = i128::from(period.slots());
    // Each interval covers the slots k in [lo, hi): from ≤ start + k·day ⇔ k ≥ ⌈(from − start)/day⌉,
    // and start + k·day < until ⇔ k < ⌈(until − start)/day⌉.
    let mut ranges: Vec<(i128, i128)> = in_force
        .iter()
        .filter_map(|&(from, until)| {
            let lo = ceil_div(i128::from(from) - start, day).max(0);
            let hi = until.map_or(n, |u| ceil_div(i128::from(u) - start, day).min(n));
            (lo < hi).then_some((lo, hi))
        })
        .collect();
    ranges.sort_unstable();
    let mut days: i128 = 0;
    let mut covered_to: i128 = 0; // every slot below this is counted
    for (lo, hi) in ranges {
        let lo = lo.max(covered_to);
        if lo < hi {
            days += hi - lo;
            covered_to = hi;
        }
    }
    // 0 ≤ days ≤ n, which fits a u64.
    u64::try_from(days).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guild_core::syntax::Datetime;

    const D: i64 = DAY_SECONDS;
    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;

    /// A 30-day period from T0.
    fn month() -> Window {
        Window::new(T0, T0 + 30 * D).unwrap()
    }

    #[test]
    fn windows_must_not_be_empty() {
        assert!(matches!(
            Window::new(5, 5),
            Err(PayoutError::EmptyPeriod { .. })
        ));
        assert!(Window::new(6, 5).is_err());
        assert_eq!(Window::new(5, 6).unwrap().slots(), 1);
        assert_eq!(Window::new(0, D).unwrap().slots(), 1);
        assert_eq!(Window::new(0, D + 1).unwrap().slots(), 2);
        assert_eq!(
            Window::new(i64::MIN, i64::MAX).unwrap().slots(),
            213_503_982_334_602
        );
    }

    #[test]
    fn windows_from_periods() {
        let period = |s: &str, e: &str| Period {
            id: "p".into(),
            start: Datetime::parse(s).unwrap(),
            end: Datetime::parse(e).unwrap(),
        };
        let w =
            Window::from_period(&period("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")).unwrap();
        assert_eq!((w.start(), w.end(), w.slots()), (T0, T0 + 31 * D, 31));
        // Offsets are instants.
        let w = Window::from_period(&period(
            "2026-01-01T01:00:00+01:00",
            "2026-01-02T00:00:00.000Z",
        ))
        .unwrap();
        assert_eq!((w.start(), w.end()), (T0, T0 + D));
        // Fractions: the start rounds down, the end up.
        let w = Window::from_period(&period("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:01.25Z"))
            .unwrap();
        assert_eq!((w.start(), w.end()), (T0, T0 + 2));
        // Before 1970 too.
        let w =
            Window::from_period(&period("1969-12-31T23:59:59.5Z", "1970-01-01T00:00:00Z")).unwrap();
        assert_eq!((w.start(), w.end()), (-1, 0));
        for (s, e) in [
            ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z"),
            ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"),
        ] {
            assert!(matches!(
                Window::from_period(&period(s, e)),
                Err(PayoutError::EmptyPeriod { .. })
            ));
        }
    }

    #[test]
    fn whole_period_and_nothing() {
        let m = month();
        assert_eq!(member_days(&m, &[]), 0);
        assert_eq!(member_days(&m, &[(T0, None)]), 30);
        assert_eq!(member_days(&m, &[(T0 - 1000 * D, None)]), 30);
        assert_eq!(member_days(&m, &[(i64::MIN, Some(i64::MAX))]), 30);
    }

    #[test]
    fn joining_exactly_at_the_start_counts_the_first_day() {
        let m = month();
        assert_eq!(member_days(&m, &[(T0, Some(T0 + D))]), 1);
        // One second later misses the first slot's start.
        assert_eq!(member_days(&m, &[(T0 + 1, None)]), 29);
        // Joining exactly at a slot's start counts that slot.
        assert_eq!(member_days(&m, &[(T0 + 10 * D, None)]), 20);
        assert_eq!(member_days(&m, &[(T0 + 10 * D - 1, None)]), 20);
        assert_eq!(member_days(&m, &[(T0 + 10 * D + 1, None)]), 19);
    }

    #[test]
    fn leaving_at_a_slot_start_does_not_count_that_slot() {
        let m = month();
        // In force until exactly the start of slot 10: slots 0..10.
        assert_eq!(member_days(&m, &[(T0, Some(T0 + 10 * D))]), 10);
        // One second after: slot 10's start is covered.
        assert_eq!(member_days(&m, &[(T0, Some(T0 + 10 * D + 1))]), 11);
        // Leaving at the period's start or one second after it.
        assert_eq!(member_days(&m, &[(T0 - D, Some(T0))]), 0);
        assert_eq!(member_days(&m, &[(T0 - D, Some(T0 + 1))]), 1);
        // Leaving at the period's end counts every slot.
        assert_eq!(member_days(&m, &[(T0, Some(T0 + 30 * D))]), 30);
    }

    #[test]
    fn intervals_outside_the_period_count_nothing() {
        let m = month();
        assert_eq!(member_days(&m, &[(T0 - 10 * D, Some(T0 - D))]), 0);
        assert_eq!(member_days(&m, &[(T0 + 30 * D, None)]), 0);
        assert_eq!(member_days(&m, &[(T0 + 30 * D, Some(T0 + 40 * D))]), 0);
        // Empty and inverted intervals.
        assert_eq!(member_days(&m, &[(T0 + 5 * D, Some(T0 + 5 * D))]), 0);
        assert_eq!(member_days(&m, &[(T0 + 9 * D, Some(T0 + 2 * D))]), 0);
        // An interval strictly inside one slot, missing its start.
        assert_eq!(member_days(&m, &[(T0 + 1, Some(T0 + D - 1))]), 0);
    }

    #[test]
    fn overlapping_and_unsorted_intervals_count_a_day_once() {
        let m = month();
        let iv = [
            (T0 + 20 * D, Some(T0 + 25 * D)), // 20..25
            (T0, Some(T0 + 10 * D)),          // 0..10
            (T0 + 5 * D, Some(T0 + 12 * D)),  // 5..12, overlaps
            (T0 + 2 * D, Some(T0 + 3 * D)),   // inside the second
            (T0 + 24 * D, Some(T0 + 26 * D)), // 24..26, overlaps
        ];
        assert_eq!(member_days(&m, &iv), 12 + 6);
        let mut rev = iv;
        rev.reverse();
        assert_eq!(member_days(&m, &rev), 18);
        // Adjacent intervals: a leave and a rejoin at the same instant lose nothing.
        assert_eq!(
            member_days(&m, &[(T0, Some(T0 + 7 * D)), (T0 + 7 * D, None)]),
            30
        );
        // The same interval twice.
        assert_eq!(member_days(&m, &[(T0, None), (T0, None)]), 30);
        // An open interval swallows the rest.
        assert_eq!(
            member_days(&m, &[(T0 + 3 * D, None), (T0, Some(T0 + 4 * D))]),
            30
        );
    }

    #[test]
    fn the_last_slot_may_be_shorter() {
        // 2.5 days: slots start at 0, D, 2D.
        let w = Window::new(T0, T0 + 2 * D + D / 2).unwrap();
        assert_eq!(w.slots(), 3);
        assert_eq!(member_days(&w, &[(T0, None)]), 3);
        // Joining at the last slot's start counts it, one second after does not.
        assert_eq!(member_days(&w, &[(T0 + 2 * D, None)]), 1);
        assert_eq!(member_days(&w, &[(T0 + 2 * D + 1, None)]), 0);
        // The slot that would start at the end is not a slot.
        let w = Window::new(T0, T0 + 2 * D).unwrap();
        assert_eq!(member_days(&w, &[(T0 + 2 * D, None)]), 0);
        // A one-second period has one slot.
        let w = Window::new(T0, T0 + 1).unwrap();
        assert_eq!(member_days(&w, &[(T0, Some(T0 + 1))]), 1);
        assert_eq!(member_days(&w, &[(T0 + 1, None)]), 0);
    }

    #[test]
    fn extreme_instants_do_not_overflow() {
        let w = Window::new(i64::MIN, i64::MAX).unwrap();
        assert_eq!(member_days(&w, &[(i64::MIN, None)]), w.slots());
        assert_eq!(member_days(&w, &[(i64::MAX, None)]), 0);
        assert_eq!(member_days(&w, &[(i64::MIN, Some(i64::MIN + 1))]), 1);
        let w = Window::new(i64::MAX - 1, i64::MAX).unwrap();
        assert_eq!(member_days(&w, &[(i64::MIN, Some(i64::MAX))]), 1);
    }
}
