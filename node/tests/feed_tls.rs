//! A real `guild node` serving its public address (`[feeds] listen`) over TLS, with a
//! self-signed certificate made here (rcgen), and the real `guild feed subscribe` reaching it:
//! with `--ca` it logs in over https and follows the feed over wss; without, it stops at once
//! with a certificate error; plain HTTP to the TLS port fails and the node keeps serving. A
//! node given TLS settings it cannot serve refuses to start, naming the problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{DataDir, command, fails, ok, stdout};

const DEADLINE: Duration = Duration::from_secs(60);

/// A self-signed certificate for 127.0.0.1 and localhost: its PEM files in `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (c, k) = (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key_pair.serialize_pem()).unwrap();
    (c, k)
}

/// Sets `[feeds]` in the data directory's config: a public address on a free port and the
/// given TLS settings (`None`: the line stays empty).
fn configure(data: &DataDir, cert: Option<&Path>, key: Option<&Path>) {
    let path = data.dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = |name: &str, p: Option<&Path>| match p {
        Some(p) => format!("{name} = {:?}\n", p.to_str().unwrap()),
        None => format!("{name} = \"\"\n"),
    };
    let text = text
        .replacen("listen = \"\"\n", "listen = \"127.0.0.1:0\"\n", 1)
        .replacen("tls_cert = \"\"\n", &line("tls_cert", cert), 1)
        .replacen("tls_key = \"\"\n", &line("tls_key", key), 1);
    assert!(text.contains("listen = \"127.0.0.1:0\""), "{text}");
    std::fs::write(&path, text).unwrap();
}

