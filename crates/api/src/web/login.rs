//! One-time dashboard login links and the sessions they open.
//!
//! A link carries `code = <expiry µs>.<nonce>.<tag>`, where `tag` is HMAC-SHA-256 of
//! `"guild-dashboard-login" ‖ expiry ‖ nonce` under the node's admin token: whoever holds the
//! token (the `guild` CLI on the member's machine) mints links without asking the node, and
//! the node checks them without storing them. A link works once (its nonce is remembered
//! until it expires) and for [`LINK_TTL_MICROS`]. It opens a session: a random id in an
//! `HttpOnly`, `SameSite=Strict` cookie, valid for [`SESSION_TTL_MICROS`], held in memory (a
//! restarted node asks for a new link). Forms carry a token derived from the session
//! ([`Sessions::form_token`]), checked on every POST.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// How long a login link works.
pub const LINK_TTL_MICROS: i64 = 10 * 60 * 1_000_000;
/// How long a session lasts.
pub const SESSION_TTL_MICROS: i64 = 12 * 3600 * 1_000_000;
/// The session cookie's name.
pub const COOKIE: &str = "guild_session";

type HmacSha256 = hmac::Hmac<Sha256>;

fn tag(token: &str, purpose: &str, body: &str) -> Option<String> {
    let mut mac = HmacSha256::new_from_slice(token.as_bytes()).ok()?;
    mac.update(purpose.as_bytes());
    mac.update(&[0]);
    mac.update(body.as_bytes());
    Some(
        data_encoding::BASE32_NOPAD
            .encode(&mac.finalize().into_bytes())
            .to_lowercase(),
    )
}

fn random_id() -> Result<String, LoginError> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| LoginError::Random(e.to_string()))?;
    Ok(data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase())
}

/// Why a login link or a session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Not `<expiry>.<nonce>.<tag>`, or a tag the admin token did not make.
    #[error("this login link is not one this node made (ask `guild dashboard` for a new one)")]
    Forged,
    /// Past its expiry.
    #[error(
        "this login link expired (links work for 10 minutes: ask `guild dashboard` for a new one)"
    )]
    Expired,
    /// Its nonce was used already.
    #[error(
        "this login link was used already (each works once: ask `guild dashboard` for a new one)"
    )]
    Used,
    /// The system's random source failed.
    #[error("no random bytes for a session: {0}")]
    Random(String),
}

/// Mints a one-time login code valid until `now + LINK_TTL_MICROS`.
pub fn login_code(admin_token: &str, now_micros: i64) -> Result<String, LoginError> {
    let expiry = now_micros.saturating_add(LINK_TTL_MICROS);
    let nonce = random_id()?;
    let body = format!("{expiry}.{nonce}");
    let tag = tag(admin_token, "guild-dashboard-login", &body).ok_or(LoginError::Forged)?;
    Ok(format!("{body}.{tag}"))
}

/// The dashboard's sessions and the login nonces already used.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Session id → expiry.
    sessions: HashMap<String, i64>,
    /// Used login nonce → the link's expiry.
    used: HashMap<String, i64>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // (a panic while holding the lock leaves plain maps behind: keep using them)
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a login code and opens a session: its id.
    pub fn open(&self, admin_token: &str, code: &str, now: i64) -> Result<String, LoginError> {
        let mut parts = code.splitn(3, '.');
        let (Some(expiry), Some(nonce), Some(given)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(LoginError::Forged);
        };
        let body = format!("{expiry}.{nonce}");
        let want = tag(admin_token, "guild-dashboard-login", &body).ok_or(LoginError::Forged)?;
        if !bool::from(want.as_bytes().ct_eq(given.as_bytes())) {
            return Err(LoginError::Forged);
        }
        let expiry: i64 = expiry.parse().map_err(|_| LoginError::Forged)?;
        if now > expiry {
            return Err(LoginError::Expired);
        }
        let mut inner = self.lock();
        inner.used.retain(|_, e| *e >= now);
        inner.sessions.retain(|_, e| *e >= now);
        if inner.used.contains_key(nonce) {
            return Err(LoginError::Used);
        }
        inner.used.insert(nonce.to_owned(), expiry);
        let id = random_id()?;
        inner
            .sessions
            .insert(id.clone(), now.saturating_add(SESSION_TTL_MICROS));
        Ok(id)
    }

    /// Whether `id` is a live session.
    pub fn valid(&self, id: &str, now: i64) -> bool {
        let inner = self.lock();
        inner.sessions.get(id).is_some_and(|e| *e >= now)
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    /// The token the session's forms carry.
    pub fn form_token(admin_token: &str, session: &str) -> String {
        tag(admin_token, "guild-dashboard-form", session).unwrap_or_default()
    }

    /// Whether `given` is the session's form token.
    pub fn form_token_ok(admin_token: &str, session: &str, given: &str) -> bool {
        let want = Self::form_token(admin_token, session);
        !want.is_empty() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_one_session_once_before_it_expires() {
        let s = Sessions::default();
        let code = login_code("tok", 1_000).unwrap();
        let id = s.open("tok", &code, 2_000).unwrap();
        assert!(s.valid(&id, 3_000));
        assert_eq!(s.open("tok", &code, 2_000), Err(LoginError::Used));
        let late = login_code("tok", 1_000).unwrap();
        assert_eq!(
            s.open("tok", &late, 1_000 + LINK_TTL_MICROS + 1),
            Err(LoginError::Expired)
        );
        let other = login_code("another token", 1_000).unwrap();
        assert_eq!(s.open("tok", &other, 2_000), Err(LoginError::Forged));
        // A changed expiry breaks the tag.
        let mut parts: Vec<&str> = code.split('.').collect();
        let later = (1_000 + 2 * LINK_TTL_MICROS).to_string();
        parts[0] = &later;
        assert_eq!(
            s.open("tok", &parts.join("."), 2_000),
            Err(LoginError::Forged)
        );
        for junk in ["", "a.b", "1.2.3", "..", "x.y.z.w"] {
            assert_eq!(s.open("tok", junk, 2_000), Err(LoginError::Forged));
        }
        assert!(!s.valid(&id, 3_000 + SESSION_TTL_MICROS));
        s.close(&id);
        assert!(!s.valid(&id, 3_000));
    }

    proptest::proptest! {
        /// Whatever a link carries, it opens no session unless the token made it, and
        /// nothing panics.
        #[test]
        fn arbitrary_codes_open_nothing(code in ".{0,200}", now in proptest::prelude::any::<i64>()) {
            let s = Sessions::default();
            proptest::prop_assert!(s.open("tok", &code, now).is_err());
            proptest::prop_assert!(!s.valid(&code, now));
        }

        /// A real code with any byte changed opens nothing.
        #[test]
        fn a_changed_code_opens_nothing(at in 0usize..200, with in proptest::prelude::any::<char>()) {
            let code = login_code("tok", 1_000).unwrap();
            let mut chars: Vec<char> = code.chars().collect();
            let i = at % chars.len();
            proptest::prop_assume!(chars[i] != with);
            chars[i] = with;
            let changed: String = chars.into_iter().collect();
            proptest::prop_assert!(Sessions::default().open("tok", &changed, 2_000).is_err());
        }
    }

    #[test]
    fn form_tokens_belong_to_their_session() {
        let t = Sessions::form_token("tok", "s1");
        assert!(Sessions::form_token_ok("tok", "s1", &t));
        assert!(!Sessions::form_token_ok("tok", "s2", &t));
        assert!(!Sessions::form_token_ok("other", "s1", &t));
        assert!(!Sessions::form_token_ok("tok", "s1", ""));
    }
}
