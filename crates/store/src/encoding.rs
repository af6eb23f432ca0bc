//! Byte encodings of the sled layout (see the crate docs): key components and head records.

use cid::Cid;
use guild_core::syntax::{Did, Tid};

use crate::{RepoHead, RepoKey, Space, StoreError};

/// Ends a key component. Sorts before every byte that can continue one (`0x00 0xFF` or any
/// non-zero byte), so the encoding keeps byte order and no component's encoding is a prefix of
/// another's.
const END: [u8; 2] = [0x00, 0x01];
/// Just after [`END`]: `component ‖ AFTER_END` is an exclusive upper bound for every key that
/// continues after `component ‖ END`.
const AFTER_END: [u8; 2] = [0x00, 0x02];
/// A `0x00` byte inside a component.
const ESCAPED_ZERO: [u8; 2] = [0x00, 0xFF];

/// Version byte of the head record format.
const HEAD_FORMAT: u8 = 1;

/// Appends one component: its bytes with `0x00` escaped, then the terminator.
fn push_component(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&ESCAPED_ZERO);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&END);
}

/// Reads one component from the start of `bytes`; returns it and the rest.
fn read_component(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match bytes.get(i) {
            None => return Err("unterminated key component".into()),
            Some(0) => match bytes.get(i + 1) {
                Some(0x01) => break,
                Some(0xFF) => {
                    out.push(0);
                    i += 2;
                }
                _ => return Err(format!("bad escape at byte {i} of a key component")),
            },
            Some(&b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).map_err(|e| format!("key component is not UTF-8: {e}"))?;
    Ok((s, &bytes[i + 2..]))
}

/// `component(did) ‖ component(space)`: the `heads` key and the prefix of the repo's index.
/// The space is written as its string form (`public` or the collective's CID string).
pub(crate) fn repo_key(repo: &RepoKey) -> Vec<u8> {
    let space = repo.space.to_string();
    let mut out = Vec::with_capacity(repo.did.as_str().len() + space.len() + 4);
    push_component(&mut out, repo.did.as_str());
    push_component(&mut out, &space);
    out
}

/// Decodes a `heads` key.
pub(crate) fn decode_repo_key(bytes: &[u8]) -> Result<RepoKey, StoreError> {
    let fail = |reason: String| StoreError(format!("heads key {}: {reason}", hex(bytes)));
    let (did, rest) = read_component(bytes).map_err(fail)?;
    let (space, rest) = read_component(rest).map_err(fail)?;
    if !rest.is_empty() {
        return Err(fail(format!("{} trailing bytes", rest.len())));
    }
    let did = Did::parse(&did).map_err(|e| fail(e.to_string()))?;
    let space = Space::parse(&space).map_err(|e| fail(e.to_string()))?;
    Ok(RepoKey { did, space })
}

/// The prefix of every index key of one collection in a repo.
pub(crate) fn collection_prefix(repo: &RepoKey, collection: &str) -> Vec<u8> {
    let mut out = repo_key(repo);
    push_component(&mut out, collection);
    out
}

/// The exclusive upper bound of the keys starting with `collection_prefix(..)`.
pub(crate) fn collection_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    let n = end.len();
    // The prefix ends with END; bump its last byte.
    end[n - 2..].copy_from_slice(&AFTER_END);
    end
}

/// The index key of `collection/rkey` in a repo.
pub(crate) fn index_key(repo: &RepoKey, collection: &str, rkey: &str) -> Vec<u8> {
    let mut out = collection_prefix(repo, collection);
    out.extend_from_slice(rkey.as_bytes());
    out
}

/// Splits the part of an index key after the repo prefix into collection and rkey.
pub(crate) fn decode_index_suffix(suffix: &[u8]) -> Result<(String, String), StoreError> {
    let fail = |reason: String| StoreError(format!("index key suffix {}: {reason}", hex(suffix)));
    let (collection, rest) = read_component(suffix).map_err(fail)?;
    let rkey =
        String::from_utf8(rest.to_vec()).map_err(|e| fail(format!("rkey is not UTF-8: {e}")))?;
    Ok((collection, rkey))
}