/// The builders' URL the node logged (`serving builders url=…`).
fn public_url(node: &common::Node) -> String {
    let start = Instant::now();
    loop {
        let log = node.log_text();
        if let Some(url) = log
            .lines()
            .filter(|l| l.contains("serving builders"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("url=")))
        {
            return url.to_owned();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the node did not log its builders' address:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion, killing it (and failing) past the deadline.
fn run(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {DEADLINE:?}\nstdout: {}\nstderr: {}",
                stdout(&out),
                common::stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn subscribe(url: &str, key: &Path, out: &Path, ca: Option<&Path>) -> Command {
    let mut c = command();
    c.args(["feed", "subscribe", "--once", "--node", url, "--key"])
        .arg(key)
        .arg("--out")
        .arg(out);
    if let Some(ca) = ca {
        c.arg("--ca").arg(ca);
    }
    c
}

#[test]
fn a_builder_follows_a_tls_node_with_its_certificate_and_an_untrusting_one_stops() {
    let data = DataDir::init();
    let (cert, key) = self_signed(data.root.path(), "node");
    configure(&data, Some(&cert), Some(&key));
    let node = data.start();
    let url = public_url(&node);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // The admin API stays plain HTTP on loopback.
    assert!(node.url.starts_with("http://"), "{}", node.url);
    let builder_key = data.file("builder.key");
    ok(&common::guild_plain(&[
        "key",
        "generate",
        "--out",
        builder_key.to_str().unwrap(),
    ]));

    // With the node's certificate: logs in over https, subscribes over wss, catches up.
    let out = data.file("feed");
    let o = run(
        subscribe(&url, &builder_key, &out, Some(&cert)),
        "subscribe --ca",
    );
    let text = ok(&o);
    assert!(text.contains("info ReplayComplete"), "{text}");

    // Without it: the certificate is not trusted, and the client stops at once with a clear
    // error (it does not retry forever).
    let o = run(
        subscribe(&url, &builder_key, &data.file("feed-2"), None),
        "subscribe without --ca",
    );
    let err = fails(&o, "subscribe without --ca");
    assert!(
        err.contains("TLS certificate is not trusted") && err.contains("--ca"),
        "{err}"
    );
    // Nor with another certificate as its CA.
    let (other, _) = self_signed(data.root.path(), "other");
    let o = run(
        subscribe(&url, &builder_key, &data.file("feed-3"), Some(&other)),
        "subscribe with the wrong --ca",
    );
    let err = fails(&o, "subscribe with the wrong --ca");
    assert!(err.contains("not trusted"), "{err}");
    // A --ca file that holds no certificate.
    let o = run(
        subscribe(&url, &builder_key, &data.file("feed-4"), Some(&key)),
        "subscribe with a key as --ca",
    );
    let err = fails(&o, "subscribe with a key as --ca");
    assert!(err.contains("holds no certificate"), "{err}");

    // Plain HTTP to the TLS port: refused (the connection closes), several times over.
    let plain = url.replacen("https://", "http://", 1);
    for _ in 0..3 {
        let got = node
            .http
            .get(format!("{plain}/xrpc/_health"))
            .timeout(Duration::from_secs(30))
            .send();
        assert!(got.is_err(), "plain HTTP was answered: {got:?}");
    }
    // And the node still serves builders over TLS.
    let o = run(
        subscribe(&url, &builder_key, &out, Some(&cert)),
        "subscribe --ca again",
    );
    assert!(ok(&o).contains("info ReplayComplete"));
}

#[test]
fn tls_settings_the_node_cannot_serve_stop_it_at_start() {
    let start = |data: &DataDir| {
        let mut c = command();
        c.args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data.dir)
            .env("GUILD_MDNS", "0")
            .env("GUILD_P2P_LISTEN", "/ip4/127.0.0.1/tcp/0");
        run(c, "guild node")
    };
    let data = DataDir::init();
    let (cert, key) = self_signed(data.root.path(), "node");
    let (_, other_key) = self_signed(data.root.path(), "other");
    let garbage = data.file("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();

    // A key without a certificate.
    configure(&data, None, Some(&key));
    let err = fails(&start(&data), "key without cert");
    assert!(err.contains("tls_key is set but tls_cert is not"), "{err}");

    // A certificate file that is not PEM.
    configure_again(&data, Some(&garbage), Some(&key));
    let err = fails(&start(&data), "garbage cert");
    assert!(
        err.contains("garbage.pem") && err.contains("holds no certificate"),
        "{err}"
    );

    // Another certificate's key.
    configure_again(&data, Some(&cert), Some(&other_key));
    let err = fails(&start(&data), "mismatched key");
    assert!(
        err.contains("other-key.pem") && err.contains("does not match the certificate"),
        "{err}"
    );

    // A file that is not there.
    configure_again(&data, Some(&data.file("missing.pem")), Some(&key));
    let err = fails(&start(&data), "missing cert");
    assert!(
        err.contains("missing.pem") && err.contains("cannot read"),
        "{err}"
    );
}

/// Rewrites `[feeds]`'s TLS lines of an already configured data directory.
fn configure_again(data: &DataDir, cert: Option<&Path>, key: Option<&Path>) {
    let path = data.dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            let set = |name: &str, p: Option<&Path>| match p {
                Some(p) => format!("{name} = {:?}", p.to_str().unwrap()),
                None => format!("{name} = \"\""),
            };
            if l.starts_with("tls_cert = ") {
                set("tls_cert", cert)
            } else if l.starts_with("tls_key = ") {
                set("tls_key", key)
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
}

#[test]
fn a_ca_certificate_serving_as_the_nodes_own_is_explained() {
    // What `openssl req -x509` makes unless told otherwise: basicConstraints CA:TRUE.
    let data = DataDir::init();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key_pair).unwrap();
    let (cert_path, key_path) = (data.file("ca-cert.pem"), data.file("ca-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    configure(&data, Some(&cert_path), Some(&key_path));
    let node = data.start();
    let url = public_url(&node);
    let builder_key = data.file("builder.key");
    ok(&common::guild_plain(&[
        "key",
        "generate",
        "--out",
        builder_key.to_str().unwrap(),
    ]));
    let o = run(
        subscribe(&url, &builder_key, &data.file("feed"), Some(&cert_path)),
        "subscribe --ca with a CA certificate as the node's",
    );
    let err = fails(&o, "a CA certificate as the node's");
    assert!(
        err.contains("CA certificate serving as the node's own") && err.contains("CA:FALSE"),
        "{err}"
    );
}
