//! The Lexicon v1 document model, and its parser.
//!
//! A [`LexiconDoc`] is parsed from JSON ([`LexiconDoc::parse`], [`LexiconDoc::from_json`]) and
//! checked on the way against every rule that can be checked inside one document: the
//! `lexicon` version, the NSID, which types may be named definitions and which only `main`,
//! the shape of every type, that `required` and `nullable` name real properties, that ranges
//! are not inverted and that `default`, `const` and `enum` values satisfy their own
//! constraints, and the syntax of every reference. Unknown keys are refused, so that a typo
//! such as `maxLenght` cannot silently switch a constraint off. Whether references resolve is a
//! question about a set of documents, answered by [`crate::Registry::check`].
//!
//! References are resolved against the document's own id while parsing: `#name` becomes
//! `<id>#name`, and `nsid#main` and `nsid` are the same [`DefRef`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use guild_core::syntax::{Nsid, RecordKey};
use serde_json::{Map, Value};

use crate::validate::{self, Rule};

/// The deepest nesting of inline types a document may have (objects in arrays in objects…).
/// serde_json already stops at 128 levels of JSON; a type needs at least two.
const MAX_SCHEMA_DEPTH: usize = 48;

/// Why a lexicon document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a valid Lexicon v1 document.
    #[error("{path}: {reason}")]
    Schema {
        /// JSON-pointer path into the document (`/defs/main/record/properties/title`).
        path: String,
        /// The rule that was broken.
        reason: String,
    },
}

fn err<T>(path: &str, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Schema {
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        reason: reason.into(),
    })
}

/// A parsed Lexicon v1 document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexiconDoc {
    /// The document's NSID.
    pub id: Nsid,
    /// The optional revision number.
    pub revision: Option<u64>,
    /// The document's description.
    pub description: Option<String>,
    /// The named definitions; `main` is the primary one.
    pub defs: BTreeMap<String, Def>,
}

impl LexiconDoc {
    /// Parses a document from JSON text.
    pub fn parse(text: &str) -> Result<LexiconDoc, ParseError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
        LexiconDoc::from_json(&value)
    }

    /// Parses a document from a JSON value.
    pub fn from_json(value: &Value) -> Result<LexiconDoc, ParseError> {
        parse_doc(value)
    }

    /// The `main` definition, if there is one.
    pub fn main(&self) -> Option<&Def> {
        self.defs.get("main")
    }

    /// The kind of the `main` definition (`"record"`, `"query"`, …), or `"defs"` for a document
    /// with no `main` (a set of shared definitions).
    pub fn kind(&self) -> &'static str {
        self.main().map_or("defs", Def::kind)
    }

    /// The description to show for the document: that of `main`, else the document's own.
    pub fn summary(&self) -> Option<&str> {
        self.main()
            .and_then(Def::description)
            .or(self.description.as_deref())
    }
}

/// A named definition in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Def {
    /// A repository record type (only as `main`).
    Record(RecordDef),
    /// An XRPC query, served over HTTP GET (only as `main`).
    Query(XrpcDef),
    /// An XRPC procedure, served over HTTP POST (only as `main`).
    Procedure(XrpcDef),
    /// An event stream over WebSocket (only as `main`).
    Subscription(SubscriptionDef),
    /// A bundle of OAuth permissions (only as `main`).
    PermissionSet(PermissionSetDef),
    /// A named symbol with no data, used in `knownValues`.
    Token(TokenDef),
    /// A named object, array or primitive type (never `ref`, `union` or `unknown`).
    Type(Field),
}

impl Def {
    /// The definition's `type` as written in the document.
    pub fn kind(&self) -> &'static str {
        match self {
            Def::Record(_) => "record",
            Def::Query(_) => "query",
            Def::Procedure(_) => "procedure",
            Def::Subscription(_) => "subscription",
            Def::PermissionSet(_) => "permission-set",
            Def::Token(_) => "token",
            Def::Type(f) => f.kind(),
        }
    }

    /// The definition's description.
    pub fn description(&self) -> Option<&str> {
        match self {
            Def::Record(d) => d.description.as_deref(),
            Def::Query(d) | Def::Procedure(d) => d.description.as_deref(),
            Def::Subscription(d) => d.description.as_deref(),
            Def::PermissionSet(d) => d.description.as_deref().or(d.title.as_deref()),
            Def::Token(d) => d.description.as_deref(),
            Def::Type(f) => f.description(),
        }
    }
}

/// A record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDef {
    /// Description.
    pub description: Option<String>,
    /// Which record keys the collection uses.
    pub key: KeyType,
    /// The record's fields.
    pub record: ObjectSchema,
}

/// The record-key type of a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyType {
    /// A TID (`3jzfcijpj2z2a`).
    Tid,
    /// An NSID.
    Nsid,
    /// Exactly this key (`literal:self` gives `Literal("self")`).
    Literal(RecordKey),
    /// Any valid record key.
    Any,
}

impl KeyType {
    fn parse(s: &str) -> Option<KeyType> {
        match s {
            "tid" => Some(KeyType::Tid),
            "nsid" => Some(KeyType::Nsid),
            "any" => Some(KeyType::Any),
            _ => RecordKey::parse(s.strip_prefix("literal:")?)
                .ok()
                .map(KeyType::Literal),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Tid => f.write_str("tid"),
            KeyType::Nsid => f.write_str("nsid"),
            KeyType::Any => f.write_str("any"),
            KeyType::Literal(k) => write!(f, "literal:{k}"),
        }
    }
}

/// A query or procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XrpcDef {
    /// Description.
    pub description: Option<String>,
    /// The query-string parameters.
    pub parameters: Option<ParamsSchema>,
    /// The request body (procedures only).
    pub input: Option<Body>,
    /// The response body.
    pub output: Option<Body>,
    /// The named errors the endpoint may return.
    pub errors: Vec<ErrorDef>,
}

/// A subscription (event stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionDef {
    /// Description.
    pub description: Option<String>,
    /// The query-string parameters of the connection request.
    pub parameters: Option<ParamsSchema>,
    /// The messages the stream carries.
    pub message: Option<MessageSchema>,
    /// The named errors the stream may end with.
    pub errors: Vec<ErrorDef>,
}

