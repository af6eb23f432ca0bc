//! Issue 18's large-collective history, smaller, spread over the seeded simulator: eight
//! nodes receive each op of a generated history ([`guild_gov::history`]: founding, consent
//! churn, invites, leaves, concurrent groups, elections with hundreds of ballots sealed by a
//! majority of their tellers, and removals in runs of over 25 000 ops) at its author's node at
//! its `createdAt` (or, if that node lacks the op's parents, at a node that holds them, as a
//! real author's node always does), and gossip and anti-entropy carry it everywhere, through
//! loss, duplication, reordering and a partition that cuts the nodes in two halfway through
//! (meanwhile every op is written on side A; side B catches up after the heal). Every node
//! must end with the generator's log (same heads, same state), and every election the history
//! sealed must be certified, with the same result, on every node.
//!
//! The benches write histories with the same generator (50 000 members and 1 M ops for issue
//! 18, BENCHMARKS.md); `GUILD_SIM_HISTORY_MEMBERS` and `GUILD_SIM_HISTORY_OPS` make this test
//! run a larger one (e.g. `GUILD_SIM_HISTORY_MEMBERS=5000 GUILD_SIM_HISTORY_OPS=60000 cargo
//! test --release -p guild-gov --test sim_history -- --nocapture`).

use std::time::Instant;

use guild_gov::SignedOp;
use guild_gov::history::{History, HistoryConfig, person_key};
use guild_gov::sim::{Mesh, Sim, SimConfig};

const MS: i64 = 1_000;
const SEC: i64 = 1_000_000;
/// The simulated nodes; person `p`'s ops are written at node `p % NODES`.
const NODES: usize = 8;

fn env_num(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
        Err(_) => default,
    }
}

