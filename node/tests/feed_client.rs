//! The builder's feed client (`guild_node::feed_client`, `guild feed subscribe`) against a
//! real steward API on loopback (the feed hub over a memory store, `coop.guild.bundle.get`
//! serving a real sealed bundle, `fixtures/bundle/sealed.car`), when the bytes it gets are not
//! the bundle: a corrupt partial download left on disk, and a node that serves tampered bytes.
//! The client must never keep a bundle that does not verify.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use guild_api::{FeedConfig, FeedHub, Found, Limits};
use guild_core::Keypair;
use guild_core::syntax::{Datetime, Did};
use guild_feed::{BundleEvent, Event};
use guild_gov::body::CidRef;
use guild_node::feed_client::{FollowOptions, Handled, follow, read_cursor};
use guild_store::MemoryStore;

#[path = "../../crates/api/tests/common/feed_state.rs"]
mod feed_state;
#[path = "../../crates/api/tests/common/sealed.rs"]
mod sealed;
use feed_state::{feed_state, serve_http};

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bundle/sealed.car"))
        .unwrap()
}

struct Steward {
    rt: tokio::runtime::Runtime,
    url: String,
    hub: Arc<FeedHub<MemoryStore>>,
    _dir: tempfile::TempDir,
}

/// A steward's API serving `served` as the sealed bundle `report.manifest`, with its
/// `#bundle` event published for the builder `builder`.
fn steward(report: &guild_bundle::Report, served: &[u8], builder: &Did) -> Steward {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sealed")).unwrap();
    std::fs::write(
        dir.path().join(format!("sealed/{}.car", report.manifest)),
        served,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = sealed::Sealed {
        collective: report.collective,
        bundles: vec![(report.manifest, report.agreement)],
    };
    let limits = Limits::default();
    let (state, hub) = feed_state(
        Arc::new(MemoryStore::new()),
        FeedConfig::default(),
        Some((dir.path().into(), Arc::new(engine))),
        &limits,
    );
    let url = rt.block_on(serve_http(state, limits));
    hub.publish(Found {
        events: vec![(
            format!("bundle:{}", report.manifest),
            Event::Bundle(BundleEvent {
                collective: Some(CidRef(report.collective)),
                seq: 0,
                time: Datetime::from_unix_micros(0),
                agreement: CidRef(report.agreement),
                bundle: CidRef(report.manifest),
                size: served.len() as u64,
                records: report.records,
            }),
        )],
        builders: BTreeMap::from([(report.agreement, builder.clone())]),
    })
    .unwrap();
    Steward {
        rt,
        url,
        hub,
        _dir: dir,
    }
}

/// Runs the client once (until caught up); what it reported.
fn follow_once(s: &Steward, key: &Keypair, out: &Path) -> Vec<Handled> {
    let opts = FollowOptions {
        node: s.url.clone(),
        key: key.clone(),
        out: out.to_owned(),
        once: true,
        progress: false,
        live: false,
        ca: None,
    };
    let mut got = Vec::new();
    s.rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            follow(&opts, |h| got.push(h.clone())),
        )
        .await
        .expect("the client catches up within 120 s")
        .unwrap();
    });
    got
}

/// [`downloads`], once the delivery log holds at least `n` (polled for up to 30 s).
fn downloads_once(s: &Steward, n: usize) -> Vec<u16> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = downloads(s);
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The downloads the steward's delivery log holds, by status.
fn downloads(s: &Steward) -> Vec<u16> {
    let page = s
        .hub
        .deliveries()
        .list(&Default::default(), None, 100, usize::MAX)
        .unwrap();
    page.deliveries
        .iter()
        .filter_map(|d| match d.what {
            guild_service::Delivered::Download { status, .. } => Some(status),
            _ => None,
        })
        .collect()
}

fn part(out: &Path, cid: &str) -> PathBuf {
    out.join("downloads").join(format!("{cid}.car.part"))
}

