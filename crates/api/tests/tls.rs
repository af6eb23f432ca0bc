//! The public address over TLS (`serve_tls`), on real sockets with a self-signed certificate
//! made here (rcgen): a builder logs in over https and follows its feed over wss; a client
//! that does not trust the certificate, a plain-HTTP client and a client that never
//! completes its handshake each lose only their own connection; a certificate and key that
//! cannot be served are refused with the file and the problem named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use guild_api::{FeedConfig, FeedHub, Found, Limits, ServerTls, TlsError, public_router};
use guild_core::Keypair;
use guild_core::syntax::{Datetime, Did};
use guild_feed::{BundleEvent, Event, Frame};
use guild_gov::body::CidRef;
use guild_store::MemoryStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

#[path = "common/feed_login.rs"]
mod feed_login;
#[path = "common/feed_state.rs"]
mod feed_state;
use feed_login::login_with as login;
use feed_state::feed_state;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct Cert {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
}

fn self_signed() -> Cert {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    Cert {
        _dir: dir,
        cert: cert_path,
        key: key_path,
        cert_pem: cert.pem(),
    }
}

fn cid(s: &str) -> cid::Cid {
    guild_core::cids::cid_for_raw(s.as_bytes())
}

fn builder() -> (Keypair, Did) {
    let k = Keypair::from_secret_bytes(&[1; 32]);
    let did = Did::parse(&k.did()).unwrap();
    (k, did)
}

fn bundle(n: u64) -> (String, Event) {
    (
        format!("bundle:A{n}"),
        Event::Bundle(BundleEvent {
            collective: None,
            seq: 0,
            time: Datetime::from_unix_micros(0),
            agreement: CidRef(cid("A")),
            bundle: CidRef(cid(&format!("A{n}"))),
            size: 1000 + n,
            records: n,
        }),
    )
}

/// The public router over TLS on a free port; its `https://` URL and feed hub.
async fn start_tls(tls: ServerTls, limits: Limits) -> (String, Arc<FeedHub<MemoryStore>>) {
    let (state, hub) = feed_state(
        Arc::new(MemoryStore::new()),
        FeedConfig::default(),
        None,
        &limits,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        guild_api::serve_tls(
            listener,
            public_router(state),
            &limits,
            tls,
            std::future::pending(),
        )
        .await
    });
    (url, hub)
}

/// A rustls client configuration trusting `cert_pem` only.
fn client_config(cert_pem: &str) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTP client trusting `cert_pem` (and nothing else).
fn trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(cert_pem))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// An error with its sources, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

async fn health(http: &reqwest::Client, url: &str) -> Result<reqwest::StatusCode, String> {
    http.get(format!("{url}/xrpc/_health"))
        .send()
        .await
        .map(|r| r.status())
        .map_err(|e| chain(&e))
}