/// Decodes an rkey: the part of an index key after its collection prefix.
pub(crate) fn decode_rkey(repo: &RepoKey, rest: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(rest.to_vec()).map_err(|e| {
        StoreError(format!(
            "index of repo {repo}: rkey {} is not UTF-8: {e}",
            hex(rest)
        ))
    })
}

/// Decodes a CID stored as an index value or block key.
pub(crate) fn decode_cid(bytes: &[u8], what: impl FnOnce() -> String) -> Result<Cid, StoreError> {
    Cid::try_from(bytes).map_err(|e| StoreError(format!("{}: bad CID {}: {e}", what(), hex(bytes))))
}

/// Encodes a head record with the repo's record count.
pub(crate) fn encode_head(head: &RepoHead, count: u64) -> Result<Vec<u8>, StoreError> {
    let rev = head.rev.as_str().as_bytes();
    let commit = head.commit.to_bytes();
    let data = head.data.to_bytes();
    let mut out = Vec::with_capacity(12 + rev.len() + commit.len() + data.len());
    out.push(HEAD_FORMAT);
    out.extend_from_slice(&count.to_be_bytes());
    for part in [rev, &commit, &data] {
        let len = u8::try_from(part.len())
            .map_err(|_| StoreError(format!("head field of {} bytes is too long", part.len())))?;
        out.push(len);
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Decodes a head record into the head and the repo's record count.
pub(crate) fn decode_head(repo: &RepoKey, bytes: &[u8]) -> Result<(RepoHead, u64), StoreError> {
    let fail = |at: usize, reason: &str| {
        StoreError(format!(
            "head record of repo {repo} is corrupt at byte {at}: {reason}"
        ))
    };
    match bytes.first() {
        Some(&HEAD_FORMAT) => {}
        Some(v) => return Err(fail(0, &format!("unknown format {v}"))),
        None => return Err(fail(0, "empty")),
    }
    let count = bytes
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| fail(1, "truncated record count"))?;
    let mut at = 9;
    let mut field = |name: &str| -> Result<(usize, &[u8]), StoreError> {
        let start = at;
        let len = usize::from(
            *bytes
                .get(at)
                .ok_or_else(|| fail(at, &format!("missing {name}")))?,
        );
        let part = bytes
            .get(at + 1..at + 1 + len)
            .ok_or_else(|| fail(at, &format!("truncated {name}")))?;
        at += 1 + len;
        Ok((start, part))
    };
    let (rev_at, rev) = field("rev")?;
    let (commit_at, commit) = field("commit CID")?;
    let (data_at, data) = field("root CID")?;
    if at != bytes.len() {
        return Err(fail(at, "trailing bytes"));
    }
    let rev = std::str::from_utf8(rev)
        .ok()
        .and_then(|s| Tid::parse(s).ok())
        .ok_or_else(|| fail(rev_at, "rev is not a TID"))?;
    let commit = Cid::try_from(commit).map_err(|e| fail(commit_at, &format!("commit CID: {e}")))?;
    let data = Cid::try_from(data).map_err(|e| fail(data_at, &format!("root CID: {e}")))?;
    Ok((RepoHead { commit, rev, data }, count))
}

/// Lowercase hex of at most 64 bytes (for error messages).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 64 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        guild_core::cids::cid_for_raw(&[n])
    }

    #[test]
    fn components_round_trip_and_keep_order() {
        let strings = [
            "",
            "a",
            "a\0",
            "a\0b",
            "a\u{1}",
            "ab",
            "b",
            "did:plc:x",
            "\0",
            "\0\0",
        ];
        let mut encoded: Vec<(Vec<u8>, &str)> = strings
            .iter()
            .map(|s| {
                let mut out = Vec::new();
                push_component(&mut out, s);
                (out, *s)
            })
            .collect();
        for (e, s) in &encoded {
            let (back, rest) = read_component(e).unwrap();
            assert_eq!(&back, s);
            assert!(rest.is_empty());
        }
        encoded.sort();
        let mut sorted = strings.to_vec();
        sorted.sort();
        assert_eq!(encoded.iter().map(|(_, s)| *s).collect::<Vec<_>>(), sorted);
        // No encoding is a prefix of another's.
        for (a, sa) in &encoded {
            for (b, sb) in &encoded {
                if sa != sb {
                    assert!(!b.starts_with(a), "{sa:?} / {sb:?}");
                }
            }
        }
    }

    fn did(s: &str) -> Did {
        Did::parse(s).unwrap()
    }

    #[test]
    fn repo_keys_round_trip() {
        for repo in [
            RepoKey::public(did("did:key:z6Mk")),
            RepoKey::collective(did("did:plc:a"), cid(1)),
        ] {
            assert_eq!(decode_repo_key(&repo_key(&repo)).unwrap(), repo);
        }
        assert!(decode_repo_key(b"did\0\x01").is_err());
        assert!(decode_repo_key(b"did\0\x01space\0\x01x").is_err());
        assert!(decode_repo_key(b"did\0\x05").is_err());
    }

    #[test]
    fn repo_keys_are_the_did_and_space_strings() {
        // The layout of version 1: the space is `public` or the collective's CID string.
        let public = RepoKey::public(did("did:key:z6Mk"));
        assert_eq!(repo_key(&public), b"did:key:z6Mk\0\x01public\0\x01");
        let id = cid(1);
        let space = RepoKey::collective(did("did:key:z6Mk"), id);
        let mut want = b"did:key:z6Mk\0\x01".to_vec();
        want.extend_from_slice(id.to_string().as_bytes());
        want.extend_from_slice(b"\0\x01");
        assert_eq!(repo_key(&space), want);
    }

    #[test]
    fn a_stored_key_that_is_no_repo_key_is_an_error() {
        let mut key = Vec::new();
        push_component(&mut key, "did:key:z6Mk");
        let with_space = |space: &str| {
            let mut k = key.clone();
            push_component(&mut k, space);
            k
        };
        assert!(decode_repo_key(&with_space("public")).is_ok());
        for space in ["", "pub", "publicx", "collective-1", "public\0"] {
            let err = decode_repo_key(&with_space(space)).unwrap_err();
            assert!(err.0.contains("space"), "{err}");
        }
        // A CID in another base than the one written would name another repo.
        let base58 = cid(1)
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        assert!(decode_repo_key(&with_space(&base58)).is_err());
        let mut bad_did = Vec::new();
        push_component(&mut bad_did, "alice");
        push_component(&mut bad_did, "public");
        let err = decode_repo_key(&bad_did).unwrap_err();
        assert!(err.0.contains("did"), "{err}");
    }

    #[test]
    fn collection_bounds() {
        let repo = RepoKey::public(did("did:x:y"));
        let p = collection_prefix(&repo, "app.a");
        let end = collection_end(&p);
        assert!(index_key(&repo, "app.a", "zzz\u{7f}") < end);
        assert!(index_key(&repo, "app.ab", "") > end);
        assert!(index_key(&repo, "app.a\0", "") > end);
        let (c, r) =
            decode_index_suffix(&index_key(&repo, "app.a", "k1")[repo_key(&repo).len()..]).unwrap();
        assert_eq!((c.as_str(), r.as_str()), ("app.a", "k1"));
    }

    #[test]
    fn head_records_round_trip_and_corruption_is_an_error() {
        let repo = RepoKey::public(did("did:x:y"));
        let head = RepoHead {
            commit: cid(1),
            rev: Tid::from_parts(1_700_000_000_000_000, 3),
            data: cid(2),
        };
        let bytes = encode_head(&head, 42).unwrap();
        assert_eq!(decode_head(&repo, &bytes).unwrap(), (head, 42));
        for n in 0..bytes.len() {
            let err = decode_head(&repo, &bytes[..n]).unwrap_err();
            assert!(err.0.contains("did:x:y"), "{err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_head(&repo, &longer).is_err());
        let mut bad_rev = bytes.clone();
        bad_rev[10] = b'!';
        assert!(decode_head(&repo, &bad_rev).unwrap_err().0.contains("TID"));
        let mut bad_format = bytes;
        bad_format[0] = 9;
        assert!(decode_head(&repo, &bad_format).is_err());
    }
}