#[test]
fn a_corrupt_partial_download_is_discarded_and_the_bundle_downloaded_again() {
    let car = fixture();
    let report = guild_bundle::verify_bundle(&car[..]).unwrap();
    let key = Keypair::from_secret_bytes(&[21; 32]);
    let did = Did::parse(&key.did()).unwrap();
    let s = steward(&report, &car, &did);
    let out = tempfile::tempdir().unwrap();
    let cid = report.manifest.to_string();
    // Half the file "downloaded" before, with one byte wrong.
    std::fs::create_dir_all(out.path().join("downloads")).unwrap();
    let mut half = car[..car.len() / 2].to_vec();
    let mid = half.len() / 2;
    half[mid] ^= 0x01;
    std::fs::write(part(out.path(), &cid), &half).unwrap();

    let got = follow_once(&s, &key, out.path());
    // The resumed whole failed verification; the partial file was dropped, the bundle
    // downloaded again from its start, verified and kept.
    let bundle = got
        .iter()
        .find_map(|h| match h {
            Handled::Bundle { cid: c, dir, .. } => Some((c.clone(), dir.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no bundle handled: {got:?}"));
    assert_eq!(bundle.0, cid);
    assert_eq!(std::fs::read(bundle.1.join("bundle.car")).unwrap(), car);
    assert!(!part(out.path(), &cid).exists());
    assert_eq!(read_cursor(out.path()).unwrap(), Some(1));
    // The node saw a range request (the resume), then a whole download.
    assert_eq!(downloads_once(&s, 2), [206, 200]);
}

#[test]
fn tampered_bytes_from_the_node_are_rejected_and_never_kept() {
    let car = fixture();
    let report = guild_bundle::verify_bundle(&car[..]).unwrap();
    let key = Keypair::from_secret_bytes(&[21; 32]);
    let did = Did::parse(&key.did()).unwrap();
    let cid = report.manifest.to_string();
    // One flipped bit, late in the file (in a record block), and the bytes of the end swapped
    // for a wrong tail: each served as the bundle.
    let mut flipped = car.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x40;
    let mut truncated_tail = car.clone();
    truncated_tail.truncate(car.len() - 100);
    truncated_tail.extend_from_slice(&[0u8; 100]);
    for (name, served, seed_part) in [
        ("a flipped bit", flipped.clone(), false),
        ("a wrong tail", truncated_tail, false),
        // A good partial file from before; the rest, as the node now serves it, is tampered:
        // discarded, downloaded again whole, still tampered, rejected.
        ("a tampered rest after a good partial file", flipped, true),
    ] {
        let s = steward(&report, &served, &did);
        let out = tempfile::tempdir().unwrap();
        if seed_part {
            std::fs::create_dir_all(out.path().join("downloads")).unwrap();
            std::fs::write(part(out.path(), &cid), &car[..car.len() / 2]).unwrap();
        }
        let got = follow_once(&s, &key, out.path());
        let why = got
            .iter()
            .find_map(|h| match h {
                Handled::Rejected { cid: c, why, seq } => {
                    assert_eq!((c.as_str(), *seq), (cid.as_str(), 1));
                    Some(why.clone())
                }
                Handled::Bundle { .. } => panic!("{name}: a tampered bundle was kept: {got:?}"),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: not rejected: {got:?}"));
        assert!(!why.is_empty(), "{name}");
        // Nothing kept: no bundle directory, no partial file; the rejection is on record and
        // the cursor moved past it (the event is handled: it is not retried forever).
        assert!(!out.path().join("bundles").join(&cid).exists(), "{name}");
        assert!(!part(out.path(), &cid).exists(), "{name}");
        let events = std::fs::read_to_string(out.path().join("events.jsonl")).unwrap();
        assert!(
            events.contains(&format!("\"rejected\":\"{cid}\"")),
            "{name}: {events}"
        );
        assert_eq!(read_cursor(out.path()).unwrap(), Some(1), "{name}");
        if seed_part {
            assert_eq!(downloads_once(&s, 2), [206, 200], "{name}");
        }
    }
}