/// The messages of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSchema {
    /// Description.
    pub description: Option<String>,
    /// The message schema: usually a union of the message types.
    pub schema: Field,
}

/// An XRPC request or response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Description.
    pub description: Option<String>,
    /// The MIME type of the body (`application/json` for data-model bodies).
    pub encoding: String,
    /// The body's schema (an object, a ref or a union), for data-model bodies.
    pub schema: Option<Field>,
}

/// A named XRPC error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDef {
    /// The error name (`FutureCursor`).
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// XRPC parameters: a flat object of booleans, integers, strings and arrays of those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsSchema {
    /// Description.
    pub description: Option<String>,
    /// The parameters that must be given.
    pub required: Vec<String>,
    /// The parameters.
    pub properties: BTreeMap<String, Field>,
}

/// A permission set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSetDef {
    /// The title shown to a user.
    pub title: Option<String>,
    /// Translated titles, by language tag.
    pub title_lang: BTreeMap<String, String>,
    /// A longer explanation shown to a user.
    pub detail: Option<String>,
    /// Translated details, by language tag.
    pub detail_lang: BTreeMap<String, String>,
    /// A description for developers.
    pub description: Option<String>,
    /// The permissions granted together.
    pub permissions: Vec<Permission>,
}

/// One permission of a permission set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Writes to repository collections.
    Repo {
        /// The collections (NSIDs, or `*`).
        collection: Vec<String>,
        /// The actions allowed (`create`, `update`, `delete`); empty means all.
        action: Vec<String>,
    },
    /// Calls to XRPC methods on a service.
    Rpc {
        /// The methods (NSIDs, or `*`).
        lxm: Vec<String>,
        /// The audience service (`*` or a DID with a service fragment).
        aud: Option<String>,
        /// Whether the audience is inherited from the request that included the set.
        inherit_aud: bool,
    },
}

/// A token: a named value with no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDef {
    /// Description.
    pub description: Option<String>,
}

/// A field type: what an object property, an array item or a named type may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `boolean`.
    Boolean(BooleanSchema),
    /// `integer` (64-bit signed).
    Integer(IntegerSchema),
    /// `string`.
    String(StringSchema),
    /// `bytes`.
    Bytes(BytesSchema),
    /// `cid-link`.
    CidLink(Described),
    /// `blob`.
    Blob(BlobSchema),
    /// `unknown`: any object.
    Unknown(Described),
    /// `array`.
    Array(ArraySchema),
    /// `object`.
    Object(ObjectSchema),
    /// `ref`: another definition.
    Ref(RefSchema),
    /// `union`: one of several object definitions, chosen by `$type`.
    Union(UnionSchema),
}

impl Field {
    /// The field's `type` as written in the document.
    pub fn kind(&self) -> &'static str {
        match self {
            Field::Boolean(_) => "boolean",
            Field::Integer(_) => "integer",
            Field::String(_) => "string",
            Field::Bytes(_) => "bytes",
            Field::CidLink(_) => "cid-link",
            Field::Blob(_) => "blob",
            Field::Unknown(_) => "unknown",
            Field::Array(_) => "array",
            Field::Object(_) => "object",
            Field::Ref(_) => "ref",
            Field::Union(_) => "union",
        }
    }

    /// The field's description.
    pub fn description(&self) -> Option<&str> {
        match self {
            Field::Boolean(s) => s.description.as_deref(),
            Field::Integer(s) => s.description.as_deref(),
            Field::String(s) => s.description.as_deref(),
            Field::Bytes(s) => s.description.as_deref(),
            Field::CidLink(s) | Field::Unknown(s) => s.description.as_deref(),
            Field::Blob(s) => s.description.as_deref(),
            Field::Array(s) => s.description.as_deref(),
            Field::Object(s) => s.description.as_deref(),
            Field::Ref(s) => s.description.as_deref(),
            Field::Union(s) => s.description.as_deref(),
        }
    }
}

/// A type with nothing but a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Description.
    pub description: Option<String>,
}

/// `boolean`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BooleanSchema {
    /// Description.
    pub description: Option<String>,
    /// The value assumed when absent.
    pub default: Option<bool>,
    /// The only value allowed.
    pub const_value: Option<bool>,
}

/// `integer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegerSchema {
    /// Description.
    pub description: Option<String>,
    /// The smallest value allowed.
    pub minimum: Option<i64>,
    /// The largest value allowed.
    pub maximum: Option<i64>,
    /// The only values allowed (closed set).
    pub enum_values: Option<Vec<i64>>,
    /// The value assumed when absent.
    pub default: Option<i64>,
    /// The only value allowed.
    pub const_value: Option<i64>,
}

/// `string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringSchema {
    /// Description.
    pub description: Option<String>,
    /// The string format, if any.
    pub format: Option<StringFormat>,
    /// The longest value, in UTF-8 bytes.
    pub max_length: Option<u64>,
    /// The shortest value, in UTF-8 bytes.
    pub min_length: Option<u64>,
    /// The longest value, in extended grapheme clusters.
    pub max_graphemes: Option<u64>,
    /// The shortest value, in extended grapheme clusters.
    pub min_graphemes: Option<u64>,
    /// Suggested values; the set is open, so other values are valid.
    pub known_values: Vec<String>,
    /// The only values allowed (closed set).
    pub enum_values: Option<Vec<String>>,
    /// The value assumed when absent.
    pub default: Option<String>,
    /// The only value allowed.
    pub const_value: Option<String>,
}

/// The lexicon string formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StringFormat {
    /// `at-identifier`: a DID or a handle.
    AtIdentifier,
    /// `at-uri`.
    AtUri,
    /// `cid`: a CID in string form.
    Cid,
    /// `datetime`: an RFC 3339 timestamp in the AT subset.
    Datetime,
    /// `did`.
    Did,
    /// `handle`.
    Handle,
    /// `nsid`.
    Nsid,
    /// `tid`.
    Tid,
    /// `record-key`.
    RecordKey,
    /// `uri`: any RFC 3986 URI.
    Uri,
    /// `language`: a BCP 47 language tag.
    Language,
}

