//! Builder authentication (protocol.md §7): no passwords. The node hands out a challenge (a
//! random nonce, its own DID as the audience, an expiry); the builder signs
//! [`Challenge::message`] for its DID with its `did:key` key; the node checks the signature
//! against the DID, consumes the challenge (a replayed one is refused), and issues a
//! short-lived bearer token bound to that DID. What a token may see (the builder's own
//! agreements in force) is the node's decision, not this module's.
//!
//! [`Gate`] holds the pending challenges and the sessions, bounded; time and random bytes are
//! arguments.

use std::collections::{BTreeMap, HashMap};

use guild_core::keys::PublicKey;
use guild_core::syntax::{Datetime, Did};

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The challenge was never issued, already used, or forgotten.
    #[error("unknown challenge (never issued, already used, or expired)")]
    UnknownChallenge,
    /// The challenge expired.
    #[error("the challenge expired at {0}")]
    ExpiredChallenge(String),
    /// The DID is not a `did:key` with an ed25519 key.
    #[error("the DID {0} is not an ed25519 did:key")]
    NotDidKey(String),
    /// The signature does not verify with the DID's key.
    #[error("the signature does not verify with {0}'s key")]
    BadSignature(String),
    /// No session has this token.
    #[error("unknown token (log in again)")]
    UnknownToken,
    /// The session expired.
    #[error("the token expired at {0} (log in again)")]
    ExpiredToken(String),
    /// Too many challenges pending.
    #[error("too many challenges pending; try again shortly")]
    TooManyChallenges,
}

/// A challenge to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Random, lower-case hex.
    pub nonce: String,
    /// The DID of the node that issued it (a signature for one node is useless at another).
    pub audience: String,
    /// When it lapses.
    pub expires_at: Datetime,
}

impl Challenge {
    /// The bytes the builder signs to prove `did`.
    pub fn message(&self, did: &str) -> Vec<u8> {
        signed_message(&self.audience, did, &self.nonce, self.expires_at.as_str())
    }
}

/// The bytes signed for a challenge: a fixed prefix, the audience, the DID, the nonce and
/// the expiry, one per line (so that no field can run into another).
pub fn signed_message(audience: &str, did: &str, nonce: &str, expires_at: &str) -> Vec<u8> {
    format!("coop.guild.feed.login\n{audience}\n{did}\n{nonce}\n{expires_at}\n").into_bytes()
}

/// A logged-in builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The builder.
    pub did: Did,
    /// The bearer token.
    pub token: String,
    /// When it lapses.
    pub expires_at: Datetime,
}

/// Pending challenges and sessions (see the module doc).
#[derive(Debug)]
pub struct Gate {
    audience: String,
    challenge_ttl_micros: i64,
    token_ttl_micros: i64,
    max_pending: usize,
    challenges: BTreeMap<String, Challenge>,
    sessions: HashMap<String, Session>,
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

impl Gate {
    /// A gate for the node whose DID is `audience`: challenges live `challenge_ttl_micros`,
    /// tokens `token_ttl_micros`, at most `max_pending` challenges wait at once.
    pub fn new(
        audience: impl Into<String>,
        challenge_ttl_micros: i64,
        token_ttl_micros: i64,
        max_pending: usize,
    ) -> Gate {
        Gate {
            audience: audience.into(),
            challenge_ttl_micros,
            token_ttl_micros,
            max_pending,
            challenges: BTreeMap::new(),
            sessions: HashMap::new(),
        }
    }

    fn forget_expired(&mut self, now_micros: i64) {
        self.challenges
            .retain(|_, c| c.expires_at.to_unix_micros() > now_micros);
        self.sessions
            .retain(|_, s| s.expires_at.to_unix_micros() > now_micros);
    }

    /// A new challenge, its nonce from `random`.
    pub fn challenge(&mut self, random: [u8; 32], now_micros: i64) -> Result<Challenge, AuthError> {
        self.forget_expired(now_micros);
        if self.challenges.len() >= self.max_pending {
            return Err(AuthError::TooManyChallenges);
        }
        let c = Challenge {
            nonce: hex(&random),
            audience: self.audience.clone(),
            expires_at: Datetime::from_unix_micros(
                now_micros.saturating_add(self.challenge_ttl_micros),
            ),
        };
        self.challenges.insert(c.nonce.clone(), c.clone());
        Ok(c)
    }

    /// Redeems the challenge `nonce` signed by `did` (`signature` over
    /// [`Challenge::message`]); the challenge is used up whatever the outcome. The token is
    /// drawn from `random`.
    pub fn login(
        &mut self,
        did: &Did,
        nonce: &str,
        signature: &[u8],
        random: [u8; 32],
        now_micros: i64,
    ) -> Result<Session, AuthError> {
        let c = self
            .challenges
            .remove(nonce)
            .ok_or(AuthError::UnknownChallenge)?;
        if c.expires_at.to_unix_micros() <= now_micros {
            return Err(AuthError::ExpiredChallenge(c.expires_at.to_string()));
        }
        let key =
            PublicKey::from_did(did.as_str()).map_err(|_| AuthError::NotDidKey(did.to_string()))?;
        key.verify(&c.message(did.as_str()), signature)
            .map_err(|_| AuthError::BadSignature(did.to_string()))?;
        self.forget_expired(now_micros);
        let s = Session {
            did: did.clone(),
            token: hex(&random),
            expires_at: Datetime::from_unix_micros(
                now_micros.saturating_add(self.token_ttl_micros),
            ),
        };
        self.sessions.insert(s.token.clone(), s.clone());
        Ok(s)
    }

    /// The builder a bearer token stands for.
    pub fn check(&self, token: &str, now_micros: i64) -> Result<Did, AuthError> {
        let s = self.sessions.get(token).ok_or(AuthError::UnknownToken)?;
        if s.expires_at.to_unix_micros() <= now_micros {
            return Err(AuthError::ExpiredToken(s.expires_at.to_string()));
        }
        Ok(s.did.clone())
    }
}
