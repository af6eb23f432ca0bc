//! Validation of AT data-model values ([`Ipld`]) against lexicon definitions.
//!
//! The entry points are methods of [`crate::Registry`]; this module holds the walk and its
//! error types. Every check is on the value as given: defaults are not filled in (except for
//! XRPC parameters, which are built here), unknown properties are ignored (AT evolution rules),
//! `knownValues` is advisory, and the walk never recurses deeper than
//! [`guild_core::cbor::MAX_DEPTH`], so no input can exhaust the stack.

use std::collections::BTreeMap;
use std::fmt;

use guild_core::Ipld;
use guild_core::cbor::MAX_DEPTH;
use guild_core::syntax;
use unicode_segmentation::UnicodeSegmentation as _;

use crate::registry::Registry;
use crate::schema::{
    BlobSchema, Def, DefRef, Field, IntegerSchema, ObjectSchema, ParamsSchema, StringFormat,
    StringSchema, UnionSchema,
};

/// Why a value does not satisfy a lexicon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No loaded lexicon defines this NSID (for a record: its `$type` is unknown). Whether that
    /// is fatal is the caller's policy (AT's `validate` flag; Guild's collective repos refuse).
    #[error("no loaded lexicon defines {0}")]
    UnknownType(String),
    /// The lexicon exists but its definition is not of the kind the operation needs (a record
    /// was validated against a query, parameters against a record…).
    #[error("{reference} is a {found}, not a {expected}")]
    WrongKind {
        /// The definition.
        reference: String,
        /// What the operation needed.
        expected: &'static str,
        /// What the definition is.
        found: &'static str,
    },
    /// The endpoint declares no such body (`input` or `output`), or a body that is not in the
    /// data model (a CAR file, an image).
    #[error("{nsid} has no data-model {which} body")]
    NoBody {
        /// The endpoint.
        nsid: String,
        /// `input` or `output`.
        which: &'static str,
    },
    /// A record key that does not fit the collection's key type.
    #[error("record key {rkey:?} does not fit {collection}, whose keys are {expected}")]
    BadRecordKey {
        /// The collection.
        collection: String,
        /// The record key (its first 64 characters).
        rkey: String,
        /// The collection's key type (`tid`, `nsid`, `literal:self`, `any`).
        expected: String,
    },
    /// The value breaks a rule of the lexicon.
    #[error("{path}: {rule}")]
    Invalid {
        /// JSON-pointer path into the value (`/entries/3/title`; `/` is the value itself).
        path: String,
        /// The rule broken.
        rule: Rule,
    },
    /// The lexicon set cannot validate this value: a reference does not resolve, or names a
    /// definition that is not a data type. [`Registry::check`] reports these up front.
    #[error("{path}: cannot validate: {reason}")]
    BadSchema {
        /// JSON-pointer path into the value.
        path: String,
        /// What is wrong with the lexicon set.
        reason: String,
    },
}

impl ValidationError {
    /// The path into the value, for the errors that have one.
    pub fn path(&self) -> Option<&str> {
        match self {
            ValidationError::Invalid { path, .. } | ValidationError::BadSchema { path, .. } => {
                Some(path)
            }
            _ => None,
        }
    }

    /// The rule broken, for [`ValidationError::Invalid`].
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            ValidationError::Invalid { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

/// The unit of a length constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// UTF-8 bytes of a string, or bytes of a `bytes` value (`minLength`, `maxLength`).
    Bytes,
    /// Extended grapheme clusters of a string (`minGraphemes`, `maxGraphemes`).
    Graphemes,
    /// Elements of an array (`minLength`, `maxLength`).
    Items,
}

impl Unit {
    fn min_keyword(self) -> &'static str {
        match self {
            Unit::Graphemes => "minGraphemes",
            _ => "minLength",
        }
    }
    /// `1 byte`, `3 graphemes`.
    fn count(self, n: u64) -> String {
        let s = if n == 1 { "" } else { "s" };
        match self {
            Unit::Bytes => format!("{n} byte{s}"),
            Unit::Graphemes => format!("{n} grapheme{s}"),
            Unit::Items => format!("{n} item{s}"),
        }
    }
    fn max_keyword(self) -> &'static str {
        match self {
            Unit::Graphemes => "maxGraphemes",
            _ => "maxLength",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Bytes => "bytes",
            Unit::Graphemes => "graphemes",
            Unit::Items => "items",
        })
    }
}