impl StringFormat {
    /// Every format, in the order of the spec.
    pub const ALL: [StringFormat; 11] = [
        StringFormat::AtIdentifier,
        StringFormat::AtUri,
        StringFormat::Cid,
        StringFormat::Datetime,
        StringFormat::Did,
        StringFormat::Handle,
        StringFormat::Nsid,
        StringFormat::Tid,
        StringFormat::RecordKey,
        StringFormat::Uri,
        StringFormat::Language,
    ];

    /// The format's name as written in a document.
    pub fn name(self) -> &'static str {
        match self {
            StringFormat::AtIdentifier => "at-identifier",
            StringFormat::AtUri => "at-uri",
            StringFormat::Cid => "cid",
            StringFormat::Datetime => "datetime",
            StringFormat::Did => "did",
            StringFormat::Handle => "handle",
            StringFormat::Nsid => "nsid",
            StringFormat::Tid => "tid",
            StringFormat::RecordKey => "record-key",
            StringFormat::Uri => "uri",
            StringFormat::Language => "language",
        }
    }

    fn parse(s: &str) -> Option<StringFormat> {
        StringFormat::ALL.into_iter().find(|f| f.name() == s)
    }
}

impl fmt::Display for StringFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BytesSchema {
    /// Description.
    pub description: Option<String>,
    /// The longest value, in bytes.
    pub max_length: Option<u64>,
    /// The shortest value, in bytes.
    pub min_length: Option<u64>,
}

/// `blob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSchema {
    /// Description.
    pub description: Option<String>,
    /// The MIME types accepted (`image/png`, `image/*`, `*/*`); empty means any.
    pub accept: Vec<String>,
    /// The largest blob, in bytes.
    pub max_size: Option<u64>,
}

/// `array`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArraySchema {
    /// Description.
    pub description: Option<String>,
    /// The type of every element.
    pub items: Box<Field>,
    /// The most elements.
    pub max_length: Option<u64>,
    /// The fewest elements.
    pub min_length: Option<u64>,
}

/// `object`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSchema {
    /// Description.
    pub description: Option<String>,
    /// The properties that must be present.
    pub required: Vec<String>,
    /// The properties whose value may be `null`.
    pub nullable: Vec<String>,
    /// The properties; others are ignored when validating.
    pub properties: BTreeMap<String, Field>,
}

/// `ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSchema {
    /// Description.
    pub description: Option<String>,
    /// The definition referred to.
    pub target: DefRef,
}

/// `union`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnionSchema {
    /// Description.
    pub description: Option<String>,
    /// The member types.
    pub refs: Vec<DefRef>,
    /// Whether data of other types is refused (closed) or let through unchecked (open).
    pub closed: bool,
}

/// A resolved reference to a definition: a document and a definition name.
///
/// Written `nsid` (meaning `nsid#main`), `nsid#name`, or `#name` inside the document itself;
/// displayed in the normal form (`nsid` for `main`, else `nsid#name`), which is also the form
/// of `$type` values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefRef {
    /// The document.
    pub nsid: Nsid,
    /// The definition in it.
    pub name: String,
}

impl DefRef {
    /// Parses a reference as written in a document whose id is `base` (`#name` is local).
    pub fn parse_in(s: &str, base: &Nsid) -> Option<DefRef> {
        let (nsid, name) = match s.split_once('#') {
            Some(("", name)) => (base.clone(), name),
            Some((nsid, name)) => (Nsid::parse(nsid).ok()?, name),
            None => (Nsid::parse(s).ok()?, "main"),
        };
        is_def_name(name).then(|| DefRef {
            nsid,
            name: name.to_owned(),
        })
    }

    /// Parses an absolute reference or `$type` value (`nsid`, `nsid#name`; `nsid#main` is
    /// `nsid`).
    pub fn parse(s: &str) -> Option<DefRef> {
        if s.starts_with('#') {
            return None;
        }
        let (nsid, name) = match s.split_once('#') {
            Some((nsid, name)) => (nsid, name),
            None => (s, "main"),
        };
        let nsid = Nsid::parse(nsid).ok()?;
        is_def_name(name).then(|| DefRef {
            nsid,
            name: name.to_owned(),
        })
    }

    /// A reference to a document's `main` definition.
    pub fn main(nsid: Nsid) -> DefRef {
        DefRef {
            nsid,
            name: "main".into(),
        }
    }
}

impl fmt::Display for DefRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == "main" {
            f.write_str(self.nsid.as_str())
        } else {
            write!(f, "{}#{}", self.nsid, self.name)
        }
    }
}

/// Definition names: an ASCII letter, then ASCII letters, digits, `_` or `-`; at most 63.
fn is_def_name(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_alphabetic())
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

// ---------------------------------------------------------------------------------------------
// Parser

/// Where the parser is: the path into the document, the document id and the nesting depth.
struct Ctx<'a> {
    id: &'a Nsid,
    depth: usize,
}

fn parse_doc(value: &Value) -> Result<LexiconDoc, ParseError> {
    let map = as_object(value, "")?;
    allow_keys(
        map,
        "",
        &["lexicon", "id", "revision", "description", "defs", "$type"],
    )?;
    match map.get("lexicon") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(_) => return err("/lexicon", "must be the integer 1 (Lexicon v1)"),
        None => return err("", "missing `lexicon` (the language version, 1)"),
    }
    let id = match map.get("id") {
        Some(Value::String(s)) => Nsid::parse(s).or_else(|e| err("/id", e.to_string()))?,
        Some(_) => return err("/id", "must be a string (an NSID)"),
        None => return err("", "missing `id` (the document's NSID)"),
    };
    if let Some(t) = map.get("$type")
        && t.as_str() != Some("com.atproto.lexicon.schema")
    {
        return err(
            "/$type",
            "if present, must be \"com.atproto.lexicon.schema\"",
        );
    }
    let revision = opt_u64(map, "", "revision")?;
    let description = opt_string(map, "", "description")?;
    let defs_value = map
        .get("defs")
        .map_or_else(|| err("", "missing `defs`"), Ok)?;
    let defs_map = as_object(defs_value, "/defs")?;
    let ctx = Ctx { id: &id, depth: 0 };
    let mut defs = BTreeMap::new();
    for (name, def) in defs_map {
        let path = format!("/defs/{}", escape(name));
        if !is_def_name(name) {
            return err(
                &path,
                "a definition name must be an ASCII letter followed by letters, digits, _ or -",
            );
        }
        defs.insert(name.clone(), parse_def(&ctx, def, &path, name == "main")?);
    }
    Ok(LexiconDoc {
        id,
        revision,
        description,
        defs,
    })
}

