//! A statement computed here enters a collective's governance log: guild-gov's rule (lines
//! pay current or former members and sum to the total) accepts it.

use guild_core::Keypair;
use guild_core::syntax::{Datetime, Did};
use guild_gov::body::{LeaveBody, Money, OpBody, Period};
use guild_gov::make;
use guild_gov::{Inserted, Log, Op, Reason};
use guild_payout::{Share, statement};

const SEC: i64 = 1_000_000;
const D: i64 = 86_400;
/// 2026-01-01T00:00:00Z, in seconds.
const T0: i64 = 1_767_225_600;

fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32])
}

fn at(secs: i64) -> Datetime {
    Datetime::from_unix_micros(secs * SEC)
}

fn did(k: &Keypair) -> Did {
    Did::parse(&k.did()).unwrap()
}

#[test]
fn a_computed_statement_is_accepted() {
    let keys: Vec<Keypair> = (1..=4).map(key).collect();
    // Founded and joined a few days before the period.
    let (id, ops) = make::invited_collective("payout test", &keys, (T0 - 10 * D) * SEC).unwrap();
    let now = (T0 + 60 * D) * SEC;
    let mut log = Log::new(id);
    for bytes in &ops {
        assert_eq!(log.insert_bytes(bytes, now), Inserted::Applied);
    }
    // Member 4 leaves on day 12 of January.
    let leave = OpBody::Leave(LeaveBody { reason: None });
    let left_at = T0 + 12 * D + 3600;
    let op = Op::write(&leave, Some(&id), &keys[3], &log.heads(), &at(left_at)).unwrap();
    assert_eq!(log.insert(op, now), Inserted::Applied);
    assert!(log.state().departed.contains_key(&did(&keys[3])));

    let period = Period {
        id: "2026-01".into(),
        start: Datetime::parse("2026-01-01T00:00:00Z").unwrap(),
        end: Datetime::parse("2026-02-01T00:00:00Z").unwrap(),
    };
    let total = Money {
        amount: 100_001,
        currency: "EUR".into(),
    };
    let joined = T0 - 10 * D;
    let mut shares = vec![
        Share {
            member: did(&keys[0]),
            weight: 3,
            in_force: vec![(joined, None)],
        },
        Share {
            member: did(&keys[1]),
            weight: 1,
            in_force: vec![(T0 + 5 * D + 1, None)],
        },
        Share {
            member: did(&keys[2]),
            weight: -2,
            in_force: vec![(joined, None)],
        },
        Share {
            member: did(&keys[3]),
            weight: 2,
            in_force: vec![(joined, Some(left_at))],
        },
        // A stranger with no member-day in the period gets no line, so it does no harm.
        Share {
            member: did(&key(9)),
            weight: 5,
            in_force: vec![(T0 - 90 * D, Some(T0 - 60 * D))],
        },
    ];
    let body = statement(None, period.clone(), total.clone(), &shares).unwrap();
    let days: Vec<u64> = body.lines.iter().map(|l| l.member_days).collect();
    assert_eq!(body.lines.len(), 4);
    assert_eq!(days.iter().sum::<u64>(), 31 + 25 + 31 + 13);
    assert_eq!(body.lines.iter().map(|l| l.amount).sum::<u64>(), 100_001);

    let steward = &keys[0];
    let write = |log: &Log, body: guild_gov::body::StatementBody| {
        Op::write(
            &OpBody::PayoutStatement(Box::new(body)),
            Some(&id),
            steward,
            &log.heads(),
            &at(T0 + 40 * D),
        )
        .unwrap()
    };
    // A stranger in force during the period would get a line, which the rule refuses.
    shares[4].in_force = vec![(T0, None)];
    let with_stranger = statement(None, period, total, &shares).unwrap();
    assert_eq!(
        log.insert(write(&log, with_stranger), now),
        Inserted::Rejected(Reason::BadPayout("a line pays a stranger"))
    );

    let op = write(&log, body);
    let op_id = *op.id();
    assert_eq!(log.insert(op, now), Inserted::Applied);
    let state = log.state();
    let payout = &state.payouts[&op_id];
    assert_eq!((payout.total, payout.lines), (100_001, 4));
    assert_eq!(payout.period, "2026-01");
}
