//! Links: one TCP proxy per ordered pair of nodes, which can be cut (a partition) or slowed
//! (latency) while the nodes run.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// One proxy's switches and open connections.
#[derive(Debug, Default)]
pub(super) struct LinkState {
    pub(super) blocked: AtomicBool,
    pub(super) latency_ms: AtomicU64,
    pub(super) closed: AtomicBool,
    pub(super) next: AtomicU64,
    pub(super) conns: Mutex<HashMap<u64, TcpStream>>,
}

impl LinkState {
    pub(super) fn cut(&self) {
        if let Ok(mut conns) = self.conns.lock() {
            for (_, c) in conns.drain() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// The proxy on which node `from` reaches node `to`.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) port: u16,
    pub(super) state: Arc<LinkState>,
}

impl Link {
    pub(super) fn start(from: usize, to: usize, target: SocketAddr) -> Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a link proxy")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(LinkState::default());
        let s = state.clone();
        std::thread::Builder::new()
            .name(format!("link-{from}-{to}"))
            .spawn(move || accept_loop(&listener, target, &s))
            .context("cannot start a link proxy")?;
        Ok(Link {
            from,
            to,
            port,
            state,
        })
    }

    pub(super) fn set_blocked(&self, blocked: bool) {
        self.state.blocked.store(blocked, Ordering::SeqCst);
        if blocked {
            self.state.cut();
        }
    }

    pub(super) fn close(&self) {
        self.state.closed.store(true, Ordering::SeqCst);
        self.state.cut();
        // Wakes the accept loop so that it sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

pub(super) fn accept_loop(listener: &TcpListener, target: SocketAddr, state: &Arc<LinkState>) {
    for inbound in listener.incoming() {
        if state.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = inbound else { continue };
        if state.blocked.load(Ordering::SeqCst) {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        };
        if let Err(e) = connect_pumps(inbound, outbound, state) {
            tracing_free_note(&format!("link proxy: {e}"));
        }
    }
}

/// Registers a proxied connection (so that a cut closes it) and pumps both directions.
pub(super) fn connect_pumps(
    a: TcpStream,
    b: TcpStream,
    state: &Arc<LinkState>,
) -> std::io::Result<()> {
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    let (a_read, b_read) = (a.try_clone()?, b.try_clone()?);
    let id = state.next.fetch_add(2, Ordering::SeqCst);
    if let Ok(mut conns) = state.conns.lock() {
        conns.insert(id, a.try_clone()?);
        conns.insert(id + 1, b.try_clone()?);
    }
    // A cut between the check and the registration would leave this one open.
    if state.blocked.load(Ordering::SeqCst) {
        state.cut();
    }
    for (from, to) in [(a_read, b), (b_read, a)] {
        let s = state.clone();
        std::thread::Builder::new()
            .name("link-pump".into())
            .spawn(move || pump(from, to, &s, id))?;
    }
    Ok(())
}

/// Copies `from` to `to`, each chunk held back by the link's latency, until either end
/// closes; then closes both.
pub(super) fn pump(mut from: TcpStream, mut to: TcpStream, state: &LinkState, id: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let latency = state.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            std::thread::sleep(Duration::from_millis(latency));
        }
        if state.blocked.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    if let Ok(mut conns) = state.conns.lock() {
        conns.remove(&id);
        conns.remove(&(id + 1));
    }
}

/// The devnet's harness has no tracing subscriber: rare proxy troubles go to stderr.
pub(super) fn tracing_free_note(what: &str) {
    eprintln!("  (chaos) {what}");
}