fn parse_def(ctx: &Ctx<'_>, value: &Value, path: &str, is_main: bool) -> Result<Def, ParseError> {
    let map = as_object(value, path)?;
    let kind = type_of(map, path)?;
    let primary = matches!(
        kind,
        "record" | "query" | "procedure" | "subscription" | "permission-set"
    );
    if primary && !is_main {
        return err(
            path,
            format!("a {kind} must be the document's `main` definition"),
        );
    }
    Ok(match kind {
        "record" => Def::Record(parse_record(ctx, map, path)?),
        "query" => Def::Query(parse_xrpc(ctx, map, path, false)?),
        "procedure" => Def::Procedure(parse_xrpc(ctx, map, path, true)?),
        "subscription" => Def::Subscription(parse_subscription(ctx, map, path)?),
        "permission-set" => Def::PermissionSet(parse_permission_set(map, path)?),
        "token" => {
            allow_keys(map, path, &["type", "description"])?;
            Def::Token(TokenDef {
                description: opt_string(map, path, "description")?,
            })
        }
        "ref" | "union" | "unknown" | "params" => {
            return err(
                path,
                format!("a {kind} cannot be a named definition (use it inside an object)"),
            );
        }
        _ => Def::Type(parse_field(ctx, value, path)?),
    })
}

fn parse_record(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
) -> Result<RecordDef, ParseError> {
    allow_keys(map, path, &["type", "description", "key", "record"])?;
    let key_path = format!("{path}/key");
    let key = match map.get("key") {
        Some(Value::String(s)) => KeyType::parse(s).map_or_else(
            || {
                err(
                    &key_path,
                    "must be \"tid\", \"nsid\", \"any\" or \"literal:<record key>\"",
                )
            },
            Ok,
        )?,
        Some(_) => return err(&key_path, "must be a string"),
        None => return err(path, "a record needs a `key` (tid, nsid, any or literal:…)"),
    };
    let record_path = format!("{path}/record");
    let record_value = map
        .get("record")
        .map_or_else(|| err(path, "a record needs a `record` object schema"), Ok)?;
    let record = match parse_field(ctx, record_value, &record_path)? {
        Field::Object(o) => o,
        other => {
            return err(
                &record_path,
                format!("must be an object schema, not a {}", other.kind()),
            );
        }
    };
    Ok(RecordDef {
        description: opt_string(map, path, "description")?,
        key,
        record,
    })
}

fn parse_xrpc(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
    procedure: bool,
) -> Result<XrpcDef, ParseError> {
    if procedure {
        allow_keys(
            map,
            path,
            &[
                "type",
                "description",
                "parameters",
                "input",
                "output",
                "errors",
            ],
        )?;
    } else {
        allow_keys(
            map,
            path,
            &["type", "description", "parameters", "output", "errors"],
        )?;
    }
    Ok(XrpcDef {
        description: opt_string(map, path, "description")?,
        parameters: opt_params(ctx, map, path)?,
        input: match map.get("input") {
            Some(v) => Some(parse_body(ctx, v, &format!("{path}/input"))?),
            None => None,
        },
        output: match map.get("output") {
            Some(v) => Some(parse_body(ctx, v, &format!("{path}/output"))?),
            None => None,
        },
        errors: parse_errors(map, path)?,
    })
}

fn parse_subscription(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
) -> Result<SubscriptionDef, ParseError> {
    allow_keys(
        map,
        path,
        &["type", "description", "parameters", "message", "errors"],
    )?;
    let message = match map.get("message") {
        Some(v) => {
            let mpath = format!("{path}/message");
            let m = as_object(v, &mpath)?;
            allow_keys(m, &mpath, &["description", "schema"])?;
            let spath = format!("{mpath}/schema");
            let schema_value = m
                .get("schema")
                .map_or_else(|| err(&mpath, "missing `schema`"), Ok)?;
            let schema = parse_field(ctx, schema_value, &spath)?;
            if !matches!(schema, Field::Union(_) | Field::Ref(_) | Field::Object(_)) {
                return err(&spath, "must be a union (or a ref or an object)");
            }
            Some(MessageSchema {
                description: opt_string(m, &mpath, "description")?,
                schema,
            })
        }
        None => None,
    };
    Ok(SubscriptionDef {
        description: opt_string(map, path, "description")?,
        parameters: opt_params(ctx, map, path)?,
        message,
        errors: parse_errors(map, path)?,
    })
}

