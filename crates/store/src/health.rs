//! The sled store's failure state, apart from sled so that it can be tested without a disk.
//!
//! After an I/O error (most often a full disk) sled 0.34 keeps a global error and refuses
//! every later read and write of that database for good. So the store marks itself failed
//! ([`Health::fail`]) and, at most once per [`RETRY_EVERY`], when it is used, tries to recover
//! ([`Health::check`]): the caller's `recover` checks that the disk takes a write again and
//! reopens the database in place. Until that succeeds every operation is refused with
//! [`Unavailable`]'s message.
//!
//! Each opened database has a generation: an error from a database that was already replaced
//! (an operation that started before a recovery and failed on the old handle) is not a new
//! failure.

use std::time::{Duration, Instant};

/// How often a failed store tries to recover, at most.
pub(crate) const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Working, or failed since when and why.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The generation of the database in use (bumped by each successful recovery).
    generation: u64,
    failure: Option<Failure>,
}

#[derive(Debug, Clone)]
struct Failure {
    cause: String,
    since: Instant,
    next_attempt: Instant,
    last_attempt: Option<String>,
}

/// Why the store refuses to work now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable {
    /// The error that made the store fail.
    pub cause: String,
    /// How long ago.
    pub for_secs: u64,
    /// Why the last attempt to recover failed, if one was made.
    pub last_attempt: Option<String>,
}

impl Health {
    /// The generation of the database in use.
    #[cfg(test)]
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the store is failed.
    #[cfg(test)]
    pub(crate) fn is_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Records that the database of `generation` failed with `cause`. Returns whether this is
    /// a new failure (not one already recorded, nor one of a database since replaced).
    pub(crate) fn fail(&mut self, generation: u64, cause: String, now: Instant) -> bool {
        if generation != self.generation || self.failure.is_some() {
            return false;
        }
        self.failure = Some(Failure {
            cause,
            since: now,
            next_attempt: now + RETRY_EVERY,
            last_attempt: None,
        });
        true
    }

    /// `Ok` if the store works. If it failed and an attempt is due, runs `recover` with the
    /// next generation: on success the store works again (`Ok`), on failure it stays failed
    /// and the next attempt is [`RETRY_EVERY`] later.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        recover: impl FnOnce(u64) -> Result<(), String>,
    ) -> Result<(), Unavailable> {
        let Some(failure) = &mut self.failure else {
            return Ok(());
        };
        if now >= failure.next_attempt {
            match recover(self.generation + 1) {
                Ok(()) => {
                    self.generation += 1;
                    self.failure = None;
                    return Ok(());
                }
                Err(e) => {
                    failure.last_attempt = Some(e);
                    failure.next_attempt = now + RETRY_EVERY;
                }
            }
        }
        Err(Unavailable {
            cause: failure.cause.clone(),
            for_secs: now.saturating_duration_since(failure.since).as_secs(),
            last_attempt: failure.last_attempt.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_store_refuses_until_a_recovery_attempt_succeeds() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.check(t0, |_| panic!("nothing to recover")), Ok(()));
        assert!(h.fail(0, "No space left on device".into(), t0));
        assert!(h.is_failed());
        // A second error of the same database is the same failure.
        assert!(!h.fail(0, "again".into(), t0));

        // No attempt before RETRY_EVERY has passed.
        let u = h.check(t0, |_| panic!("too early")).unwrap_err();
        assert_eq!(u.cause, "No space left on device");
        assert_eq!(u.last_attempt, None);

        // A failed attempt keeps the store failed and says why; the next waits again.
        let t1 = t0 + RETRY_EVERY;
        let u = h.check(t1, |g| {
            assert_eq!(g, 1);
            Err("cannot write yet".into())
        });
        assert_eq!(
            u.unwrap_err().last_attempt.as_deref(),
            Some("cannot write yet")
        );
        assert!(h.check(t1, |_| panic!("too early")).is_err());

        // A successful one: working again, with a new generation.
        let t2 = t1 + RETRY_EVERY;
        let u = h.check(t2 + RETRY_EVERY, |g| {
            assert_eq!(g, 1);
            Ok(())
        });
        assert_eq!(u, Ok(()));
        assert!(!h.is_failed());
        assert_eq!(h.generation(), 1);
        assert_eq!(h.check(t2, |_| panic!("working")), Ok(()));

        // An error of the replaced database is no new failure; one of the new database is.
        assert!(!h.fail(0, "late error of the old handle".into(), t2));
        assert!(!h.is_failed());
        assert!(h.fail(1, "disk full again".into(), t2));
        let u = h.check(t2, |_| panic!("too early")).unwrap_err();
        assert_eq!(u.cause, "disk full again");
    }

    #[test]
    fn the_refusal_says_how_long_the_store_has_been_failed() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.fail(0, "EIO".into(), t0);
        let u = h
            .check(t0 + Duration::from_secs(5), |_| Err("still".into()))
            .unwrap_err();
        assert_eq!(u.for_secs, 5);
    }
}
