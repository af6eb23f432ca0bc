//! Timestamp identifiers and a monotonic generator for them (atproto.com/specs/tid).

use serde::{Deserialize, Serialize};

use super::{SyntaxError, borrow_str, string_conversions};

/// The base32-sortable alphabet: digit values 0 to 31, in ASCII order.
const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
/// Characters in a TID.
const LEN: usize = 13;
/// Bits of the clock identifier.
const CLOCK_BITS: u32 = 10;

/// A timestamp identifier: a 64-bit integer written as 13 base32-sortable characters, such as
/// `3jzfcijpj2z2a`.
///
/// Layout: the top bit is 0, the next 53 bits are microseconds since the UNIX epoch, the last
/// 10 bits are a clock identifier. Because every TID has the same length and the alphabet is
/// in ASCII order, comparing TID strings compares their integers.
///
/// [`Tid::parse`] follows the spec's syntax, `[234567abcdefghij][234567a-z]{12}`: any value
/// that fits in 64 bits. The first characters `c` to `j` set the top bit, which generated TIDs
/// never do ([`Tid::from_u64`] refuses it) but which the network's validators accept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tid(String);

impl Tid {
    /// The largest timestamp a TID can hold: 2^53 - 1 microseconds (in the year 2255).
    pub const MAX_TIMESTAMP_MICROS: u64 = (1 << 53) - 1;
    /// The largest clock identifier: 2^10 - 1.
    pub const MAX_CLOCK_ID: u16 = (1 << CLOCK_BITS) - 1;

    /// Parses and validates a TID.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        validate(s).map_err(|reason| SyntaxError::new("tid", s, reason))?;
        Ok(Tid(s.to_owned()))
    }

    /// The TID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The TID as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Builds the TID for a timestamp and clock identifier, keeping the low 53 bits of
    /// `timestamp_micros` and the low 10 bits of `clock_id`.
    pub fn from_parts(timestamp_micros: u64, clock_id: u16) -> Tid {
        let clock = u64::from(clock_id & Self::MAX_CLOCK_ID);
        encode(((timestamp_micros & Self::MAX_TIMESTAMP_MICROS) << CLOCK_BITS) | clock)
    }

    /// The TID for a 64-bit value, or `None` if its top bit is set.
    pub fn from_u64(value: u64) -> Option<Tid> {
        (value >> 63 == 0).then(|| encode(value))
    }

    /// The TID's 64-bit value.
    pub fn to_u64(&self) -> u64 {
        self.0
            .bytes()
            .fold(0u64, |acc, b| (acc << 5) | u64::from(digit(b).unwrap_or(0)))
    }

    /// The timestamp: microseconds since the UNIX epoch (53 bits).
    pub fn timestamp_micros(&self) -> u64 {
        (self.to_u64() >> CLOCK_BITS) & Self::MAX_TIMESTAMP_MICROS
    }

    /// The clock identifier (10 bits).
    pub fn clock_id(&self) -> u16 {
        // Masked to 10 bits, so the cast cannot truncate.
        (self.to_u64() & u64::from(Self::MAX_CLOCK_ID)) as u16
    }
}

string_conversions!(Tid);
borrow_str!(Tid);

/// The value of a base32-sortable digit.
fn digit(b: u8) -> Option<u8> {
    match b {
        b'2'..=b'7' => Some(b - b'2'),
        b'a'..=b'z' => Some(b - b'a' + 6),
        _ => None,
    }
}

/// Writes all 64 bits of `value` as 13 base32-sortable digits.
fn encode(mut value: u64) -> Tid {
    let mut buf = [ALPHABET[0]; LEN];
    for slot in buf.iter_mut().rev() {
        // Masked to 5 bits, so the index is in range and the cast cannot truncate.
        *slot = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    Tid(buf.iter().map(|&b| char::from(b)).collect())
}

fn validate(s: &str) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    if bytes.len() != LEN {
        return Err("must be exactly 13 characters");
    }
    if !bytes.iter().all(|&b| digit(b).is_some()) {
        return Err("may only contain the base32-sortable characters 234567a-z");
    }
    // The first digit carries the top 4 bits of 64 (13 * 5 = 65): it must be below 16.
    if digit(bytes[0]).is_none_or(|d| d >= 16) {
        return Err("first character must be one of 234567abcdefghij");
    }
    Ok(())
}

/// Generates strictly increasing TIDs for one clock identifier.
///
/// The caller passes the current time to [`TidClock::next`]; if it repeats or goes backwards,
/// the clock moves one microsecond past the last TID instead. Timestamps saturate at
/// [`Tid::MAX_TIMESTAMP_MICROS`] (the year 2255), past which TIDs stop increasing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TidClock {
    clock_id: u16,
    last_micros: Option<u64>,
}

impl TidClock {
    /// A clock with no history, using the low 10 bits of `clock_id`.
    pub fn new(clock_id: u16) -> TidClock {
        TidClock::resume(clock_id, None)
    }

    /// A clock that continues after `last` (for instance the last TID stored before a
    /// restart), so that every TID it makes sorts after `last`, whatever `last`'s clock id.
    pub fn resume(clock_id: u16, last: Option<&Tid>) -> TidClock {
        TidClock {
            clock_id: clock_id & Tid::MAX_CLOCK_ID,
            last_micros: last.map(Tid::timestamp_micros),
        }
    }

    /// The clock identifier written into every TID.
    pub fn clock_id(&self) -> u16 {
        self.clock_id
    }