fn parse_body(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<Body, ParseError> {
    let map = as_object(value, path)?;
    allow_keys(map, path, &["description", "encoding", "schema"])?;
    let encoding = match map.get("encoding") {
        Some(Value::String(s)) if is_mime(s, true) => s.clone(),
        Some(_) => {
            return err(
                &format!("{path}/encoding"),
                "must be a MIME type such as application/json",
            );
        }
        None => return err(path, "missing `encoding` (a MIME type)"),
    };
    let schema = match map.get("schema") {
        Some(v) => {
            let spath = format!("{path}/schema");
            let f = parse_field(ctx, v, &spath)?;
            if !matches!(f, Field::Union(_) | Field::Ref(_) | Field::Object(_)) {
                return err(&spath, "must be an object, a ref or a union");
            }
            Some(f)
        }
        None => None,
    };
    Ok(Body {
        description: opt_string(map, path, "description")?,
        encoding,
        schema,
    })
}

fn parse_errors(map: &Map<String, Value>, path: &str) -> Result<Vec<ErrorDef>, ParseError> {
    let Some(v) = map.get("errors") else {
        return Ok(Vec::new());
    };
    let epath = format!("{path}/errors");
    let Value::Array(items) = v else {
        return err(&epath, "must be an array");
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{epath}/{i}");
        let m = as_object(item, &ipath)?;
        allow_keys(m, &ipath, &["name", "description"])?;
        let name = match m.get("name") {
            Some(Value::String(s)) if !s.is_empty() && !s.chars().any(|c| c.is_whitespace()) => {
                s.clone()
            }
            _ => return err(&ipath, "`name` must be a string without whitespace"),
        };
        out.push(ErrorDef {
            name,
            description: opt_string(m, &ipath, "description")?,
        });
    }
    Ok(out)
}

fn opt_params(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
) -> Result<Option<ParamsSchema>, ParseError> {
    let Some(v) = map.get("parameters") else {
        return Ok(None);
    };
    let ppath = format!("{path}/parameters");
    let m = as_object(v, &ppath)?;
    allow_keys(
        m,
        &ppath,
        &["type", "description", "required", "properties"],
    )?;
    if type_of(m, &ppath)? != "params" {
        return err(&ppath, "`type` must be \"params\"");
    }
    let properties = parse_properties(ctx, m, &ppath)?;
    for (name, field) in &properties {
        let fpath = format!("{ppath}/properties/{}", escape(name));
        let scalar =
            |f: &Field| matches!(f, Field::Boolean(_) | Field::Integer(_) | Field::String(_));
        let ok = match field {
            Field::Array(a) => scalar(&a.items),
            Field::Unknown(_) => true,
            f => scalar(f),
        };
        if !ok {
            return err(
                &fpath,
                "parameters may only be booleans, integers, strings, unknown, or arrays of booleans, integers or strings",
            );
        }
    }
    let required = name_list(m, &ppath, "required", &properties)?;
    Ok(Some(ParamsSchema {
        description: opt_string(m, &ppath, "description")?,
        required,
        properties,
    }))
}

fn parse_permission_set(
    map: &Map<String, Value>,
    path: &str,
) -> Result<PermissionSetDef, ParseError> {
    allow_keys(
        map,
        path,
        &[
            "type",
            "title",
            "title:lang",
            "detail",
            "detail:lang",
            "description",
            "permissions",
        ],
    )?;
    let ppath = format!("{path}/permissions");
    let Some(Value::Array(items)) = map.get("permissions") else {
        return err(path, "a permission-set needs a `permissions` array");
    };
    let mut permissions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{ppath}/{i}");
        let m = as_object(item, &ipath)?;
        if type_of(m, &ipath)? != "permission" {
            return err(&ipath, "`type` must be \"permission\"");
        }
        let resource = opt_string(m, &ipath, "resource")?;
        let nsid_list = |key: &str| -> Result<Vec<String>, ParseError> {
            let list = string_list(m, &ipath, key)?.unwrap_or_default();
            if list.is_empty() {
                return err(
                    &ipath,
                    format!("`{key}` must list at least one NSID (or *)"),
                );
            }
            for (j, s) in list.iter().enumerate() {
                if s != "*" && Nsid::parse(s).is_err() {
                    return err(&format!("{ipath}/{key}/{j}"), "must be an NSID or *");
                }
            }
            Ok(list)
        };
        permissions.push(match resource.as_deref() {
            Some("repo") => {
                allow_keys(m, &ipath, &["type", "resource", "collection", "action"])?;
                let action = string_list(m, &ipath, "action")?.unwrap_or_default();
                for (j, a) in action.iter().enumerate() {
                    if !matches!(a.as_str(), "create" | "update" | "delete") {
                        return err(
                            &format!("{ipath}/action/{j}"),
                            "must be create, update or delete",
                        );
                    }
                }
                Permission::Repo {
                    collection: nsid_list("collection")?,
                    action,
                }
            }
            Some("rpc") => {
                allow_keys(m, &ipath, &["type", "resource", "lxm", "aud", "inheritAud"])?;
                let aud = opt_string(m, &ipath, "aud")?;
                let inherit_aud = opt_bool(m, &ipath, "inheritAud")?.unwrap_or(false);
                if aud.is_some() && inherit_aud {
                    return err(&ipath, "give either `aud` or `inheritAud`, not both");
                }
                Permission::Rpc {
                    lxm: nsid_list("lxm")?,
                    aud,
                    inherit_aud,
                }
            }
            Some(other) => {
                return err(
                    &format!("{ipath}/resource"),
                    format!(
                        "a permission set may only hold repo and rpc permissions, not {other:?}"
                    ),
                );
            }
            None => return err(&ipath, "missing `resource`"),
        });
    }
    Ok(PermissionSetDef {
        title: opt_string(map, path, "title")?,
        title_lang: lang_map(map, path, "title:lang")?,
        detail: opt_string(map, path, "detail")?,
        description: opt_string(map, path, "description")?,
        detail_lang: lang_map(map, path, "detail:lang")?,
        permissions,
    })
}