/// The lexicon rule a value broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// A `required` property is absent.
    #[error("required field is missing")]
    Required,
    /// `null` where the property is not `nullable`.
    #[error("must not be null (the field is not nullable)")]
    NotNullable,
    /// The value has the wrong data-model type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// The type the lexicon asks for.
        expected: &'static str,
        /// The type of the value.
        found: &'static str,
    },
    /// The value differs from the `const`.
    #[error("must be {expected} (const)")]
    Const {
        /// The constant, as JSON.
        expected: String,
    },
    /// The value is not in the closed `enum`.
    #[error("must be one of {} (enum)", .allowed.join(", "))]
    Enum {
        /// The allowed values, as JSON.
        allowed: Vec<String>,
    },
    /// An integer below `minimum`.
    #[error("{actual} is less than the minimum {minimum}")]
    Minimum {
        /// The bound.
        minimum: i64,
        /// The value.
        actual: i64,
    },
    /// An integer above `maximum`.
    #[error("{actual} is more than the maximum {maximum}")]
    Maximum {
        /// The bound.
        maximum: i64,
        /// The value.
        actual: i64,
    },
    /// Shorter than `minLength` or `minGraphemes`.
    #[error("too short: {}; at least {min} required ({})", .unit.count(*.actual), .unit.min_keyword())]
    TooShort {
        /// The bound.
        min: u64,
        /// The length of the value.
        actual: u64,
        /// What was counted.
        unit: Unit,
    },
    /// Longer than `maxLength` or `maxGraphemes`.
    #[error("too long: {}; at most {max} allowed ({})", .unit.count(*.actual), .unit.max_keyword())]
    TooLong {
        /// The bound.
        max: u64,
        /// The length of the value.
        actual: u64,
        /// What was counted.
        unit: Unit,
    },
    /// A string that does not match its `format`.
    #[error("{value:?} is not a valid {format}: {reason}")]
    Format {
        /// The format.
        format: StringFormat,
        /// The value (its first 64 characters).
        value: String,
        /// Why.
        reason: String,
    },
    /// A blob whose MIME type the `accept` list does not match.
    #[error("blob type {mime:?} is not accepted (accept: {})", .accept.join(", "))]
    BlobType {
        /// The blob's MIME type.
        mime: String,
        /// The accepted patterns.
        accept: Vec<String>,
    },
    /// A blob over `maxSize`.
    #[error("blob is {size} bytes: at most {max} allowed (maxSize)")]
    BlobTooLarge {
        /// The bound.
        max: u64,
        /// The blob's size.
        size: u64,
    },
    /// A `{"$type": "blob"}` object without a valid `ref`, `mimeType` or `size`.
    #[error("malformed blob: {0}")]
    MalformedBlob(&'static str),
    /// A union value, or a record, without a string `$type`.
    #[error("must be an object with a $type naming its lexicon type")]
    MissingType,
    /// A `$type` that is not a type name (`nsid` or `nsid#name`).
    #[error("$type {0:?} is not a lexicon type name")]
    BadTypeName(String),
    /// A closed union given a type outside it.
    #[error("$type {found:?} is not allowed here (closed union of {})", .allowed.join(", "))]
    NotInUnion {
        /// The value's (normalised) `$type`.
        found: String,
        /// The union's members.
        allowed: Vec<String>,
    },
    /// A `$type` different from the one expected.
    #[error("$type is {found:?}, expected {expected:?}")]
    TypeMismatch {
        /// The expected type.
        expected: String,
        /// The value's `$type`.
        found: String,
    },
    /// A value for a token reference that is not the token's name.
    #[error("must be the token {expected:?}")]
    Token {
        /// The token's full name.
        expected: String,
    },
    /// A query-string parameter that cannot be read as its type.
    #[error("cannot read {value:?} as {expected}")]
    ParamSyntax {
        /// The parameter's type.
        expected: &'static str,
        /// The raw value (its first 64 characters).
        value: String,
    },
    /// A non-array query-string parameter given more than once.
    #[error("given more than once, but is not an array")]
    RepeatedParam,
    /// An `unknown`-typed parameter, which a query string cannot carry.
    #[error("is declared `unknown`, which a query string cannot carry")]
    UnknownParam,
    /// A value that breaks the AT data model itself (a float, an integer out of range, a
    /// malformed blob).
    #[error("{0}")]
    DataModel(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nesting is deeper than the limit of {MAX_DEPTH}")]
    TooDeep,
}

// ---------------------------------------------------------------------------------------------
// Paths

/// A lazily rendered path into a value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    pub(crate) fn render(&self) -> String {
        let mut parts = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                Path::Root => break,
                Path::Key(p, k) => {
                    parts.push(crate::schema::escape(k).into_owned());
                    cur = p;
                }
                Path::Index(p, i) => {
                    parts.push(i.to_string());
                    cur = p;
                }
            }
        }
        if parts.is_empty() {
            return "/".into();
        }
        parts.reverse();
        let mut out = String::new();
        for p in parts {
            out.push('/');
            out.push_str(&p);
        }
        out
    }
}

