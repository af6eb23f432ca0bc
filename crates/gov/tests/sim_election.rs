//! An election held across a partition (protocol.md §4, "Elections without a clock"), in the
//! seeded simulator: the side holding a majority of the tellers certifies a result; the other
//! side cannot, and keeps its incumbents; after the heal every node has the same one result.

use guild_core::syntax::{Datetime, Did};
use guild_core::{Cid, Keypair};
use guild_gov::body::Choice;
use guild_gov::make::{self, CharterParams};
use guild_gov::sim::{Mesh, NodeId, Sim, SimConfig};
use guild_gov::{ElectionKind, Op, Outcome, Role};

const MS: i64 = 1_000;
const SEC: i64 = 1_000_000;

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 101).to_le_bytes());
            Keypair::from_secret_bytes(&seed)
        })
        .collect()
}

fn settle(sim: &mut Sim) {
    let deadline = sim.now() + 120 * SEC;
    assert!(
        sim.run_until_converged(deadline).is_some(),
        "no convergence"
    );
}

fn wait_for(sim: &mut Sim, node: NodeId, id: &Cid) {
    let deadline = sim.now() + 120 * SEC;
    while sim.log(node).get(id).is_none() {
        assert!(sim.now() < deadline, "node {node} never received {id}");
        sim.run_until(sim.now() + 50 * MS);
    }
}

fn secret(n: usize) -> Vec<u8> {
    let mut v = vec![0x5a; 32];
    v[..8].copy_from_slice(&(n as u64).to_le_bytes());
    v
}

/// Node `at` writes a ballot in `election` approving `choices` (DIDs of nodes).
fn vote(sim: &mut Sim, at: NodeId, election: &Cid, choices: &[NodeId]) -> Cid {
    let me = sim.key(at).did();
    let choices: Vec<Choice> = choices
        .iter()
        .map(|&c| Choice::parse(&sim.key(c).did()))
        .collect();
    let f = make::ballot(&sim.state(at), election, &me, &choices);
    sim.create(at, f).unwrap()
}

fn dids(s: &[String]) -> Vec<Did> {
    s.iter().map(|d| Did::parse(d).unwrap()).collect()
}

fn seal(sim: &mut Sim, at: NodeId, election: &Cid) -> Cid {
    let f = make::seal(&sim.state(at), election).unwrap();
    sim.create(at, f).unwrap()
}