fn lang_map(
    map: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<BTreeMap<String, String>, ParseError> {
    let Some(v) = map.get(key) else {
        return Ok(BTreeMap::new());
    };
    let kpath = format!("{path}/{}", escape(key));
    let m = as_object(v, &kpath)?;
    let mut out = BTreeMap::new();
    for (lang, text) in m {
        if guild_core::syntax::Language::parse(lang).is_err() {
            return err(&kpath, format!("{lang:?} is not a language tag"));
        }
        let Value::String(text) = text else {
            return err(&format!("{kpath}/{}", escape(lang)), "must be a string");
        };
        out.insert(lang.clone(), text.clone());
    }
    Ok(out)
}

/// Parses a field type (an object property, an array's items, a named type).
fn parse_field(ctx: &Ctx<'_>, value: &Value, path: &str) -> Result<Field, ParseError> {
    if ctx.depth > MAX_SCHEMA_DEPTH {
        return err(path, "types are nested too deeply");
    }
    let inner = Ctx {
        id: ctx.id,
        depth: ctx.depth + 1,
    };
    let map = as_object(value, path)?;
    let kind = type_of(map, path)?;
    let description = opt_string(map, path, "description")?;
    let field = match kind {
        "boolean" => boolean_field(map, path, description)?,
        "integer" => integer_field(map, path, description)?,
        "string" => string_field(map, path, description)?,
        "bytes" => bytes_field(map, path, description)?,
        "cid-link" => {
            allow_keys(map, path, &["type", "description"])?;
            Field::CidLink(Described { description })
        }
        "unknown" => {
            allow_keys(map, path, &["type", "description"])?;
            Field::Unknown(Described { description })
        }
        "blob" => blob_field(map, path, description)?,
        "array" => array_field(&inner, map, path, description)?,
        "object" => object_field(&inner, map, path, description)?,
        "ref" => ref_field(ctx.id, map, path, description)?,
        "union" => union_field(ctx.id, map, path, description)?,
        "record" | "query" | "procedure" | "subscription" | "permission-set" | "token"
        | "params" => {
            return err(path, format!("a {kind} cannot be used as a field type"));
        }
        other => return err(&format!("{path}/type"), format!("unknown type {other:?}")),
    };
    check_constants(&field, path)?;
    Ok(field)
}

/// A `boolean` field.
fn boolean_field(
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(map, path, &["type", "description", "default", "const"])?;
    Ok(Field::Boolean(BooleanSchema {
        description,
        default: opt_bool(map, path, "default")?,
        const_value: opt_bool(map, path, "const")?,
    }))
}

/// An `integer` field.
fn integer_field(
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(
        map,
        path,
        &[
            "type",
            "description",
            "minimum",
            "maximum",
            "enum",
            "default",
            "const",
        ],
    )?;
    let s = IntegerSchema {
        description,
        minimum: opt_i64(map, path, "minimum")?,
        maximum: opt_i64(map, path, "maximum")?,
        enum_values: integer_enum(map, path)?,
        default: opt_i64(map, path, "default")?,
        const_value: opt_i64(map, path, "const")?,
    };
    range(path, "minimum", s.minimum, "maximum", s.maximum)?;
    Ok(Field::Integer(s))
}

/// An integer field's optional `enum`: an array of integers.
fn integer_enum(map: &Map<String, Value>, path: &str) -> Result<Option<Vec<i64>>, ParseError> {
    match map.get("enum") {
        None => Ok(None),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                match v.as_i64() {
                    Some(n) => out.push(n),
                    None => return err(&format!("{path}/enum/{i}"), "must be an integer"),
                }
            }
            Ok(Some(out))
        }
        Some(_) => err(&format!("{path}/enum"), "must be an array of integers"),
    }
}

/// A `string` field.
fn string_field(
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(
        map,
        path,
        &[
            "type",
            "description",
            "format",
            "maxLength",
            "minLength",
            "maxGraphemes",
            "minGraphemes",
            "knownValues",
            "enum",
            "default",
            "const",
        ],
    )?;
    let s = StringSchema {
        description,
        format: string_format(map, path)?,
        max_length: opt_u64(map, path, "maxLength")?,
        min_length: opt_u64(map, path, "minLength")?,
        max_graphemes: opt_u64(map, path, "maxGraphemes")?,
        min_graphemes: opt_u64(map, path, "minGraphemes")?,
        known_values: string_list(map, path, "knownValues")?.unwrap_or_default(),
        enum_values: string_list(map, path, "enum")?,
        default: opt_string(map, path, "default")?,
        const_value: opt_string(map, path, "const")?,
    };
    range(path, "minLength", s.min_length, "maxLength", s.max_length)?;
    range(
        path,
        "minGraphemes",
        s.min_graphemes,
        "maxGraphemes",
        s.max_graphemes,
    )?;
    Ok(Field::String(s))
}

/// A string field's optional `format`: one of the known [`StringFormat`]s.
fn string_format(map: &Map<String, Value>, path: &str) -> Result<Option<StringFormat>, ParseError> {
    match map.get("format") {
        None => Ok(None),
        Some(Value::String(f)) => StringFormat::parse(f).map_or_else(
            || {
                err(
                    &format!("{path}/format"),
                    format!(
                        "unknown string format {f:?} (known: {})",
                        StringFormat::ALL.map(StringFormat::name).join(", ")
                    ),
                )
            },
            |f| Ok(Some(f)),
        ),
        Some(_) => err(&format!("{path}/format"), "must be a string"),
    }
}

/// A `bytes` field.
fn bytes_field(
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(
        map,
        path,
        &["type", "description", "maxLength", "minLength"],
    )?;
    let s = BytesSchema {
        description,
        max_length: opt_u64(map, path, "maxLength")?,
        min_length: opt_u64(map, path, "minLength")?,
    };
    range(path, "minLength", s.min_length, "maxLength", s.max_length)?;
    Ok(Field::Bytes(s))
}

/// A `blob` field; every `accept` entry must be a MIME pattern.
fn blob_field(
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(map, path, &["type", "description", "accept", "maxSize"])?;
    let accept = string_list(map, path, "accept")?.unwrap_or_default();
    for (i, a) in accept.iter().enumerate() {
        if !is_mime_pattern(a) {
            return err(
                &format!("{path}/accept/{i}"),
                "must be a MIME type, a type/* pattern, or */*",
            );
        }
    }
    Ok(Field::Blob(BlobSchema {
        description,
        accept,
        max_size: opt_u64(map, path, "maxSize")?,
    }))
}

/// An `array` field; its `items` are parsed with `inner`, one level deeper.
fn array_field(
    inner: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(
        map,
        path,
        &["type", "description", "items", "maxLength", "minLength"],
    )?;
    let ipath = format!("{path}/items");
    let items = map
        .get("items")
        .map_or_else(|| err(path, "an array needs `items`"), Ok)?;
    let s = ArraySchema {
        description,
        items: Box::new(parse_field(inner, items, &ipath)?),
        max_length: opt_u64(map, path, "maxLength")?,
        min_length: opt_u64(map, path, "minLength")?,
    };
    range(path, "minLength", s.min_length, "maxLength", s.max_length)?;
    Ok(Field::Array(s))
}

/// An `object` field; its properties are parsed with `inner`, one level deeper.
fn object_field(
    inner: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(
        map,
        path,
        &["type", "description", "required", "nullable", "properties"],
    )?;
    let properties = parse_properties(inner, map, path)?;
    Ok(Field::Object(ObjectSchema {
        description,
        required: name_list(map, path, "required", &properties)?,
        nullable: name_list(map, path, "nullable", &properties)?,
        properties,
    }))
}

