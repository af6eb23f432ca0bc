//! A builder's login as its client does it (a challenge, signed with the builder's key, for
//! a bearer token), shared by `tests/feeds.rs`, `tests/tls.rs` and `benches/feed.rs`.
#![allow(dead_code)]

use guild_core::Keypair;

/// A fresh challenge from the node at `url`.
pub async fn challenge(url: &str) -> serde_json::Value {
    challenge_with(&reqwest::Client::new(), url).await
}

/// [`challenge`], with this HTTP client (one that trusts a test certificate, say).
pub async fn challenge_with(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(format!("{url}/xrpc/coop.guild.feed.getChallenge"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `coop.guild.feed.login` input claiming `did`, with `signer`'s signature of the
/// challenge's bytes for `did` (a forgery when `signer` is not `did`'s key).
pub fn login_body(c: &serde_json::Value, did: &str, signer: &Keypair) -> serde_json::Value {
    let msg = guild_feed::auth::signed_message(
        c["audience"].as_str().unwrap(),
        did,
        c["nonce"].as_str().unwrap(),
        c["expiresAt"].as_str().unwrap(),
    );
    serde_json::json!({
        "did": did,
        "nonce": c["nonce"],
        "signature": guild_core::data::to_json(&guild_core::Ipld::Bytes(signer.sign(&msg).to_vec())),
    })
}

/// Logs in as `key`'s DID; its bearer token.
pub async fn login(url: &str, key: &Keypair) -> String {
    login_with(&reqwest::Client::new(), url, key).await
}

/// [`login`], with this HTTP client.
pub async fn login_with(http: &reqwest::Client, url: &str, key: &Keypair) -> String {
    let c = challenge_with(http, url).await;
    let resp = http
        .post(format!("{url}/xrpc/coop.guild.feed.login"))
        .json(&login_body(&c, &key.did(), key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: serde_json::Value = resp.json().await.unwrap();
    s["token"].as_str().unwrap().to_owned()
}