#[test]
fn an_election_across_a_partition_yields_one_result_after_healing() {
    let n = 12;
    let keys = keys(n);
    let config = SimConfig {
        seed: 0xe1ec_7100,
        loss: 0.05,
        latency_micros: (5 * MS, 60 * MS),
        jitter_micros: 10 * MS,
        mesh: Mesh::Ring { chords: 2 },
        ..SimConfig::default()
    };
    let start = config.start_micros;
    let charter = Op::write(
        &CharterParams::new("Across").body(),
        None,
        &keys[0],
        &[],
        &Datetime::from_unix_micros(start),
    )
    .unwrap();
    let collective = *charter.id();
    let mut sim = Sim::new(config, collective, keys.clone());
    sim.submit(0, charter).unwrap();
    for m in 1..n {
        let invite = sim.create(0, make::invite(&secret(m), None, None)).unwrap();
        wait_for(&mut sim, m, &invite);
        sim.create(m, make::join(Some((&invite, &secret(m)))))
            .unwrap();
        settle(&mut sim);
    }

    // A first election, told by the founder alone, seats nodes 0, 1 and 2 as stewards.
    let now = Datetime::from_unix_micros(sim.now() + 5 * SEC);
    let candidates: Vec<String> = (0..3).map(|i| keys[i].did()).collect();
    let f = make::election_open(
        &sim.state(0),
        ElectionKind::Stewards,
        Some(3),
        &dids(&candidates),
        None,
        &now,
    )
    .unwrap();
    let first = sim.create(0, f).unwrap();
    settle(&mut sim);
    for v in 0..6 {
        vote(&mut sim, v, &first, &[0, 1, 2]);
        settle(&mut sim);
    }
    sim.run_until(sim.now() + 10 * SEC);
    seal(&mut sim, 0, &first);
    settle(&mut sim);
    let stewards: Vec<String> = sim.state(5).stewards().map(str::to_owned).collect();
    let mut expected = candidates.clone();
    expected.sort();
    assert_eq!(stewards, expected);

    // The second election: one seat, candidates 3 and 4, told by stewards 0, 1, 2.
    let closes = sim.now() + 20 * SEC;
    let f = make::election_open(
        &sim.state(5),
        ElectionKind::Stewards,
        Some(1),
        &dids(&[keys[3].did(), keys[4].did()]),
        None,
        &Datetime::from_unix_micros(closes),
    )
    .unwrap();
    let second = sim.create(5, f).unwrap();
    settle(&mut sim);
    assert_eq!(sim.state(7).elections[&second].tellers.len(), 3);

    // Partition: side A holds tellers 0 and 1, side B holds teller 2.
    let side_a: Vec<NodeId> = vec![0, 1, 3, 4, 5, 6];
    let side_b: Vec<NodeId> = vec![2, 7, 8, 9, 10, 11];
    let t0 = sim.now() + SEC;
    sim.partition(t0, &side_a);
    sim.run_until(t0 + SEC);
    for &v in &[0, 1, 3, 4] {
        vote(&mut sim, v, &second, &[3]);
    }
    for &v in &[2, 7, 8, 9, 10, 11] {
        vote(&mut sim, v, &second, &[4]);
    }
    sim.run_until(closes + SEC);
    // Each side's tellers seal what they saw.
    let a0 = seal(&mut sim, 0, &second);
    sim.run_until(sim.now() + 2 * SEC);
    let a1 = seal(&mut sim, 1, &second);
    let b2 = seal(&mut sim, 2, &second);
    sim.run_until(sim.now() + 5 * SEC);

    // Side A certified (2 of 3 tellers); side B did not, and keeps its incumbents.
    for &i in &side_a {
        let st = sim.state(i);
        let cert = st.elections[&second]
            .certified
            .as_ref()
            .expect("side A certified");
        assert_eq!(
            cert.tally
                .elected
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>(),
            vec![keys[3].did()]
        );
        assert_eq!(st.role(&keys[3].did()), Some(Role::Steward));
    }
    for &i in &side_b {
        let st = sim.state(i);
        assert!(st.elections[&second].certified.is_none(), "node {i}");
        assert_eq!(st.stewards().count(), 3, "node {i}: incumbents stay");
    }

    // Heal: one result everywhere, the one side A's tellers certified.
    let heal = sim.now() + SEC;
    sim.heal(heal);
    sim.run_until_converged(heal + 300 * SEC)
        .expect("converges after the heal");
    assert!(sim.heads_equal());
    assert!(sim.states_equal());
    let st = sim.state(9);
    let e = &st.elections[&second];
    let cert = e.certified.as_ref().unwrap();
    assert_eq!(cert.tally.outcome, Outcome::Adopted);
    assert_eq!(
        cert.tally
            .elected
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>(),
        vec![keys[3].did()]
    );
    let mut seals = cert.seals.clone();
    seals.sort();
    let mut want = vec![a0, a1];
    want.sort();
    assert_eq!(seals, want);
    // Teller 2's seal is in every log, counted for nothing: its ballots differ.
    assert!(sim.log(9).get(&b2).is_some());
    assert_eq!(
        st.stewards().collect::<Vec<_>>(),
        vec![keys[3].did().as_str()]
    );
    assert_eq!(st.role(&keys[4].did()), Some(Role::Member));
    // The same result at every node.
    for i in 0..n {
        assert_eq!(
            sim.state(i).elections[&second].certified.as_ref(),
            Some(cert),
            "node {i}"
        );
    }
}