/// A `ref` field; its target is resolved against the document `id`.
fn ref_field(
    id: &Nsid,
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(map, path, &["type", "description", "ref"])?;
    let rpath = format!("{path}/ref");
    let target = match map.get("ref") {
        Some(Value::String(s)) => parse_ref(s, id, &rpath)?,
        Some(_) => return err(&rpath, "must be a string"),
        None => return err(path, "a ref needs `ref`"),
    };
    Ok(Field::Ref(RefSchema {
        description,
        target,
    }))
}

/// A `union` field: distinct refs resolved against the document `id`; a closed union needs
/// at least one.
fn union_field(
    id: &Nsid,
    map: &Map<String, Value>,
    path: &str,
    description: Option<String>,
) -> Result<Field, ParseError> {
    allow_keys(map, path, &["type", "description", "refs", "closed"])?;
    let raw =
        string_list(map, path, "refs")?.map_or_else(|| err(path, "a union needs `refs`"), Ok)?;
    let mut refs: Vec<DefRef> = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let r = parse_ref(s, id, &format!("{path}/refs/{i}"))?;
        if refs.contains(&r) {
            return err(&format!("{path}/refs/{i}"), format!("{r} is listed twice"));
        }
        refs.push(r);
    }
    let closed = opt_bool(map, path, "closed")?.unwrap_or(false);
    if closed && refs.is_empty() {
        return err(path, "a closed union with no refs can hold nothing");
    }
    Ok(Field::Union(UnionSchema {
        description,
        refs,
        closed,
    }))
}

fn parse_properties(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    path: &str,
) -> Result<BTreeMap<String, Field>, ParseError> {
    let ppath = format!("{path}/properties");
    let v = map
        .get("properties")
        .map_or_else(|| err(path, "missing `properties`"), Ok)?;
    let m = as_object(v, &ppath)?;
    let mut out = BTreeMap::new();
    for (name, field) in m {
        let fpath = format!("{ppath}/{}", escape(name));
        if name.is_empty() {
            return err(&fpath, "a property name must not be empty");
        }
        if name == "$type" {
            return err(&fpath, "`$type` is implied and cannot be declared");
        }
        out.insert(name.clone(), parse_field(ctx, field, &fpath)?);
    }
    Ok(out)
}

/// `required` or `nullable`: distinct names of declared properties.
fn name_list(
    map: &Map<String, Value>,
    path: &str,
    key: &str,
    properties: &BTreeMap<String, Field>,
) -> Result<Vec<String>, ParseError> {
    let list = string_list(map, path, key)?.unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, name) in list.iter().enumerate() {
        let ipath = format!("{path}/{key}/{i}");
        if !properties.contains_key(name) {
            return err(&ipath, format!("{name:?} is not a declared property"));
        }
        if !seen.insert(name) {
            return err(&ipath, format!("{name:?} is listed twice"));
        }
    }
    Ok(list)
}

fn parse_ref(s: &str, base: &Nsid, path: &str) -> Result<DefRef, ParseError> {
    DefRef::parse_in(s, base).map_or_else(
        || {
            err(
                path,
                format!("{s:?} is not a reference (`#name`, `nsid` or `nsid#name`)"),
            )
        },
        Ok,
    )
}

/// Checks that `default`, `const` and `enum` values satisfy the field's own constraints.
fn check_constants(field: &Field, path: &str) -> Result<(), ParseError> {
    let check = |key: &str, c: Result<(), Rule>| match c {
        Ok(()) => Ok(()),
        Err(rule) => err(
            &format!("{path}/{key}"),
            format!("the value breaks its own type: {rule}"),
        ),
    };
    match field {
        Field::Integer(s) => {
            if let Some(v) = s.default {
                check("default", validate::integer_constraints(s, v))?;
            }
            if let Some(v) = s.const_value {
                check("const", validate::integer_constraints(s, v))?;
            }
            if let Some(values) = &s.enum_values {
                if values.is_empty() {
                    return err(&format!("{path}/enum"), "must not be empty");
                }
                let unconstrained = IntegerSchema {
                    enum_values: None,
                    const_value: None,
                    ..s.clone()
                };
                for v in values {
                    check("enum", validate::integer_constraints(&unconstrained, *v))?;
                }
            }
        }
        Field::String(s) => {
            if let Some(v) = &s.default {
                check("default", validate::string_constraints(s, v))?;
            }
            if let Some(v) = &s.const_value {
                check("const", validate::string_constraints(s, v))?;
            }
            if let Some(values) = &s.enum_values {
                if values.is_empty() {
                    return err(&format!("{path}/enum"), "must not be empty");
                }
                let unconstrained = StringSchema {
                    enum_values: None,
                    const_value: None,
                    ..s.clone()
                };
                for v in values {
                    check("enum", validate::string_constraints(&unconstrained, v))?;
                }
            }
        }
        Field::Boolean(BooleanSchema {
            default: Some(d),
            const_value: Some(c),
            ..
        }) if d != c => {
            return err(&format!("{path}/default"), "differs from `const`");
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Small readers

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ParseError> {
    match value {
        Value::Object(m) => Ok(m),
        _ => err(path, "must be a JSON object"),
    }
}

fn type_of<'a>(map: &'a Map<String, Value>, path: &str) -> Result<&'a str, ParseError> {
    match map.get("type") {
        Some(Value::String(s)) => Ok(s),
        Some(_) => err(&format!("{path}/type"), "must be a string"),
        None => err(path, "missing `type`"),
    }
}

fn allow_keys(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), ParseError> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return err(
                &format!("{path}/{}", escape(key)),
                format!("unknown key {key:?} here (allowed: {})", allowed.join(", ")),
            );
        }
    }
    Ok(())
}

fn opt_string(
    map: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<String>, ParseError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => err(&format!("{path}/{}", escape(key)), "must be a string"),
    }
}

fn opt_bool(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<bool>, ParseError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => err(&format!("{path}/{key}"), "must be true or false"),
    }
}

