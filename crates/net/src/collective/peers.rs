//! Finding members' nodes and keeping in touch with them: which connected peers each driver
//! talks to, the addresses members share with each other, the address book, redialling lost
//! members and dialling back a member cut off before its join arrived.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guild_core::Cid;
use guild_gov::OpStore;
use guild_gov::driver::Event;
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, warn};

use super::wire::{Flag, MAX_ADDRS, Reply, Request};
use super::{Internal, Task, topic};
use crate::identity::did_from_peer_id;

impl<S: OpStore + Send + Sync + 'static> Task<S> {
    /// Remembers where connected members are, and dials the members known but not connected
    /// (after a partition or a restart of theirs), so that anti-entropy can run again.
    pub(super) async fn redial(&mut self) {
        let Ok(peers) = self.net.peers().await else {
            return;
        };
        let mut changed = false;
        for p in &peers {
            let addrs: Vec<Multiaddr> = p
                .addrs
                .iter()
                .filter(|a| !is_unspecified(a))
                .take(8)
                .cloned()
                .collect();
            if !addrs.is_empty() && self.known_addrs.get(&p.peer) != Some(&addrs) {
                self.known_addrs.insert(p.peer, addrs);
                changed = true;
            }
        }
        if changed {
            self.save_addrs();
        }
        let budget = self.dial_budget();
        if budget == 0 {
            return;
        }
        let mut lost: Vec<(PeerId, Vec<Multiaddr>)> = self
            .known_addrs
            .iter()
            .filter(|(peer, _)| {
                !self.connected.contains_key(peer) && !self.dialled.contains_key(peer)
            })
            .filter(|(peer, _)| did_from_peer_id(peer).is_some_and(|d| self.is_member_anywhere(&d)))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        lost.sort_by_key(|(p, _)| *p);
        shuffle(&mut lost, &mut self.rng);
        lost.truncate(budget);
        for (peer, addrs) in lost {
            self.dialled.insert(peer, Instant::now());
            for a in addrs {
                if self.net.dial(with_p2p(a, peer)).await.is_ok() {
                    debug!(peer = %peer, "redialling a member");
                    break;
                }
            }
        }
    }

    fn is_member_anywhere(&self, did: &str) -> bool {
        self.collectives
            .values()
            .any(|c| c.driver.log().state_ref().members.contains_key(did))
    }

    /// How many more members' nodes this node should dial now: up to
    /// [`EngineConfig::member_peers`](super::EngineConfig::member_peers) connections to
    /// members' nodes, counting dials of the last [`DIAL_GRACE`] not yet answered; unbounded
    /// on a steward's node, which pulls every member's repo from the member's own node.
    pub(super) fn dial_budget(&mut self) -> usize {
        let ids: Vec<Cid> = self.collectives.keys().copied().collect();
        if ids.iter().any(|id| self.replicates(id)) {
            return usize::MAX;
        }
        self.dialled
            .retain(|p, at| at.elapsed() < DIAL_GRACE && !self.connected.contains_key(p));
        let members = self
            .connected
            .values()
            .filter(|d| d.as_deref().is_some_and(|d| self.is_member_anywhere(d)))
            .count();
        self.config
            .member_peers
            .saturating_sub(members + self.dialled.len())
    }

    /// Tells each driver which connected peers are its collective's members.
    pub(super) async fn reconcile_peers(&mut self) {
        let now = self.now();
        let ids: Vec<Cid> = self.collectives.keys().copied().collect();
        for id in ids {
            self.sync_subscription(&id).await;
            let Some(c) = self.collectives.get_mut(&id) else {
                continue;
            };
            let state = c.driver.log().state_ref();
            let me_member =
                state.members.contains_key(self.me.as_str()) && !self.joining.contains(&id);
            let want: BTreeSet<PeerId> = if me_member {
                self.connected
                    .iter()
                    .filter(|(_, d)| {
                        d.as_ref()
                            .is_some_and(|d| state.members.contains_key(d.as_str()))
                    })
                    .map(|(p, _)| *p)
                    .collect()
            } else {
                BTreeSet::new()
            };
            let have: BTreeSet<PeerId> = c.driver.peers().copied().collect();
            let mut out = Vec::new();
            for p in have.difference(&want) {
                c.driver
                    .handle_into(Event::PeerDisconnected(*p), now, &mut out);
            }
            let new: Vec<PeerId> = want.difference(&have).copied().collect();
            for p in &new {
                c.driver
                    .handle_into(Event::PeerConnected(*p), now, &mut out);
            }
            self.perform(id, out).await;
            for p in &new {
                self.ask_addrs(id, *p);
            }
            self.heads_on_connect(id, new);
        }
    }

    /// Dials the peers cut off for subscribing early whose join has arrived since; forgets
    /// those still strangers after a minute.
    pub(super) fn dial_back(&mut self) {
        if self.cut_off.is_empty() {
            return;
        }
        let now_members: Vec<PeerId> = self
            .cut_off
            .keys()
            .filter(|p| {
                did_from_peer_id(p).is_some_and(|d| {
                    self.collectives
                        .values()
                        .any(|c| c.driver.log().state_ref().members.contains_key(d.as_str()))
                })
            })
            .copied()
            .collect();
        for peer in now_members {
            if let Some((addrs, _)) = self.cut_off.remove(&peer) {
                debug!(peer = %peer, "its join arrived; dialling it back");
                for a in addrs.into_iter().filter(|a| !is_unspecified(a)) {
                    let net = self.net.clone();
                    let a = with_p2p(a, peer);
                    tokio::spawn(async move {
                        let _ = net.dial(a).await;
                    });
                }
            }
        }
        self.cut_off
            .retain(|_, (_, at)| at.elapsed() < Duration::from_secs(60));
    }

    /// Rewrites the address book (when the engine has one).
    pub(super) fn save_addrs(&self) {
        let Some(path) = &self.config.address_book else {
            return;
        };
        let mut text = String::new();
        for (peer, addrs) in &self.known_addrs {
            for a in addrs {
                text.push_str(&with_p2p(a.clone(), *peer).to_string());
                text.push('\n');
            }
        }
        let tmp = path.with_extension("tmp");
        let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            warn!(path = %path.display(), error = %e, "could not save the address book");
        }
    }

    /// Asks a member peer where the other members' nodes it knows listen.
    pub(super) fn ask_addrs(&self, id: Cid, peer: PeerId) {
        let Ok(permit) = Arc::clone(&self.requests).try_acquire_owned() else {
            return;
        };
        let net = self.net.clone();
        let internal = self.internal.clone();
        let body = match Request::Addrs(Flag).encode() {
            Ok(body) => body,
            Err(e) => {
                warn!(error = %e, "could not encode an addresses request");
                return;
            }
        };
        tokio::spawn(async move {
            let _permit = permit;
            let answer = net.request(peer, &topic(&id), body).await;
            match answer
                .map_err(|e| e.to_string())
                .and_then(|a| Reply::read_addrs(&a).map_err(|e| e.to_string()))
            {
                Ok(items) => {
                    let addrs = items
                        .into_iter()
                        .filter_map(|b| Multiaddr::try_from(b).ok())
                        .filter_map(|a| p2p_of(&a).map(|p| (p, a)))
                        .take(MAX_ADDRS)
                        .collect();
                    let _ = internal.send(Internal::Addrs(addrs)).await;
                }
                Err(e) => debug!(peer = %peer, error = %e, "addresses request failed"),
            }
        });
    }

    /// Remembers the addresses a member's node told (up to [`ADDRESS_BOOK_PEERS`] peers), and
    /// dials those not connected while this node has fewer member connections than it keeps
    /// ([`Self::dial_budget`]), in random order so that the members' graph stays random.
    pub(super) fn learn_addrs(&mut self, addrs: Vec<(PeerId, Multiaddr)>) {
        let me = self.net.peer_id();
        let mut changed = false;
        let mut candidates: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for (peer, addr) in addrs {
            if peer == me {
                continue;
            }
            if !self.known_addrs.contains_key(&peer) && self.known_addrs.len() >= ADDRESS_BOOK_PEERS
            {
                continue;
            }
            let known = self.known_addrs.entry(peer).or_default();
            if !known.contains(&addr) && known.len() < 8 {
                known.push(addr.clone());
                changed = true;
            }
            if !self.connected.contains_key(&peer) && !self.dialled.contains_key(&peer) {
                match candidates.iter_mut().find(|(p, _)| *p == peer) {
                    Some((_, a)) => a.push(addr),
                    None => candidates.push((peer, vec![addr])),
                }
            }
        }
        if changed {
            self.save_addrs();
        }
        let budget = self.dial_budget();
        shuffle(&mut candidates, &mut self.rng);
        candidates.truncate(budget);
        for (peer, addrs) in candidates {
            self.dialled.insert(peer, Instant::now());
            let net = self.net.clone();
            tokio::spawn(async move {
                for a in addrs {
                    if net.dial(a).await.is_ok() {
                        break;
                    }
                }
            });
        }
    }
}

