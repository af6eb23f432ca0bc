//! Replays every saved fuzz input under `tests/regressions/<target>/` through the same checks
//! as the fuzz target of that name (`fuzz/fuzz_targets/<target>.rs`), with the replay shared
//! by every crate (`fuzz/replay.rs`). Files named `README.md`
//! are skipped; an empty folder passes.

use guild_repo::mst::{decode_node, encode_node};
use guild_repo::{car, prove, read_car, verify_car, verify_commit, verify_proof};

#[path = "../../../fuzz/replay.rs"]
mod replay;

fn replay(target: &str, check: fn(&[u8]) -> Result<(), String>) {
    replay::replay(env!("CARGO_MANIFEST_DIR"), target, check);
}

/// The checks of `fuzz/fuzz_targets/car.rs`.
fn car_target(input: &[u8]) -> Result<(), String> {
    let Ok(parsed) = read_car(input) else {
        return Ok(());
    };
    if parsed.roots.is_empty() {
        return Err("accepted a CAR with no roots".into());
    }
    for (cid, bytes) in parsed.blocks.iter() {
        guild_core::cids::verify_block(cid, bytes).map_err(|e| e.to_string())?;
    }
    let Ok(summary) = verify_car(&parsed) else {
        return Ok(());
    };
    if summary.commit != parsed.roots[0] {
        return Err("summary names another commit".into());
    }
    if let Some((path, cid)) = summary.records.first() {
        let blocks = prove(&parsed.blocks, summary.commit, path).map_err(|e| e.to_string())?;
        let proof = car::car_bytes(
            &[summary.commit],
            blocks.iter().map(|(c, b)| (c, b.as_ref())),
        );
        let proof = read_car(&proof).map_err(|e| e.to_string())?;
        let proven = verify_proof(&proof, path).map_err(|e| e.to_string())?;
        if proven.cid != *cid {
            return Err("proof proves another CID".into());
        }
    }
    Ok(())
}

/// The checks of `fuzz/fuzz_targets/mst_node.rs`.
fn mst_node_target(input: &[u8]) -> Result<(), String> {
    let cid = guild_core::cids::cid_for_cbor(b"mst-node-fuzz");
    let Ok(node) = decode_node(&cid, input) else {
        return Ok(());
    };
    let mut out = Vec::new();
    encode_node(
        node.left.as_ref(),
        node.entries
            .iter()
            .map(|(k, v, t)| (k.as_slice(), v, t.as_ref())),
        &mut out,
    );
    if out != input {
        return Err(format!(
            "decode_node accepted a non-canonical node {node:?}: it re-encodes to {out:02x?}"
        ));
    }
    if node.entries.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("keys out of order".into());
    }
    Ok(())
}

/// The checks of `fuzz/fuzz_targets/commit.rs`.
fn commit_target(input: &[u8]) -> Result<(), String> {
    let cid = guild_core::cids::cid_for_cbor(input);
    if let Ok(c) = verify_commit(&cid, input) {
        guild_core::PublicKey::from_did(&c.did).map_err(|e| e.to_string())?;
        guild_core::syntax::Tid::parse(c.rev.as_str()).map_err(|e| e.to_string())?;
        if c.sig.len() != 64 {
            return Err("signature is not 64 bytes".into());
        }
    }
    Ok(())
}

#[test]
fn car_regressions() {
    replay("car", car_target);
}

#[test]
fn mst_node_regressions() {
    replay("mst_node", mst_node_target);
}

#[test]
fn commit_regressions() {
    replay("commit", commit_target);
}