fn invalid<T>(path: &Path<'_>, rule: Rule) -> Result<T, ValidationError> {
    Err(ValidationError::Invalid {
        path: path.render(),
        rule,
    })
}

fn wrong_type<T>(
    path: &Path<'_>,
    expected: &'static str,
    value: &Ipld,
) -> Result<T, ValidationError> {
    invalid(
        path,
        Rule::WrongType {
            expected,
            found: kind_of(value),
        },
    )
}

/// The data-model type of a value, as lexicons name it.
pub(crate) fn kind_of(value: &Ipld) -> &'static str {
    match value {
        Ipld::Null => "null",
        Ipld::Bool(_) => "boolean",
        Ipld::Integer(_) => "integer",
        Ipld::Float(_) => "float",
        Ipld::String(_) => "string",
        Ipld::Bytes(_) => "bytes",
        Ipld::List(_) => "array",
        Ipld::Map(m) if is_blob(m) => "blob",
        Ipld::Map(_) => "object",
        Ipld::Link(_) => "cid-link",
    }
}

fn is_blob(m: &BTreeMap<String, Ipld>) -> bool {
    matches!(m.get("$type"), Some(Ipld::String(t)) if t == "blob")
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Constraints shared with the schema parser (defaults, consts and enums are checked with these)

pub(crate) fn integer_constraints(s: &IntegerSchema, v: i64) -> Result<(), Rule> {
    if let Some(c) = s.const_value
        && v != c
    {
        return Err(Rule::Const {
            expected: c.to_string(),
        });
    }
    if let Some(values) = &s.enum_values
        && !values.contains(&v)
    {
        return Err(Rule::Enum {
            allowed: values.iter().map(i64::to_string).collect(),
        });
    }
    if let Some(min) = s.minimum
        && v < min
    {
        return Err(Rule::Minimum {
            minimum: min,
            actual: v,
        });
    }
    if let Some(max) = s.maximum
        && v > max
    {
        return Err(Rule::Maximum {
            maximum: max,
            actual: v,
        });
    }
    Ok(())
}

pub(crate) fn string_constraints(s: &StringSchema, v: &str) -> Result<(), Rule> {
    let quoted = |x: &str| serde_json::Value::from(x).to_string();
    if let Some(c) = &s.const_value
        && v != c
    {
        return Err(Rule::Const {
            expected: quoted(c),
        });
    }
    if let Some(values) = &s.enum_values
        && !values.iter().any(|e| e == v)
    {
        return Err(Rule::Enum {
            allowed: values.iter().map(|e| quoted(e)).collect(),
        });
    }
    let bytes = v.len() as u64;
    lengths(s.min_length, s.max_length, bytes, Unit::Bytes)?;
    if s.min_graphemes.is_some() || s.max_graphemes.is_some() {
        // A grapheme has at least one byte: no need to count when the bytes already fit.
        let fits_max = s.max_graphemes.is_none_or(|max| bytes <= max);
        if !fits_max || s.min_graphemes.is_some() {
            let graphemes = v.graphemes(true).count() as u64;
            lengths(s.min_graphemes, s.max_graphemes, graphemes, Unit::Graphemes)?;
        }
    }
    if let Some(format) = s.format {
        check_format(format, v).map_err(|reason| Rule::Format {
            format,
            value: truncate(v),
            reason,
        })?;
    }
    Ok(())
}

fn lengths(min: Option<u64>, max: Option<u64>, actual: u64, unit: Unit) -> Result<(), Rule> {
    if let Some(min) = min
        && actual < min
    {
        return Err(Rule::TooShort { min, actual, unit });
    }
    if let Some(max) = max
        && actual > max
    {
        return Err(Rule::TooLong { max, actual, unit });
    }
    Ok(())
}

/// Checks a string format with guild-core's typed identifiers; the error is the reason.
pub(crate) fn check_format(format: StringFormat, v: &str) -> Result<(), String> {
    let r = match format {
        StringFormat::AtIdentifier => syntax::AtIdentifier::parse(v).map(drop),
        StringFormat::AtUri => syntax::AtUri::parse(v).map(drop),
        StringFormat::Cid => syntax::validate_cid_str(v),
        StringFormat::Datetime => syntax::Datetime::parse(v).map(drop),
        StringFormat::Did => syntax::Did::parse(v).map(drop),
        StringFormat::Handle => syntax::Handle::parse(v).map(drop),
        StringFormat::Nsid => syntax::Nsid::parse(v).map(drop),
        StringFormat::Tid => syntax::Tid::parse(v).map(drop),
        StringFormat::RecordKey => syntax::RecordKey::parse(v).map(drop),
        StringFormat::Uri => syntax::validate_uri(v),
        StringFormat::Language => syntax::Language::parse(v).map(drop),
    };
    r.map_err(|e| e.reason)
}

/// Whether a blob's MIME type matches an `accept` pattern (`type/sub`, `type/*`, `*/*`).
/// Comparison ignores ASCII case and any `;` parameters of the blob's type.
pub(crate) fn mime_matches(pattern: &str, mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or(mime).trim();
    if pattern == "*/*" {
        return essence.contains('/');
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => essence
            .split_once('/')
            .is_some_and(|(t, sub)| t.eq_ignore_ascii_case(prefix) && !sub.is_empty()),
        None => essence.eq_ignore_ascii_case(pattern),
    }
}

// ---------------------------------------------------------------------------------------------
// The walk

/// Walks values against the definitions of one registry.
pub(crate) struct Validator<'r> {
    pub(crate) registry: &'r Registry,
}

