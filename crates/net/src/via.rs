//! Dialling through relays on the path (`net.dial_via`): a transport wrapper that rewrites the
//! TCP address of every outgoing dial by a fixed table, and refuses dials the table does not
//! cover.
//!
//! **Test-only.** The devnet's chaos run puts a TCP proxy on each link between two nodes
//! (member A's node reaches member B's only through proxy A→B), so that it can partition,
//! heal and slow links without root. Production nodes leave the table empty, and then this
//! wrapper is not in the transport at all. Listening and inbound connections are untouched.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, Transport, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use serde::Deserialize;

/// One entry of `net.dial_via`: dials to `to` go to `via` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialVia {
    /// The address a dial names (a node's TCP listen address).
    pub to: SocketAddr,
    /// Where the dial goes instead (a proxy that forwards to `to`).
    pub via: SocketAddr,
}

/// The transport `T`, its dials rewritten by a table.
#[derive(Debug)]
pub(crate) struct Via<T> {
    inner: T,
    table: HashMap<SocketAddr, SocketAddr>,
}

impl<T> Via<T> {
    pub(crate) fn new(inner: T, entries: &[DialVia]) -> Self {
        Via {
            inner,
            table: entries.iter().map(|e| (e.to, e.via)).collect(),
        }
    }
}

/// `addr` with its leading `/ip4|ip6/…/tcp/…` replaced by the table's entry for it (the rest,
/// such as `/p2p/<peer>`, kept); `None` when the table has no entry.
pub(crate) fn rewrite(
    addr: &Multiaddr,
    table: &HashMap<SocketAddr, SocketAddr>,
) -> Option<Multiaddr> {
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    let via = table.get(&SocketAddr::new(ip, port))?;
    let head = match via.ip() {
        IpAddr::V4(v4) => Protocol::Ip4(v4),
        IpAddr::V6(v6) => Protocol::Ip6(v6),
    };
    let mut out = Multiaddr::empty()
        .with(head)
        .with(Protocol::Tcp(via.port()));
    for p in parts {
        out.push(p);
    }
    Some(out)
}

impl<T: Transport + Unpin> Transport for Via<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        match rewrite(&addr, &self.table) {
            Some(to) => {
                tracing::trace!(%addr, via = %to, "dial rewritten");
                self.inner.dial(to, opts)
            }
            // Off the table: refused, so that no link bypasses its proxy.
            None => Err(TransportError::MultiaddrNotSupported(addr)),
        }
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> HashMap<SocketAddr, SocketAddr> {
        [(
            "127.0.0.1:4001".parse().unwrap(),
            "127.0.0.1:5012".parse().unwrap(),
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn a_listed_address_is_rewritten_and_keeps_its_peer_id() {
        let peer = libp2p::PeerId::random();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        let out = rewrite(&addr, &table()).unwrap();
        assert_eq!(
            out.to_string(),
            format!("/ip4/127.0.0.1/tcp/5012/p2p/{peer}")
        );
    }

    #[test]
    fn other_addresses_are_not_rewritten() {
        for a in [
            "/ip4/127.0.0.1/tcp/4002",
            "/ip4/10.0.0.1/tcp/4001",
            "/ip6/::1/tcp/4001",
            "/memory/4001",
        ] {
            let addr: Multiaddr = a.parse().unwrap();
            assert_eq!(rewrite(&addr, &table()), None, "{a}");
        }
    }
}