fn opt_i64(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<i64>, ParseError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).map_or_else(
            || err(&format!("{path}/{key}"), "must be a 64-bit signed integer"),
            Ok,
        ),
    }
}

fn opt_u64(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u64>, ParseError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).map_or_else(
            || err(&format!("{path}/{key}"), "must be a non-negative integer"),
            Ok,
        ),
    }
}

fn string_list(
    map: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<Vec<String>>, ParseError> {
    let Some(v) = map.get(key) else {
        return Ok(None);
    };
    let kpath = format!("{path}/{key}");
    let Value::Array(items) = v else {
        return err(&kpath, "must be an array of strings");
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => out.push(s.clone()),
            _ => return err(&format!("{kpath}/{i}"), "must be a string"),
        }
    }
    Ok(Some(out))
}

fn range<T: PartialOrd + fmt::Display + Copy>(
    path: &str,
    min_key: &str,
    min: Option<T>,
    max_key: &str,
    max: Option<T>,
) -> Result<(), ParseError> {
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return err(
            path,
            format!("{min_key} ({lo}) is greater than {max_key} ({hi})"),
        );
    }
    Ok(())
}

/// `type/subtype`, each part a non-empty run of RFC 6838 name characters; with `params`, a
/// `;`-separated parameter list may follow.
fn is_mime(s: &str, params: bool) -> bool {
    let essence = if params {
        s.split(';').next().unwrap_or(s).trim_end()
    } else {
        s
    };
    let Some((t, sub)) = essence.split_once('/') else {
        return false;
    };
    let token = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    (token(t) || (t == "*" && sub == "*")) && (token(sub) || sub == "*")
}

/// A blob `accept` entry: `type/subtype`, `type/*` or `*/*`.
fn is_mime_pattern(s: &str) -> bool {
    is_mime(s, false)
}

/// Escapes a key for a JSON pointer (RFC 6901): `~` as `~0`, `/` as `~1`.
pub(crate) fn escape(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains(['~', '/']) {
        key.replace('~', "~0").replace('/', "~1").into()
    } else {
        key.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<LexiconDoc, ParseError> {
        LexiconDoc::from_json(&v)
    }

    fn doc_with(def: Value) -> Value {
        json!({"lexicon": 1, "id": "com.example.test", "defs": {"main": def}})
    }

    #[track_caller]
    fn refused(def: Value, path: &str, contains: &str) {
        match parse(doc_with(def)) {
            Ok(d) => panic!("accepted: {d:?}"),
            Err(ParseError::Schema { path: p, reason }) => {
                assert_eq!(p, path, "{reason}");
                assert!(reason.contains(contains), "{reason:?} lacks {contains:?}");
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn references_resolve_against_the_document() {
        let base = Nsid::parse("com.example.a").unwrap();
        let local = DefRef::parse_in("#x", &base).unwrap();
        assert_eq!(local.to_string(), "com.example.a#x");
        let main = DefRef::parse_in("com.example.b#main", &base).unwrap();
        assert_eq!(main, DefRef::parse_in("com.example.b", &base).unwrap());
        assert_eq!(main.to_string(), "com.example.b");
        for bad in [
            "#",
            "",
            "nope",
            "com.example.b#",
            "com.example.b#a#b",
            "#1x",
        ] {
            assert!(DefRef::parse_in(bad, &base).is_none(), "{bad}");
        }
        assert!(DefRef::parse("#x").is_none());
    }

    #[test]
    fn typos_and_bad_constraints_are_refused() {
        refused(
            json!({"type": "string", "maxLenght": 3}),
            "/defs/main/maxLenght",
            "unknown key",
        );
        refused(
            json!({"type": "string", "minLength": 5, "maxLength": 3}),
            "/defs/main",
            "minLength (5) is greater than maxLength (3)",
        );
        refused(
            json!({"type": "string", "maxLength": -1}),
            "/defs/main/maxLength",
            "non-negative",
        );
        refused(
            json!({"type": "integer", "maximum": 1.5}),
            "/defs/main/maximum",
            "integer",
        );
        refused(
            json!({"type": "integer", "minimum": 1, "default": 0}),
            "/defs/main/default",
            "less than the minimum 1",
        );
        refused(
            json!({"type": "string", "format": "did", "const": "nope"}),
            "/defs/main/const",
            "did",
        );
        refused(
            json!({"type": "string", "format": "email"}),
            "/defs/main/format",
            "unknown string format",
        );
        refused(
            json!({"type": "object", "required": ["a"], "properties": {}}),
            "/defs/main/required/0",
            "not a declared property",
        );
        refused(
            json!({"type": "blob", "accept": ["image"]}),
            "/defs/main/accept/0",
            "MIME",
        );
        refused(
            json!({"type": "object", "properties": {"u": {"type": "union", "refs": [], "closed": true}}}),
            "/defs/main/properties/u",
            "closed union",
        );
        refused(
            json!({"type": "record", "key": "literal:", "record": {"type": "object", "properties": {}}}),
            "/defs/main/key",
            "literal",
        );
        refused(
            json!({"type": "query", "parameters": {"type": "params", "properties": {"o": {"type": "object", "properties": {}}}}}),
            "/defs/main/parameters/properties/o",
            "parameters may only be",
        );
        refused(
            json!({"type": "query", "input": {"encoding": "application/json"}}),
            "/defs/main/input",
            "unknown key",
        );
    }

    #[test]
    fn deep_schemas_are_refused_not_overflowed() {
        let mut field = json!({"type": "integer"});
        for _ in 0..60 {
            field = json!({"type": "array", "items": field});
        }
        let e = parse(doc_with(field)).unwrap_err();
        assert!(e.to_string().contains("nested too deeply"), "{e}");
    }

    #[test]
    fn mime_types() {
        for ok in ["image/png", "image/*", "*/*", "application/vnd.ipld.car"] {
            assert!(is_mime_pattern(ok), "{ok}");
        }
        for bad in ["image", "*/png", "image/", "/png", "ima ge/png"] {
            assert!(!is_mime_pattern(bad), "{bad}");
        }
        assert!(is_mime("text/plain; charset=utf-8", true));
    }
}
