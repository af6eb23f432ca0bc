//! The AT Protocol interop syntax fixtures (`fixtures/atproto-interop/syntax/`): every line of
//! a `*_valid.txt` file must be accepted, every line of a `*_invalid.txt` file rejected.
//!
//! Lines starting with `#` are comments and empty lines are skipped; lines are not trimmed
//! (split on `\n` only, not `str::lines`, which drops a trailing `\r`), because some fixtures
//! test leading or trailing whitespace.

use guild_core::syntax::{
    AtIdentifier, AtUri, Datetime, Did, Handle, Language, Nsid, RecordKey, Tid, parse_cid_str,
    validate_cid_str, validate_uri,
};

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/atproto-interop/syntax/",
                $name
            )),
        )
    };
}

/// Whether `line` is accepted as a `kind`. Valid identifiers must also display as the input.
fn accepts(kind: &str, line: &str) -> Result<(), String> {
    fn shown<T: ToString>(line: &str, value: T) -> Result<(), String> {
        let shown = value.to_string();
        if shown == line {
            Ok(())
        } else {
            Err(format!("accepted but displays as {shown:?}"))
        }
    }
    fn err<T>(result: Result<T, guild_core::syntax::SyntaxError>) -> Result<T, String> {
        result.map_err(|e| e.to_string())
    }
    match kind {
        "did" => shown(line, err(Did::parse(line))?),
        "handle" => shown(line, err(Handle::parse(line))?),
        "nsid" => shown(line, err(Nsid::parse(line))?),
        "tid" => shown(line, err(Tid::parse(line))?),
        "recordkey" => shown(line, err(RecordKey::parse(line))?),
        "aturi" => shown(line, err(AtUri::parse(line))?),
        "atidentifier" => shown(line, err(AtIdentifier::parse(line))?),
        "datetime" => shown(line, err(Datetime::parse(line))?),
        "datetime-syntax" => match Datetime::is_valid_syntax(line) {
            true => Ok(()),
            false => Err("rejected by is_valid_syntax".into()),
        },
        "language" => shown(line, err(Language::parse(line))?),
        "language-syntax" => match Language::is_valid_syntax(line) {
            true => Ok(()),
            false => Err("rejected by is_valid_syntax".into()),
        },
        "cid" => err(validate_cid_str(line)),
        "uri" => err(validate_uri(line)),
        other => Err(format!("no checker for {other}")),
    }
}

/// `None` if `line` is judged as expected, else a description of the mismatch.
fn check(kind: &str, line: &str, expect_valid: bool) -> Option<String> {
    let shown: String = if line.len() > 80 {
        format!(
            "{:?}... ({} bytes)",
            &line[..line.floor_char_boundary(80)],
            line.len()
        )
    } else {
        format!("{line:?}")
    };
    match (accepts(kind, line), expect_valid) {
        (Ok(()), true) | (Err(_), false) => None,
        (Err(why), true) => Some(format!("{kind}: {shown} should be valid: {why}")),
        (Ok(()), false) => Some(format!("{kind}: {shown} should be invalid")),
    }
}