    /// The last TID made (or resumed from, with this clock's id), if any.
    pub fn last(&self) -> Option<Tid> {
        self.last_micros
            .map(|micros| Tid::from_parts(micros, self.clock_id))
    }

    /// The next TID: at `now_micros`, or one microsecond after the last TID if that is later.
    pub fn next(&mut self, now_micros: u64) -> Tid {
        let mut micros = now_micros;
        if let Some(last) = self.last_micros {
            micros = micros.max(last.saturating_add(1));
        }
        let micros = micros.min(Tid::MAX_TIMESTAMP_MICROS);
        self.last_micros = Some(micros);
        Tid::from_parts(micros, self.clock_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A 2023 timestamp, microseconds.
    const T: u64 = 1_700_000_000_000_000;

    #[test]
    fn known_values() {
        assert_eq!(Tid::from_u64(0).unwrap().as_str(), "2222222222222");
        assert_eq!(
            Tid::from_u64(u64::MAX >> 1).unwrap().as_str(),
            "bzzzzzzzzzzzz"
        );
        assert!(Tid::from_u64(1 << 63).is_none());
        let tid = Tid::parse("3jzfcijpj2z2a").unwrap();
        assert_eq!(Tid::from_parts(tid.timestamp_micros(), tid.clock_id()), tid);
        // The spec allows a set top bit in parsed TIDs.
        let high = Tid::parse("jzzzzzzzzzzzz").unwrap();
        assert_eq!(high.to_u64(), u64::MAX);
        assert_eq!(high.timestamp_micros(), Tid::MAX_TIMESTAMP_MICROS);
        assert_eq!(high.clock_id(), Tid::MAX_CLOCK_ID);
    }

    #[test]
    fn from_parts_masks() {
        let tid = Tid::from_parts(u64::MAX, u16::MAX);
        assert_eq!(tid.timestamp_micros(), Tid::MAX_TIMESTAMP_MICROS);
        assert_eq!(tid.clock_id(), Tid::MAX_CLOCK_ID);
        assert_eq!(tid.to_u64() >> 63, 0);
        assert_eq!(Tid::from_parts(T, 5).timestamp_micros(), T);
        assert_eq!(Tid::from_parts(T, 5).clock_id(), 5);
    }

    #[test]
    fn clock_repeats_and_goes_backwards() {
        let mut clock = TidClock::new(3);
        assert_eq!(clock.last(), None);
        let a = clock.next(T);
        let b = clock.next(T);
        let c = clock.next(T - 1_000_000);
        let d = clock.next(T + 10);
        assert_eq!(a.timestamp_micros(), T);
        assert_eq!(b.timestamp_micros(), T + 1);
        assert_eq!(c.timestamp_micros(), T + 2);
        assert_eq!(d.timestamp_micros(), T + 10);
        assert!(a < b && b < c && c < d);
        assert_eq!(clock.last(), Some(d));
        assert_eq!(a.clock_id(), 3);
    }

    #[test]
    fn resume_sorts_after_last() {
        let last = Tid::from_parts(T, Tid::MAX_CLOCK_ID);
        let mut clock = TidClock::resume(0, Some(&last));
        let next = clock.next(T - 5);
        assert!(next > last);
        assert_eq!(next.timestamp_micros(), T + 1);
        assert_eq!(next.clock_id(), 0);
    }

    #[test]
    fn clock_saturates() {
        let mut clock = TidClock::new(1);
        let tid = clock.next(u64::MAX);
        assert_eq!(tid.timestamp_micros(), Tid::MAX_TIMESTAMP_MICROS);
        assert_eq!(clock.next(0), tid);
    }

    proptest! {
        #[test]
        fn string_order_is_integer_order(a in 0..=u64::MAX >> 1, b in 0..=u64::MAX >> 1) {
            let (ta, tb) = (Tid::from_u64(a).unwrap(), Tid::from_u64(b).unwrap());
            prop_assert_eq!(ta.as_str().cmp(tb.as_str()), a.cmp(&b));
            prop_assert_eq!(ta.cmp(&tb), a.cmp(&b));
        }

        #[test]
        fn round_trips(value in 0..=u64::MAX >> 1) {
            let tid = Tid::from_u64(value).unwrap();
            prop_assert_eq!(tid.as_str().len(), 13);
            prop_assert_eq!(tid.to_u64(), value);
            prop_assert_eq!(Tid::parse(tid.as_str()).unwrap(), tid.clone());
            let parts = Tid::from_parts(tid.timestamp_micros(), tid.clock_id());
            prop_assert_eq!(parts, tid);
        }

        #[test]
        fn any_parsed_string_round_trips(s in "[234567a-j][234567a-z]{12}") {
            let tid = Tid::parse(&s).unwrap();
            let encoded = encode(tid.to_u64());
            prop_assert_eq!(encoded.as_str(), s.as_str());
        }

        #[test]
        fn clock_is_strictly_monotonic(
            clock_id in any::<u16>(),
            last in proptest::option::of(0..(1u64 << 52)),
            nows in proptest::collection::vec(0..(1u64 << 52), 1..64),
        ) {
            let last = last.map(|micros| Tid::from_parts(micros, 1000));
            let mut clock = TidClock::resume(clock_id, last.as_ref());
            let mut previous = last;
            for now in nows {
                let tid = clock.next(now);
                prop_assert!(tid.timestamp_micros() >= now);
                if let Some(previous) = &previous {
                    prop_assert!(&tid > previous, "{} !> {}", tid, previous);
                }
                previous = Some(tid);
            }
        }
    }
}