/// How long a dial counts towards the member connections a node keeps before its outcome
/// (a connection, or nothing) is known.
pub(super) const DIAL_GRACE: Duration = Duration::from_secs(10);

/// The most peers the address book holds: enough to find members again after a restart
/// without the book growing with a collective of tens of thousands.
pub(super) const ADDRESS_BOOK_PEERS: usize = 1024;

/// Fisher–Yates with the engine's generator.
fn shuffle<T>(items: &mut [T], rng: &mut guild_gov::driver::SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// The address book's entries; an unreadable file or line is skipped with a warning (the
/// addresses are relearnt from invites and members).
pub(super) fn load_address_book(path: Option<&std::path::Path>) -> HashMap<PeerId, Vec<Multiaddr>> {
    let mut out: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    let Some(path) = path else {
        return out;
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the address book");
            return out;
        }
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match line.trim().parse::<Multiaddr>() {
            Ok(a) => match p2p_of(&a) {
                Some(p) => {
                    let v = out.entry(p).or_default();
                    if v.len() < 8 && !v.contains(&a) {
                        v.push(a);
                    }
                }
                None => warn!(line, "address book: no /p2p/ peer id; skipped"),
            },
            Err(e) => warn!(line, error = %e, "address book: not a multiaddress; skipped"),
        }
    }
    out
}

/// The address with `/p2p/<peer>` at its end (added if absent).
pub(super) fn with_p2p(a: Multiaddr, peer: PeerId) -> Multiaddr {
    if p2p_of(&a).is_some() {
        a
    } else {
        a.with(libp2p::multiaddr::Protocol::P2p(peer))
    }
}

/// The peer id an address ends with.
pub(super) fn p2p_of(a: &Multiaddr) -> Option<PeerId> {
    a.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

pub(super) fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
