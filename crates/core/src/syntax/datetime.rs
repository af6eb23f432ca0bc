//! Timestamps in the lexicon `datetime` format: a strict subset of RFC 3339.

use core::fmt::Write as _;

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, Timelike as _};
use serde::{Deserialize, Serialize};

use super::{SyntaxError, string_conversions};

/// The longest datetime string accepted, in characters.
const MAX_LEN: usize = 64;
/// The most fractional-second digits accepted.
const MAX_FRACTION_DIGITS: usize = 20;
/// `0000-01-01T00:00:00Z` in microseconds since the UNIX epoch.
const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// `9999-12-31T23:59:59.999999Z` in microseconds since the UNIX epoch.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// A validated datetime, such as `1985-04-12T23:20:50.123Z`.
///
/// Syntax: `YYYY-MM-DDTHH:MM:SS`, an optional `.` and 1 to 20 fraction digits, then `Z` or
/// `+HH:MM`/`-HH:MM` (but not `-00:00`); uppercase `T` and `Z`, exact zero padding, at most
/// 64 characters. Parsing also requires a real calendar date and time (no leap second `:60`),
/// an offset below 24 hours, and an instant whose UTC year is between 0000 and 9999.
///
/// The string is kept as given for `Display` and serialization. Ordering is chronological
/// (by the instant in microseconds), with the string breaking ties; equality is of strings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Datetime {
    micros: i64,
    raw: Text,
}

/// A datetime's text as given: inline up to [`INLINE`] bytes (every datetime this project
/// writes is 24 or 27), shared beyond. Held inline, a datetime allocates nothing: a large
/// collective's log holds two per consent op, and their text took ~72 MB of a 1 M-op log.
#[derive(Clone)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(std::sync::Arc<str>),
}

/// The longest datetime text held inline.
const INLINE: usize = 30;

impl Text {
    fn new(s: &str) -> Text {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Text::Inline { len, bytes }
            }
            _ => Text::Shared(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole, so always UTF-8 (all ASCII, in fact).
            Text::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Text::Shared(s) => s,
        }
    }
}

impl PartialEq for Datetime {
    fn eq(&self, other: &Datetime) -> bool {
        self.micros == other.micros && self.as_str() == other.as_str()
    }
}

impl Eq for Datetime {}

impl Ord for Datetime {
    fn cmp(&self, other: &Datetime) -> std::cmp::Ordering {
        (self.micros, self.as_str()).cmp(&(other.micros, other.as_str()))
    }
}

impl PartialOrd for Datetime {
    fn partial_cmp(&self, other: &Datetime) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Datetime {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.micros.hash(state);
        self.as_str().hash(state);
    }
}

impl std::fmt::Debug for Datetime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datetime")
            .field("micros", &self.micros)
            .field("raw", &self.as_str())
            .finish()
    }
}

impl Datetime {
    /// Parses a datetime, checking both its syntax and that it names a real instant.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let micros = syntax(s)
            .and_then(|fields| fields.to_unix_micros())
            .map_err(|reason| SyntaxError::new("datetime", s, reason))?;
        Ok(Datetime {
            micros,
            raw: Text::new(s),
        })
    }

    /// True if `s` has datetime syntax, without checking that the date and time exist
    /// (`1985-13-12T23:20:50Z` passes this check but not [`Datetime::parse`]).
    pub fn is_valid_syntax(s: &str) -> bool {
        syntax(s).is_ok()
    }

    /// The datetime for an instant, written `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Instants outside
    /// the years 0000 to 9999 are clamped to the nearest end of that range.
    pub fn from_unix_micros(micros: i64) -> Datetime {
        let micros = micros.clamp(MIN_MICROS, MAX_MICROS);
        // In range after clamping; chrono covers far more than the years 0000 to 9999.
        let dt = DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::UNIX_EPOCH);
        let mut raw = String::with_capacity(27);
        // Writing to a String cannot fail.
        let _ = write!(
            raw,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.nanosecond() / 1000,
        );
        Datetime {
            micros,
            raw: Text::new(&raw),
        }
    }

    /// The instant in microseconds since the UNIX epoch (finer fractions are truncated).
    pub fn to_unix_micros(&self) -> i64 {
        self.micros
    }

    /// The datetime as a string slice, as it was given.
    pub fn as_str(&self) -> &str {
        self.raw.as_str()
    }

    /// The datetime as an owned string.
    pub fn into_string(self) -> String {
        self.as_str().to_owned()
    }
}