#[test]
fn a_large_collectives_history_converges_and_certifies_its_elections_on_eight_nodes() {
    let members = env_num("GUILD_SIM_HISTORY_MEMBERS", 300);
    let ops = env_num("GUILD_SIM_HISTORY_OPS", 6_000);
    // Steps a second apart (the benches' are 10 s): the same ops with other dates, and a
    // tenth of the simulated time (anti-entropy runs every 30-60 s on every node).
    let config = HistoryConfig {
        step_secs: 1,
        ..HistoryConfig::new(members)
    };
    let t0 = Instant::now();
    let history = History::with_ops(config, ops);
    println!("{}", history.report("for the simulation", t0.elapsed()));
    let expected = history.log();
    let sealed: Vec<_> = expected
        .state_ref()
        .elections
        .iter()
        .filter_map(|(id, e)| e.certified.clone().map(|c| (*id, c)))
        .collect();
    assert!(!sealed.is_empty(), "the history seals an election");

    // Node i writes with the key of person i (their own ops are submitted like the others).
    let keys = (0..NODES).map(person_key).collect();
    let mut sim = Sim::new(
        SimConfig {
            seed: 0x18_5eed,
            start_micros: config.start_micros,
            loss: 0.05,
            duplication: 0.02,
            latency_micros: (10 * MS, 80 * MS),
            jitter_micros: 20 * MS,
            mesh: Mesh::Ring { chords: 1 },
            ..SimConfig::default()
        },
        history.collective(),
        keys,
    );
    let ops: Vec<(i64, usize, SignedOp)> = history
        .ops()
        .iter()
        .map(|bytes| {
            let op = SignedOp::decode(bytes).expect("a generated op decodes with its signature");
            let person = history
                .person_of(op.author())
                .expect("every author is a person of the history");
            (op.created_at().to_unix_micros(), person, op)
        })
        .collect();
    let last = ops
        .iter()
        .map(|(at, ..)| *at)
        .max()
        .unwrap_or(config.start_micros);
    // Cut the ring in two halfway through, for a tenth of the history's time.
    let span = last - config.start_micros;
    let cut_at = config.start_micros + span / 2;
    let heal_at = cut_at + span / 10;
    let side_a = [0, 1, 2, 3];
    sim.partition(cut_at, &side_a);
    sim.heal(heal_at);

    // Each op is handed to its author's node at its `createdAt`, as its author wrote it there.
    // A real node signs on the heads it holds, so it holds an op's parents; the generator
    // signed on the whole history's heads. So an op goes to its author's node if that node
    // holds its parents, else to a node that does (during the cut, side A: nodes 0-3); an op
    // handed to a node without its parents would wait there, the only copy, and could be
    // dropped from the bounded pending buffer.
    let t1 = Instant::now();
    let holds =
        |sim: &Sim, node: usize, op: &SignedOp| op.prev().iter().all(|p| sim.log(node).contains(p));
    let dated: Vec<(i64, guild_core::Cid)> =
        ops.iter().map(|(at, _, op)| (*at, *op.id())).collect();
    // Ops handed to another node than their author's (which lacked their parents), and ops
    // no reachable node held every parent of (concurrent parents written at several nodes a
    // moment before, not yet all gossiped to one): those wait at their author's node for
    // parents that other nodes hold, and wants fetch them.
    let (mut moved, mut waited, mut lacking) = (0, 0, None);
    for (at, person, op) in ops {
        if lacking.is_none() && at >= heal_at {
            // A witness that the cut bit: just before the heal, the last node lacks ops
            // written on side A more than a minute before (gossip brings an op in well under
            // a second otherwise).
            sim.run_until(heal_at - 1);
            let missing = dated
                .iter()
                .filter(|(w, id)| {
                    *w >= cut_at && *w + 60 * SEC < heal_at && !sim.log(NODES - 1).contains(id)
                })
                .count();
            lacking = Some(missing);
        }
        sim.run_until(at);
        let author = if (cut_at..heal_at).contains(&at) {
            side_a[person % side_a.len()]
        } else {
            person % NODES
        };
        let node = if holds(&sim, author, &op) {
            author
        } else {
            let reachable: &[usize] = if (cut_at..heal_at).contains(&at) {
                &side_a
            } else {
                &[0, 1, 2, 3, 4, 5, 6, 7]
            };
            match reachable.iter().copied().find(|&n| holds(&sim, n, &op)) {
                Some(n) => {
                    moved += 1;
                    n
                }
                None => {
                    waited += 1;
                    author
                }
            }
        };
        let id = *op.id();
        let taken = sim.submit(node, op);
        assert_eq!(taken, Ok(id), "node {node} takes the op handed to it");
    }
    let lacking = lacking.unwrap_or(0);
    assert!(
        lacking > 0,
        "node {} lacks side A's ops before the heal",
        NODES - 1
    );
    let converged = sim.run_until_converged(last + 600 * SEC);
    println!(
        "just before the heal, node {} lacked {lacking} of the ops written during the cut over \
         a minute before; {moved} ops were handed to another node than their author's, which \
         lacked their parents; {waited} waited at their author's node for parents held elsewhere",
        NODES - 1
    );
    println!(
        "simulated {:.0} s of history in {:.1?}: converged at {:?} s after the last op; {:?}",
        (last - config.start_micros) as f64 / 1e6,
        t1.elapsed(),
        converged.map(|t| (t - last) / SEC),
        sim.stats()
    );
    assert!(
        converged.is_some(),
        "the eight nodes converge within 600 s of the last op"
    );

    let heads = expected.heads();
    let state = expected.state_ref();
    for i in 0..NODES {
        let log = sim.log(i);
        assert_eq!(log.len(), expected.len(), "node {i} holds every op");
        assert_eq!(log.pending_len(), 0, "node {i} waits for nothing");
        assert_eq!(log.heads(), heads, "node {i} has the generator's heads");
        let st = log.state_ref();
        assert_eq!(st, state, "node {i} folds the generator's state");
        for (id, result) in &sealed {
            let certified = st.elections[id]
                .certified
                .as_ref()
                .unwrap_or_else(|| panic!("node {i}: election {id} certified"));
            assert_eq!(certified, result, "node {i}: election {id}'s result");
        }
    }
    let ballots: Vec<usize> = sealed.iter().map(|(_, c)| c.ballots.len()).collect();
    assert!(
        ballots.iter().any(|&n| n >= 100),
        "an election counted 100 ballots or more: {ballots:?}"
    );
    println!(
        "{} elections certified on all {NODES} nodes, ballots counted {ballots:?}",
        sealed.len()
    );
}
