//! Properties of the apportionment and the statement: exact sums, quota bounds, independence
//! of the input order, determinism, and pro-rating by member-days.

use guild_core::syntax::{Datetime, Did};
use guild_gov::body::{Money, Period};
use guild_payout::{Share, Window, member_days, split, statement, tie_digest};
use proptest::prelude::*;

fn did(i: usize, tag: u32) -> Did {
    Did::parse(&format!("did:example:m{tag:x}-{i}")).unwrap()
}

/// Distinct members with weights: small weights (many ties), or any u64.
fn weights() -> impl Strategy<Value = Vec<(Did, u64)>> {
    let weight = prop_oneof![0u64..4, 0u64..1_000_000, any::<u64>()];
    (prop::collection::vec(weight, 1..24), any::<u32>()).prop_map(|(ws, tag)| {
        ws.into_iter()
            .enumerate()
            .map(|(i, w)| (did(i, tag), w))
            .collect()
    })
}

fn total() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..10, 0u64..100_000, any::<u64>()]
}

fn floor_quota(total: u64, w: u64, sum: u128) -> u128 {
    u128::from(total) * u128::from(w) / sum
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn amounts_sum_to_the_total_within_one_of_the_quota(
        total in total(),
        ws in weights(),
        period in "[a-zA-Z0-9-]{1,12}",
    ) {
        let sum: u128 = ws.iter().map(|(_, w)| u128::from(*w)).sum();
        let out = match split(total, &period, &ws) {
            Ok(out) => out,
            Err(e) => {
                prop_assert!(sum == 0 && total > 0, "{e}");
                return Ok(());
            }
        };
        prop_assert_eq!(out.len(), ws.len());
        let paid: u128 = out.iter().map(|(_, a)| u128::from(*a)).sum();
        prop_assert_eq!(paid, u128::from(total));
        // Sorted by DID, one line per input member.
        prop_assert!(out.windows(2).all(|w| w[0].0.as_str().as_bytes() < w[1].0.as_str().as_bytes()));
        let mut input: Vec<(Did, u64)> = ws.clone();
        input.sort();
        for ((d, a), (d_in, w)) in out.iter().zip(&input) {
            prop_assert_eq!(d, d_in);
            if sum == 0 {
                prop_assert_eq!(*a, 0);
                continue;
            }
            let q = floor_quota(total, *w, sum);
            prop_assert!(u128::from(*a) >= q && u128::from(*a) <= q + 1, "{a} vs quota {q}");
            if *w == 0 {
                prop_assert_eq!(*a, 0);
            }
        }
    }

    #[test]
    fn independent_of_input_order_and_deterministic(
        total in total(),
        (ws, shuffled) in weights().prop_flat_map(|ws| (Just(ws.clone()), Just(ws).prop_shuffle())),
        period in "[a-z0-9-]{1,12}",
    ) {
        let a = split(total, &period, &ws);
        prop_assert_eq!(&a, &split(total, &period, &shuffled));
        prop_assert_eq!(&a, &split(total, &period, &ws));
    }

    #[test]
    fn larger_weights_never_get_less(
        total in total(),
        ws in weights(),
        period in "[a-z0-9-]{1,12}",
    ) {
        let Ok(out) = split(total, &period, &ws) else { return Ok(()) };
        let mut input = ws.clone();
        input.sort();
        for (i, (di, wi)) in input.iter().enumerate() {
            for (j, (dj, wj)) in input.iter().enumerate() {
                let (ai, aj) = (out[i].1, out[j].1);
                if wi > wj {
                    prop_assert!(ai >= aj);
                }
                if i != j && wi == wj && ai != aj {
                    // Equal weights, equal remainders: the extra unit went by tie digest.
                    prop_assert_eq!(ai.abs_diff(aj), 1);
                    let winner = if ai > aj { di } else { dj };
                    let loser = if ai > aj { dj } else { di };
                    prop_assert!(tie_digest(&period, winner) < tie_digest(&period, loser));
                }
            }
        }
    }

    #[test]
    fn member_days_counts_exactly_the_slots_whose_start_is_in_force(
        start in -10_000_000i64..10_000_000,
        len in 1i64..2_000_000,
        intervals in prop::collection::vec(
            (-3_000_000i64..3_000_000, prop::option::of(-3_000_000i64..3_000_000)),
            0..6,
        ),
    ) {
        let window = Window::new(start, start + len).unwrap();
        let in_force: Vec<(i64, Option<i64>)> = intervals
            .iter()
            .map(|&(f, u)| (start + f, u.map(|u| start + u)))
            .collect();
        // The definition, slot by slot.
        let mut expect = 0u64;
        let mut slot = start;
        while slot < start + len {
            if in_force.iter().any(|&(f, u)| f <= slot && u.is_none_or(|u| slot < u)) {
                expect += 1;
            }
            slot += 86_400;
        }
        prop_assert_eq!(member_days(&window, &in_force), expect);
        let mut reversed = in_force.clone();
        reversed.reverse();
        prop_assert_eq!(member_days(&window, &reversed), expect);
    }

    /// A member in force all period and one in force for the same number of days in pieces,
    /// with the same weight, are paid alike (up to the one tie-broken unit); and every
    /// statement is the split of its total over weight × member-days.
    #[test]
    fn statements_pro_rate_by_member_days(
        total in 0i64..1_000_000_000,
        w in 0i64..1_000,
        split_at in 1i64..30,
        others in prop::collection::vec((-5i64..1_000, 0i64..40, prop::option::of(0i64..40)), 0..8),
        tag in any::<u32>(),
    ) {
        const D: i64 = 86_400;
        const T0: i64 = 1_767_225_600; // 2026-01-01
        let period = Period {
            id: "2026-01".into(),
            start: Datetime::parse("2026-01-01T00:00:00Z").unwrap(),
            end: Datetime::parse("2026-01-31T00:00:00Z").unwrap(),
        };
        let whole = Share { member: did(0, tag), weight: w, in_force: vec![(T0 - D, None)] };
        // Left at a slot start and came back at the same instant, plus an overlap: 30 days.
        let pieces = Share {
            member: did(1, tag),
            weight: w,
            in_force: vec![
                (T0 + split_at * D, None),
                (T0, Some(T0 + split_at * D)),
                (T0 + D, Some(T0 + 2 * D)),
            ],
        };
        let mut shares = vec![whole, pieces];
        for (i, &(ow, from, until)) in others.iter().enumerate() {
            shares.push(Share {
                member: did(i + 2, tag),
                weight: ow,
                in_force: vec![(T0 + from * D, until.map(|u| T0 + u * D))],
            });
        }
        let money = Money { amount: total, currency: "EUR".into() };
        let window = Window::from_period(&period).unwrap();
        let Ok(st) = statement(None, period.clone(), money, &shares) else {
            // Only refused when nobody has both weight and days.
            let any = shares.iter().any(|s| s.weight > 0 && member_days(&window, &s.in_force) > 0);
            prop_assert!(total > 0 && !any);
            return Ok(());
        };
        let line = |d: &Did| st.lines.iter().find(|l| &l.member == d).cloned();
        let (a, b) = (line(&did(0, tag)).unwrap(), line(&did(1, tag)).unwrap());
        prop_assert_eq!(a.member_days, 30);
        prop_assert_eq!(b.member_days, 30);
        prop_assert!(a.amount.abs_diff(b.amount) <= 1);
        // The statement is the split over the effective weights of members with days.
        let effective: Vec<(Did, u64)> = shares
            .iter()
            .filter_map(|s| {
                let days = member_days(&window, &s.in_force);
                (days > 0).then(|| (s.member.clone(), u64::try_from(s.weight.max(0)).unwrap() * days))
            })
            .collect();
        let expect = split(u64::try_from(total).unwrap(), "2026-01", &effective).unwrap();
        let got: Vec<(Did, u64)> = st.lines.iter().map(|l| (l.member.clone(), l.amount)).collect();
        prop_assert_eq!(got, expect);
        prop_assert_eq!(st.lines.iter().map(|l| l.amount).sum::<u64>(), u64::try_from(total).unwrap());
        for l in &st.lines {
            prop_assert!(l.member_days > 0);
        }
        // The order of the shares does not matter.
        let mut rev = shares.clone();
        rev.reverse();
        let money = Money { amount: total, currency: "EUR".into() };
        prop_assert_eq!(statement(None, period, money, &rev).unwrap(), st);
    }
}