/// The next frame (skipping pings), within a generous deadline.
async fn next<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Frame
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame within 30 s")
            .expect("the feed is open")
            .expect("a message");
        if let Message::Binary(b) = m {
            return Frame::from_cbor(&b).expect("a valid frame");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_logs_in_over_https_and_follows_its_feed_over_wss() {
    let cert = self_signed();
    let tls = ServerTls::from_pem_files(&cert.cert, &cert.key).unwrap();
    let (url, hub) = start_tls(tls, Limits::default()).await;
    let (key, did) = builder();
    let publish = |events| {
        hub.publish(Found {
            events,
            builders: BTreeMap::from([(cid("A"), did.clone())]),
        })
        .unwrap()
    };
    publish(vec![bundle(1), bundle(2)]);
    let http = trusting(&cert.cert_pem);
    let token = login(&http, &url, &key).await;
    let wss = url.replacen("https://", "wss://", 1);
    let mut req = format!("{wss}/xrpc/coop.guild.feed.subscribe?cursor=0")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let connector = tokio_tungstenite::Connector::Rustls(Arc::new(client_config(&cert.cert_pem)));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(connector))
            .await
            .unwrap();
    assert!(matches!(
        ws.get_ref(),
        tokio_tungstenite::MaybeTlsStream::Rustls(_)
    ));
    // The replay, then a live event, all through TLS.
    for want in [1, 2] {
        let Frame::Message(e) = next(&mut ws).await else {
            panic!("an error frame")
        };
        assert_eq!(e.seq(), Some(want));
    }
    let Frame::Message(Event::Info(i)) = next(&mut ws).await else {
        panic!("no ReplayComplete")
    };
    assert_eq!(i.name, "ReplayComplete");
    publish(vec![bundle(3)]);
    let Frame::Message(e) = next(&mut ws).await else {
        panic!("an error frame")
    };
    assert_eq!(e.seq(), Some(3));
    // The public address serves builders' methods only, TLS or not.
    let admin = http
        .get(format!("{url}/xrpc/com.atproto.repo.listRecords"))
        .send()
        .await
        .unwrap();
    assert!(!admin.status().is_success(), "{}", admin.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusting_and_plain_http_clients_fail_and_the_server_keeps_serving() {
    let cert = self_signed();
    let tls = ServerTls::from_pem_files(&cert.cert, &cert.key).unwrap();
    let (url, _hub) = start_tls(tls, Limits::default()).await;
    let trusted = trusting(&cert.cert_pem);
    assert_eq!(health(&trusted, &url).await, Ok(reqwest::StatusCode::OK));

    // A client with the usual roots (webpki) does not trust a self-signed certificate.
    let stock = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let e = health(&stock, &url).await.unwrap_err();
    assert!(
        e.contains("invalid peer certificate") && e.contains("UnknownIssuer"),
        "{e}"
    );
    // Nor does a WebSocket client with its default (webpki) roots.
    let wss = url.replacen("https://", "wss://", 1);
    let e = tokio_tungstenite::connect_async(format!("{wss}/xrpc/coop.guild.feed.subscribe"))
        .await
        .unwrap_err();
    assert!(
        chain(&e).contains("invalid peer certificate"),
        "{}",
        chain(&e)
    );

    // Plain HTTP to the TLS port: no answer but a closed connection.
    let plain = url.replacen("https://", "http://", 1);
    let got = health(&stock, &plain).await;
    assert!(got.is_err(), "plain HTTP was answered: {got:?}");
    // Plain WebSocket too.
    let ws = url.replacen("https://", "ws://", 1);
    assert!(
        tokio_tungstenite::connect_async(format!("{ws}/xrpc/coop.guild.feed.subscribe"))
            .await
            .is_err()
    );
    // Garbage bytes where a ClientHello should be.
    let addr = url.trim_start_matches("https://").to_owned();
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0xff; 512]).await.unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a TLS alert, then the close
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the garbage connection stayed open");

    // None of that stopped the server.
    assert_eq!(health(&trusted, &url).await, Ok(reqwest::StatusCode::OK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_dropped_after_its_timeout_and_frees_its_slot() {
    let cert = self_signed();
    let tls = ServerTls::from_pem_files(&cert.cert, &cert.key)
        .unwrap()
        .with_handshake_timeout(Duration::from_millis(500));
    // One connection at a time: a stalled handshake holds the only slot until it times out.
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let (url, _hub) = start_tls(tls, limits).await;
    let addr = url.trim_start_matches("https://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    // Waits in the backlog behind the stalled one, then is served.
    let trusted = trusting(&cert.cert_pem);
    assert_eq!(health(&trusted, &url).await, Ok(reqwest::StatusCode::OK));
    // The stalled connection was closed by the server.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf))
        .await
        .expect("the stalled connection is closed within 30 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "served before the stalled handshake timed out: {:?}",
        started.elapsed()
    );
}

fn err(cert: &Path, key: &Path) -> TlsError {
    ServerTls::from_pem_files(cert, key).unwrap_err()
}

#[test]
fn certificates_and_keys_that_cannot_be_served_are_refused_by_name() {
    let good = self_signed();
    let other = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Served.
    ServerTls::from_pem_files(&good.cert, &good.key).unwrap();

    // A file that is not there.
    let missing = dir.path().join("missing.pem");
    let e = err(&missing, &good.key);
    assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    // No PEM at all.
    let garbage = file("garbage.pem", "this is not a certificate\n");
    let e = err(&garbage, &good.key);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    assert!(e.to_string().contains("garbage.pem"), "{e}");
    let e = err(&good.cert, &garbage);
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");

    // The certificate where the key should be, and the key where the certificate should be.
    let e = err(&good.cert, &good.cert);
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    let e = err(&good.key, &good.key);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");

    // PEM armour around bytes that are not base64, or not a certificate.
    let bad_base64 = file(
        "bad-base64.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let e = err(&bad_base64, &good.key);
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    let not_der = file(
        "not-der.pem",
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    );
    let e = err(&not_der, &good.key);
    assert!(matches!(e, TlsError::Certificate { .. }), "{e:?}");
    let bad_key = file(
        "bad-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
    );
    let e = err(&good.cert, &bad_key);
    assert!(matches!(e, TlsError::Key { .. }), "{e:?}");
    assert!(e.to_string().contains("bad-key.pem"), "{e}");

    // Another certificate's key.
    let e = err(&good.cert, &other.key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("does not match") && text.contains("cert.pem") && text.contains("key.pem"),
        "{text}"
    );
}