string_conversions!(Datetime);

/// The fields of a datetime string whose syntax is valid, not yet range-checked.
struct Fields {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// The fraction, truncated to nanoseconds.
    nanos: u32,
    /// The timezone offset: west of UTC, hours, minutes (all zero for `Z`).
    offset: (bool, u32, u32),
}

impl Fields {
    fn to_unix_micros(&self) -> Result<i64, &'static str> {
        let date = NaiveDate::from_ymd_opt(self.year, self.month, self.day)
            .ok_or("no such calendar date")?;
        if self.hour > 23 || self.minute > 59 || self.second > 59 {
            return Err("no such time of day");
        }
        let (west, offset_hours, offset_minutes) = self.offset;
        if offset_hours > 23 || offset_minutes > 59 {
            return Err("timezone offset out of range");
        }
        let offset_micros = i64::from(offset_hours * 60 + offset_minutes) * 60_000_000;
        let time = NaiveTime::from_hms_nano_opt(self.hour, self.minute, self.second, self.nanos)
            .ok_or("no such time of day")?;
        let local = NaiveDateTime::new(date, time).and_utc().timestamp_micros();
        let utc = if west {
            local + offset_micros
        } else {
            local - offset_micros
        };
        if !(MIN_MICROS..=MAX_MICROS).contains(&utc) {
            return Err("normalizes to a UTC year outside 0000-9999");
        }
        Ok(utc)
    }
}