/// The fixture lines of a file: not comments, not empty, not trimmed.
fn fixture_lines(text: &str) -> Vec<&str> {
    text.split('\n')
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// Checks every line of `file` as `kind`; panics listing every mismatch.
fn run((file, text): (&str, &str), kind: &str, expect_valid: bool) {
    let lines = fixture_lines(text);
    assert!(!lines.is_empty(), "{file}: no fixture lines");
    let failures: Vec<String> = lines
        .iter()
        .filter_map(|line| check(kind, line, expect_valid))
        .collect();
    assert!(
        failures.is_empty(),
        "{file}: {} of {} lines judged wrongly:\n  {}",
        failures.len(),
        lines.len(),
        failures.join("\n  ")
    );
    println!("{file}: {} lines pass as {kind}", lines.len());
}

#[test]
fn did() {
    run(fixture!("did_syntax_valid.txt"), "did", true);
    run(fixture!("did_syntax_invalid.txt"), "did", false);
}

#[test]
fn handle() {
    run(fixture!("handle_syntax_valid.txt"), "handle", true);
    run(fixture!("handle_syntax_invalid.txt"), "handle", false);
}

#[test]
fn nsid() {
    run(fixture!("nsid_syntax_valid.txt"), "nsid", true);
    run(fixture!("nsid_syntax_invalid.txt"), "nsid", false);
}

#[test]
fn tid() {
    run(fixture!("tid_syntax_valid.txt"), "tid", true);
    run(fixture!("tid_syntax_invalid.txt"), "tid", false);
}

#[test]
fn recordkey() {
    run(fixture!("recordkey_syntax_valid.txt"), "recordkey", true);
    run(fixture!("recordkey_syntax_invalid.txt"), "recordkey", false);
}

#[test]
fn aturi() {
    run(fixture!("aturi_syntax_valid.txt"), "aturi", true);
    run(fixture!("aturi_syntax_invalid.txt"), "aturi", false);
}

#[test]
fn atidentifier() {
    run(
        fixture!("atidentifier_syntax_valid.txt"),
        "atidentifier",
        true,
    );
    run(
        fixture!("atidentifier_syntax_invalid.txt"),
        "atidentifier",
        false,
    );
}

#[test]
fn datetime() {
    run(fixture!("datetime_syntax_valid.txt"), "datetime", true);
    run(
        fixture!("datetime_syntax_valid.txt"),
        "datetime-syntax",
        true,
    );
    run(fixture!("datetime_syntax_invalid.txt"), "datetime", false);
    run(
        fixture!("datetime_syntax_invalid.txt"),
        "datetime-syntax",
        false,
    );
    // Well-formed, but not real instants.
    run(
        fixture!("datetime_parse_invalid.txt"),
        "datetime-syntax",
        true,
    );
    run(fixture!("datetime_parse_invalid.txt"), "datetime", false);
}

#[test]
fn language() {
    run(fixture!("language_syntax_valid.txt"), "language", true);
    run(
        fixture!("language_syntax_valid.txt"),
        "language-syntax",
        true,
    );
    run(fixture!("language_syntax_invalid.txt"), "language", false);
    run(
        fixture!("language_syntax_invalid.txt"),
        "language-syntax",
        false,
    );
    // Well-formed, but not valid: a repeated variant or extension singleton.
    run(
        fixture!("language_parse_invalid.txt"),
        "language-syntax",
        true,
    );
    run(fixture!("language_parse_invalid.txt"), "language", false);
}

#[test]
fn cid() {
    run(fixture!("cid_syntax_valid.txt"), "cid", true);
    run(fixture!("cid_syntax_invalid.txt"), "cid", false);
}

#[test]
fn uri() {
    run(fixture!("uri_syntax_valid.txt"), "uri", true);
    run(fixture!("uri_syntax_invalid.txt"), "uri", false);
}

/// The typed parts of AT-URIs agree with the string, for every valid fixture line.
#[test]
fn aturi_parts_rebuild_the_uri() {
    let (_, text) = fixture!("aturi_syntax_valid.txt");
    for line in fixture_lines(text) {
        let uri = AtUri::parse(line).unwrap();
        let rebuilt = AtUri::new(
            uri.authority().clone(),
            uri.collection().cloned(),
            uri.rkey().cloned(),
        )
        .unwrap();
        assert_eq!(rebuilt, uri, "{line}");
    }
}

/// The CID fixtures are syntax-only: three "contrived" valid lines are not decodable CIDs.
/// `parse_cid_str` decodes the real ones.
#[test]
fn cid_fixtures_that_decode() {
    let (_, text) = fixture!("cid_syntax_valid.txt");
    let undecodable: Vec<&str> = fixture_lines(text)
        .into_iter()
        .filter(|l| parse_cid_str(l).is_err())
        .collect();
    assert_eq!(
        undecodable,
        [
            "mBcDxtdWx0aWhhc2g+",
            "z7x3CtScH765HvShXT",
            "7134036155352661643226414134664076"
        ]
    );
}

/// The helper itself reports both kinds of mismatch.
#[test]
fn check_reports_mismatches() {
    assert_eq!(check("did", "did:plc:abc", true), None);
    assert_eq!(check("did", "did:PLC:abc", false), None);
    let wrongly_valid = check("did", "did:plc:abc", false).unwrap();
    assert!(
        wrongly_valid.contains("should be invalid"),
        "{wrongly_valid}"
    );
    let wrongly_invalid = check("did", "did:PLC:abc", true).unwrap();
    assert!(
        wrongly_invalid.contains("method must be lowercase"),
        "{wrongly_invalid}"
    );
}