impl Validator<'_> {
    /// Checks the data model first (no floats, integers in range, well-formed blobs, depth),
    /// so that the lexicon walk only meets valid values.
    pub(crate) fn data_model(value: &Ipld) -> Result<(), ValidationError> {
        guild_core::data::validate(value).map_err(|e| ValidationError::Invalid {
            path: e.path,
            rule: if e.kind == guild_core::data::DataModelErrorKind::TooDeep {
                Rule::TooDeep
            } else {
                Rule::DataModel(e.reason)
            },
        })
    }

    pub(crate) fn field(
        &self,
        f: &Field,
        v: &Ipld,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(), ValidationError> {
        if depth > MAX_DEPTH {
            return invalid(path, Rule::TooDeep);
        }
        match f {
            Field::Boolean(s) => {
                let Ipld::Bool(b) = v else {
                    return wrong_type(path, "boolean", v);
                };
                if let Some(c) = s.const_value
                    && *b != c
                {
                    return invalid(
                        path,
                        Rule::Const {
                            expected: c.to_string(),
                        },
                    );
                }
                Ok(())
            }
            Field::Integer(s) => {
                let Ipld::Integer(i) = v else {
                    return wrong_type(path, "integer", v);
                };
                let Ok(i) = i64::try_from(*i) else {
                    return invalid(
                        path,
                        Rule::DataModel("integer is out of the 64-bit signed range".into()),
                    );
                };
                integer_constraints(s, i).or_else(|rule| invalid(path, rule))
            }
            Field::String(s) => {
                let Ipld::String(text) = v else {
                    return wrong_type(path, "string", v);
                };
                string_constraints(s, text).or_else(|rule| invalid(path, rule))
            }
            Field::Bytes(s) => {
                let Ipld::Bytes(b) = v else {
                    return wrong_type(path, "bytes", v);
                };
                lengths(s.min_length, s.max_length, b.len() as u64, Unit::Bytes)
                    .or_else(|rule| invalid(path, rule))
            }
            Field::CidLink(_) => match v {
                Ipld::Link(_) => Ok(()),
                _ => wrong_type(path, "cid-link", v),
            },
            Field::Blob(s) => blob(s, v, path),
            Field::Unknown(_) => match v {
                Ipld::Map(m) if !is_blob(m) => Ok(()),
                _ => wrong_type(path, "object", v),
            },
            Field::Array(s) => {
                let Ipld::List(items) = v else {
                    return wrong_type(path, "array", v);
                };
                lengths(s.min_length, s.max_length, items.len() as u64, Unit::Items)
                    .or_else(|rule| invalid(path, rule))?;
                for (i, item) in items.iter().enumerate() {
                    self.field(&s.items, item, &Path::Index(path, i), depth + 1)?;
                }
                Ok(())
            }
            Field::Object(s) => self.object(s, v, path, depth),
            Field::Ref(r) => self.reference(&r.target, v, path, depth),
            Field::Union(u) => self.union(u, v, path, depth),
        }
    }

    pub(crate) fn object(
        &self,
        s: &ObjectSchema,
        v: &Ipld,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(), ValidationError> {
        let Ipld::Map(map) = v else {
            return wrong_type(path, "object", v);
        };
        if is_blob(map) {
            return wrong_type(path, "object", v);
        }
        for name in &s.required {
            if !map.contains_key(name) {
                return invalid(&Path::Key(path, name), Rule::Required);
            }
        }
        for (name, field) in &s.properties {
            let Some(value) = map.get(name) else {
                continue;
            };
            let here = Path::Key(path, name);
            if let Ipld::Null = value {
                if s.nullable.contains(name) {
                    continue;
                }
                return invalid(&here, Rule::NotNullable);
            }
            self.field(field, value, &here, depth + 1)?;
        }
        Ok(())
    }

    /// Validates `v` against the definition `target` names.
    pub(crate) fn reference(
        &self,
        target: &DefRef,
        v: &Ipld,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(), ValidationError> {
        let Some(def) = self.registry.def(target) else {
            return Err(ValidationError::BadSchema {
                path: path.render(),
                reason: format!("{target} is not defined by any loaded lexicon"),
            });
        };
        match def {
            Def::Type(f) => self.field(f, v, path, depth),
            Def::Record(r) => self.object(&r.record, v, path, depth),
            Def::Token(_) => {
                let name = target.to_string();
                match v {
                    Ipld::String(s) if *s == name => Ok(()),
                    _ => invalid(path, Rule::Token { expected: name }),
                }
            }
            other => Err(ValidationError::BadSchema {
                path: path.render(),
                reason: format!("{target} is a {}, not a data type", other.kind()),
            }),
        }
    }

    pub(crate) fn union(
        &self,
        u: &UnionSchema,
        v: &Ipld,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(), ValidationError> {
        let Ipld::Map(map) = v else {
            return wrong_type(path, "object", v);
        };
        let type_path = Path::Key(path, "$type");
        let Some(Ipld::String(t)) = map.get("$type") else {
            return invalid(path, Rule::MissingType);
        };
        let Some(found) = DefRef::parse(t) else {
            return invalid(&type_path, Rule::BadTypeName(truncate(t)));
        };
        if let Some(member) = u.refs.iter().find(|r| **r == found) {
            return self.reference(member, v, path, depth);
        }
        if u.closed {
            return invalid(
                &type_path,
                Rule::NotInUnion {
                    found: found.to_string(),
                    allowed: u.refs.iter().map(DefRef::to_string).collect(),
                },
            );
        }
        Ok(())
    }

    /// Builds and validates XRPC parameters from query-string pairs.
    pub(crate) fn params(
        &self,
        schema: &ParamsSchema,
        pairs: &[(String, String)],
    ) -> Result<BTreeMap<String, Ipld>, ValidationError> {
        let root = Path::Root;
        let mut out: BTreeMap<String, Ipld> = BTreeMap::new();
        for (name, raw) in pairs {
            let Some(field) = schema.properties.get(name) else {
                continue; // unknown parameters are ignored, as unknown fields are
            };
            let here = Path::Key(&root, name);
            match field {
                Field::Array(a) => {
                    let entry = out
                        .entry(name.clone())
                        .or_insert_with(|| Ipld::List(Vec::new()));
                    if let Ipld::List(items) = entry {
                        let at = Path::Index(&here, items.len());
                        items.push(coerce(&a.items, raw, &at)?);
                    }
                }
                Field::Unknown(_) => return invalid(&here, Rule::UnknownParam),
                scalar => {
                    if out.contains_key(name) {
                        return invalid(&here, Rule::RepeatedParam);
                    }
                    out.insert(name.clone(), coerce(scalar, raw, &here)?);
                }
            }
        }
        for (name, field) in &schema.properties {
            if out.contains_key(name) {
                continue;
            }
            let default = match field {
                Field::Boolean(s) => s.default.map(Ipld::Bool),
                Field::Integer(s) => s.default.map(|d| Ipld::Integer(d.into())),
                Field::String(s) => s.default.clone().map(Ipld::String),
                _ => None,
            };
            if let Some(d) = default {
                out.insert(name.clone(), d);
            }
        }
        let object = ObjectSchema {
            description: None,
            required: schema.required.clone(),
            nullable: Vec::new(),
            properties: schema.properties.clone(),
        };
        let value = Ipld::Map(out);
        self.object(&object, &value, &root, 0)?;
        match value {
            Ipld::Map(out) => Ok(out),
            _ => Ok(BTreeMap::new()),
        }
    }
}

fn blob(s: &BlobSchema, v: &Ipld, path: &Path<'_>) -> Result<(), ValidationError> {
    let Ipld::Map(m) = v else {
        return wrong_type(path, "blob", v);
    };
    if !is_blob(m) {
        return wrong_type(path, "blob", v);
    }
    if !matches!(m.get("ref"), Some(Ipld::Link(_))) {
        return invalid(path, Rule::MalformedBlob("`ref` must be a CID link"));
    }
    let Some(Ipld::String(mime)) = m.get("mimeType") else {
        return invalid(path, Rule::MalformedBlob("`mimeType` must be a string"));
    };
    if mime.is_empty() {
        return invalid(path, Rule::MalformedBlob("`mimeType` must not be empty"));
    }
    let size = match m.get("size") {
        Some(Ipld::Integer(n)) => u64::try_from(*n)
            .or_else(|_| invalid(path, Rule::MalformedBlob("`size` must not be negative")))?,
        _ => return invalid(path, Rule::MalformedBlob("`size` must be an integer")),
    };
    if !s.accept.is_empty() && !s.accept.iter().any(|p| mime_matches(p, mime)) {
        return invalid(
            path,
            Rule::BlobType {
                mime: truncate(mime),
                accept: s.accept.clone(),
            },
        );
    }
    if let Some(max) = s.max_size
        && size > max
    {
        return invalid(path, Rule::BlobTooLarge { max, size });
    }
    Ok(())
}

/// Reads one query-string value as a scalar parameter type.
fn coerce(field: &Field, raw: &str, path: &Path<'_>) -> Result<Ipld, ValidationError> {
    let syntax = |expected| {
        invalid(
            path,
            Rule::ParamSyntax {
                expected,
                value: truncate(raw),
            },
        )
    };
    match field {
        Field::Boolean(_) => match raw {
            "true" => Ok(Ipld::Bool(true)),
            "false" => Ok(Ipld::Bool(false)),
            _ => syntax("a boolean (true or false)"),
        },
        Field::Integer(_) => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return syntax("an integer");
            }
            match raw.parse::<i64>() {
                Ok(n) => Ok(Ipld::Integer(n.into())),
                Err(_) => syntax("a 64-bit signed integer"),
            }
        }
        Field::String(_) => Ok(Ipld::String(raw.to_owned())),
        _ => syntax("a boolean, integer or string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_patterns() {
        assert!(mime_matches("image/*", "image/png"));
        assert!(mime_matches("image/*", "IMAGE/png"));
        assert!(!mime_matches("image/*", "text/plain"));
        assert!(!mime_matches("image/*", "image/"));
        assert!(mime_matches("text/plain", "text/plain; charset=utf-8"));
        assert!(mime_matches("*/*", "application/octet-stream"));
        assert!(!mime_matches("*/*", "nonsense"));
    }

    #[test]
    fn paths_escape_like_json_pointers() {
        let root = Path::Root;
        let a = Path::Key(&root, "a/b");
        let b = Path::Index(&a, 3);
        let c = Path::Key(&b, "~x");
        assert_eq!(c.render(), "/a~1b/3/~0x");
        assert_eq!(root.render(), "/");
    }

    #[test]
    fn graphemes_are_counted_only_when_needed() {
        let s = StringSchema {
            description: None,
            format: None,
            max_length: None,
            min_length: None,
            max_graphemes: Some(2),
            min_graphemes: None,
            known_values: Vec::new(),
            enum_values: None,
            default: None,
            const_value: None,
        };
        assert!(string_constraints(&s, "ab").is_ok());
        // 🏳️‍🌈 is one grapheme of 14 bytes.
        assert!(string_constraints(&s, "🏳️‍🌈🏳️‍🌈").is_ok());
        assert_eq!(
            string_constraints(&s, "abc"),
            Err(Rule::TooLong {
                max: 2,
                actual: 3,
                unit: Unit::Graphemes
            })
        );
    }
}