/// Reads the ASCII digits `b[range]` as a number, or `None` if any is not a digit.
fn digits(b: &[u8], start: usize, len: usize) -> Option<u32> {
    let slice = b.get(start..start + len)?;
    slice.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn syntax(s: &str) -> Result<Fields, &'static str> {
    let b = s.as_bytes();
    if b.len() > MAX_LEN {
        return Err("longer than 64 characters");
    }
    const SHAPE: &str = "must look like YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)";
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(SHAPE);
    }
    let year = digits(b, 0, 4).ok_or(SHAPE)?;
    let month = digits(b, 5, 2).ok_or(SHAPE)?;
    let day = digits(b, 8, 2).ok_or(SHAPE)?;
    let hour = digits(b, 11, 2).ok_or(SHAPE)?;
    let minute = digits(b, 14, 2).ok_or(SHAPE)?;
    let second = digits(b, 17, 2).ok_or(SHAPE)?;

    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let count = i - start;
        if count == 0 || count > MAX_FRACTION_DIGITS {
            return Err("fraction of a second must have 1 to 20 digits");
        }
        // The first 9 digits, padded with zeros: nanoseconds.
        let nine = count.min(9);
        nanos = digits(b, start, nine).ok_or(SHAPE)? * 10u32.pow((9 - nine) as u32);
    }

    let offset = match &b[i..] {
        b"Z" => (false, 0, 0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(b, i + 1, 2).ok_or(SHAPE)?;
            let minutes = digits(b, i + 4, 2).ok_or(SHAPE)?;
            if *sign == b'-' && hours == 0 && minutes == 0 {
                return Err("timezone -00:00 is not allowed");
            }
            (*sign == b'-', hours, minutes)
        }
        _ => return Err("timezone must be Z, +HH:MM or -HH:MM"),
    };

    Ok(Fields {
        // Four digits, so the cast cannot wrap.
        year: year as i32,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text held inline (up to 30 bytes) and shared (longer) reads back as given, and
    /// equality, order and hash do not depend on where it is held.
    #[test]
    fn text_inline_or_shared_reads_back() {
        let inline = "1985-04-12T23:20:50.123456Z";
        let long = "1985-04-12T23:20:50.12345678901234567890+00:00";
        let boundary = "1985-04-12T23:20:50.12345678Z"; // 29 bytes
        let just_over = "1985-04-12T23:20:50.1234567890Z"; // 31 bytes
        for s in [inline, long, boundary, just_over] {
            let dt = Datetime::parse(s).unwrap();
            assert_eq!(dt.as_str(), s);
            assert_eq!(dt.clone().into_string(), s);
            assert_eq!(format!("{dt}"), s);
            assert_eq!(
                serde_json::from_str::<Datetime>(&serde_json::to_string(&dt).unwrap()).unwrap(),
                dt
            );
        }
        assert!(matches!(
            Datetime::parse(inline).unwrap().raw,
            Text::Inline { .. }
        ));
        assert!(matches!(
            Datetime::parse(long).unwrap().raw,
            Text::Shared(_)
        ));
        let a = Datetime::parse("1985-04-12T23:20:50.1234560000000000000Z").unwrap();
        let b = Datetime::parse("1985-04-12T23:20:50.123456Z").unwrap();
        assert_eq!(a.to_unix_micros(), b.to_unix_micros());
        assert_ne!(a, b);
        assert_eq!(a.cmp(&b), a.as_str().cmp(b.as_str()));
    }

    #[test]
    fn parses_to_micros() {
        let dt = Datetime::parse("1985-04-12T23:20:50.123Z").unwrap();
        assert_eq!(dt.to_unix_micros(), 482_196_050_123_000);
        assert_eq!(dt.as_str(), "1985-04-12T23:20:50.123Z");
        let offset = Datetime::parse("1985-04-12T16:20:50.123-07:00").unwrap();
        assert_eq!(offset.to_unix_micros(), dt.to_unix_micros());
        assert_ne!(offset, dt);
        let fine = Datetime::parse("1985-04-12T23:20:50.1234567891Z").unwrap();
        assert_eq!(fine.to_unix_micros(), 482_196_050_123_456);
        let plain = Datetime::parse("1970-01-01T00:00:00Z").unwrap();
        assert_eq!(plain.to_unix_micros(), 0);
        let min = Datetime::parse("0000-01-01T00:00:00.000Z").unwrap();
        assert_eq!(min.to_unix_micros(), MIN_MICROS);
        let max = Datetime::parse("9999-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(max.to_unix_micros(), MAX_MICROS);
    }

    #[test]
    fn rejects_semantic_errors() {
        for bad in [
            "1985-02-29T00:00:00Z",
            "1985-04-12T24:00:00Z",
            "1985-04-12T23:59:60Z",
            "1985-04-12T23:20:50+24:00",
            "1985-04-12T23:20:50+01:60",
            "9999-12-31T23:30:00-01:00",
        ] {
            assert!(Datetime::is_valid_syntax(bad), "{bad}");
            assert!(Datetime::parse(bad).is_err(), "{bad}");
        }
        assert!(Datetime::parse("1984-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn from_unix_micros_renders_six_digits() {
        assert_eq!(
            Datetime::from_unix_micros(0).as_str(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Datetime::from_unix_micros(482_196_050_123_456).as_str(),
            "1985-04-12T23:20:50.123456Z"
        );
        assert_eq!(
            Datetime::from_unix_micros(-1).as_str(),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            Datetime::from_unix_micros(i64::MIN).as_str(),
            "0000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Datetime::from_unix_micros(i64::MAX).as_str(),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn orders_chronologically() {
        let early = Datetime::parse("1985-04-12T23:00:00+05:00").unwrap();
        let late = Datetime::parse("1985-04-12T20:00:00Z").unwrap();
        assert!(early < late);
        assert!(early.as_str() > late.as_str());
    }

    #[test]
    fn serde_is_a_plain_string() {
        let dt = Datetime::parse("1985-04-12T23:20:50.123Z").unwrap();
        let json = serde_json::to_string(&dt).unwrap();
        assert_eq!(json, r#""1985-04-12T23:20:50.123Z""#);
        assert_eq!(serde_json::from_str::<Datetime>(&json).unwrap(), dt);
        assert!(serde_json::from_str::<Datetime>(r#""1985-13-12T23:20:50Z""#).is_err());
    }

    proptest! {
        #[test]
        fn micros_round_trip(micros in MIN_MICROS..=MAX_MICROS) {
            let dt = Datetime::from_unix_micros(micros);
            prop_assert_eq!(dt.as_str().len(), 27);
            prop_assert_eq!(dt.to_unix_micros(), micros);
            prop_assert_eq!(Datetime::parse(dt.as_str()).unwrap(), dt);
        }

        #[test]
        fn string_order_matches_for_canonical_form(a in MIN_MICROS..=MAX_MICROS, b in MIN_MICROS..=MAX_MICROS) {
            let (da, db) = (Datetime::from_unix_micros(a), Datetime::from_unix_micros(b));
            prop_assert_eq!(da.as_str().cmp(db.as_str()), a.cmp(&b));
            prop_assert_eq!(da.cmp(&db), a.cmp(&b));
        }
    }
}
