//! AT-URIs: `at://` links to accounts, collections and records (atproto.com/specs/at-uri-scheme).

use serde::{Deserialize, Serialize};

use super::{AtIdentifier, Nsid, RecordKey, SyntaxError, string_conversions};

/// The longest AT-URI, in bytes (8 KB).
const MAX_LEN: usize = 8 * 1024;

/// An AT-URI in the restricted form the lexicon `at-uri` format uses:
/// `at://AUTHORITY[/COLLECTION[/RKEY]]`, such as
/// `at://did:plc:abc/coop.guild.data.text/3jzfcijpj2z2a`.
///
/// The authority is a DID or handle, the collection an NSID, the record key a
/// [`RecordKey`]; there is no trailing slash, query or fragment, and the whole is at most
/// 8 KB. The string is kept as given for `Display` and serialization.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AtUri {
    // `raw` first, so that the derived order is the order of the strings.
    raw: String,
    authority: AtIdentifier,
    collection: Option<Nsid>,
    rkey: Option<RecordKey>,
}

impl AtUri {
    /// Parses and validates an AT-URI.
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        parse_parts(s).map_err(|reason| SyntaxError::new("at-uri", s, reason))
    }

    /// Builds the AT-URI of an account, a collection or a record. A record key needs a
    /// collection: `rkey` without `collection` is an error.
    pub fn new(
        authority: AtIdentifier,
        collection: Option<Nsid>,
        rkey: Option<RecordKey>,
    ) -> Result<Self, SyntaxError> {
        let mut raw = format!("at://{}", authority.as_str());
        if let Some(collection) = &collection {
            raw.push('/');
            raw.push_str(collection.as_str());
        }
        if let Some(rkey) = &rkey {
            if collection.is_none() {
                return Err(SyntaxError::new(
                    "at-uri",
                    &raw,
                    "a record key needs a collection",
                ));
            }
            raw.push('/');
            raw.push_str(rkey.as_str());
        }
        // Bounded by the parts' limits: 5 + 2048 + 1 + 317 + 1 + 512 < 8 KB.
        Ok(AtUri {
            raw,
            authority,
            collection,
            rkey,
        })
    }

    /// The AT-URI of a record: `at://authority/collection/rkey`.
    pub fn record(authority: AtIdentifier, collection: Nsid, rkey: RecordKey) -> Self {
        let raw = format!("at://{}/{}/{}", authority.as_str(), collection, rkey);
        AtUri {
            raw,
            authority,
            collection: Some(collection),
            rkey: Some(rkey),
        }
    }

    /// The AT-URI as a string slice.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The AT-URI as an owned string.
    pub fn into_string(self) -> String {
        self.raw
    }

    /// The account: a DID or a handle.
    pub fn authority(&self) -> &AtIdentifier {
        &self.authority
    }

    /// The collection, if the URI names one.
    pub fn collection(&self) -> Option<&Nsid> {
        self.collection.as_ref()
    }

    /// The record key, if the URI names a record.
    pub fn rkey(&self) -> Option<&RecordKey> {
        self.rkey.as_ref()
    }
}

string_conversions!(AtUri);

fn parse_parts(s: &str) -> Result<AtUri, String> {
    if s.len() > MAX_LEN {
        return Err("longer than 8 KB".into());
    }
    let rest = s.strip_prefix("at://").ok_or("must start with \"at://\"")?;
    if rest.contains(['?', '#']) {
        return Err("query and fragment are not allowed".into());
    }
    let mut segments = rest.split('/');
    let authority = segments.next().unwrap_or_default();
    if authority.is_empty() {
        return Err("authority is empty".into());
    }
    let authority = AtIdentifier::parse(authority)
        .map_err(|err| format!("authority is not a DID or handle: {}", err.reason))?;
    let collection = match segments.next() {
        None => None,
        Some("") => return Err("empty collection (no trailing slash allowed)".into()),
        Some(segment) => Some(
            Nsid::parse(segment)
                .map_err(|err| format!("collection is not an NSID: {}", err.reason))?,
        ),
    };
    let rkey = match segments.next() {
        None => None,
        Some("") => return Err("empty record key (no trailing slash allowed)".into()),
        Some(segment) => Some(
            RecordKey::parse(segment)
                .map_err(|err| format!("invalid record key: {}", err.reason))?,
        ),
    };
    if segments.next().is_some() {
        return Err("at most two path segments (collection and record key)".into());
    }
    Ok(AtUri {
        raw: s.to_owned(),
        authority,
        collection,
        rkey,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{Did, Handle};

    #[test]
    fn parts() {
        let uri = AtUri::parse("at://did:plc:abc/coop.guild.data.text/3jzfcijpj2z2a").unwrap();
        assert_eq!(uri.authority().as_str(), "did:plc:abc");
        assert!(uri.authority().as_did().is_some());
        assert_eq!(
            uri.collection().map(Nsid::as_str),
            Some("coop.guild.data.text")
        );
        assert_eq!(uri.rkey().map(RecordKey::as_str), Some("3jzfcijpj2z2a"));

        let account = AtUri::parse("at://alice.test").unwrap();
        assert!(account.authority().as_handle().is_some());
        assert!(account.collection().is_none() && account.rkey().is_none());

        let collection = AtUri::parse("at://alice.test/coop.guild.data.text").unwrap();
        assert!(collection.collection().is_some() && collection.rkey().is_none());
    }

    #[test]
    fn new_matches_parse() {
        let did = AtIdentifier::from(Did::parse("did:plc:abc").unwrap());
        let nsid = Nsid::parse("coop.guild.data.text").unwrap();
        let rkey = RecordKey::parse("self").unwrap();
        let uri = AtUri::new(did.clone(), Some(nsid.clone()), Some(rkey.clone())).unwrap();
        assert_eq!(uri.as_str(), "at://did:plc:abc/coop.guild.data.text/self");
        assert_eq!(AtUri::parse(uri.as_str()).unwrap(), uri);
        assert_eq!(AtUri::record(did.clone(), nsid.clone(), rkey.clone()), uri);

        let handle = AtIdentifier::from(Handle::parse("alice.test").unwrap());
        let account = AtUri::new(handle.clone(), None, None).unwrap();
        assert_eq!(account, AtUri::parse("at://alice.test").unwrap());
        let collection = AtUri::new(handle.clone(), Some(nsid), None).unwrap();
        assert_eq!(
            collection.to_string(),
            "at://alice.test/coop.guild.data.text"
        );

        let err = AtUri::new(handle, None, Some(rkey)).unwrap_err();
        assert_eq!(err.reason, "a record key needs a collection");
    }

    #[test]
    fn errors_name_the_part() {
        let err = AtUri::parse("at://did:plc:abc/not_an_nsid").unwrap_err();
        assert_eq!(err.kind, "at-uri");
        assert!(err.reason.starts_with("collection is not an NSID"), "{err}");
        assert!(AtUri::parse("at://did:plc:abc#/frag").is_err());
        assert!(AtUri::parse("at://did:plc:abc?x=1").is_err());
    }

    #[test]
    fn serde_is_a_plain_string() {
        let uri = AtUri::parse("at://alice.test/coop.guild.data.text/self").unwrap();
        let json = serde_json::to_string(&uri).unwrap();
        assert_eq!(json, r#""at://alice.test/coop.guild.data.text/self""#);
        assert_eq!(serde_json::from_str::<AtUri>(&json).unwrap(), uri);
        assert!(serde_json::from_str::<AtUri>(r#""at://alice.test/""#).is_err());
    }
}
