//! The registry: a consistent set of lexicon documents, and validation against it.

use std::collections::{BTreeMap, BTreeSet};

use guild_core::Ipld;
use guild_core::syntax::{self, Nsid};
use serde::Serialize;

use crate::schema::{Def, DefRef, Field, KeyType, LexiconDoc, ParseError, escape};
use crate::validate::{Path, Rule, ValidationError, Validator};

/// A set of lexicon documents, keyed by NSID, with where each came from.
///
/// Build one with [`Registry::builtin`] (Guild's own lexicons, embedded in the binary), then
/// [`Registry::extend`] it with extension documents (or use [`Registry::load_dir`], which reads
/// them from a directory). A registry built that way is consistent: every reference in it
/// resolves. [`Registry::add`] adds single documents without that guarantee, and
/// [`Registry::check`] reports what is missing.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    docs: BTreeMap<Nsid, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    doc: LexiconDoc,
    origin: String,
    builtin: bool,
}

/// Why a document was not added to a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// The document is not a valid Lexicon v1 document.
    #[error("not a valid lexicon: {0}")]
    Parse(#[from] ParseError),
    /// Another, different document with the same NSID is already loaded.
    #[error(
        "{nsid} is already defined by {existing}, differently; a loaded lexicon cannot be \
         replaced (a breaking change needs a new NSID)"
    )]
    Conflict {
        /// The NSID both documents claim.
        nsid: Nsid,
        /// Where the loaded one came from.
        existing: String,
    },
}

/// A consistency problem of one document within a set: a reference that does not resolve, or
/// that names a definition of the wrong kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{nsid} {path}: {reason}")]
pub struct Problem {
    /// The document with the problem.
    pub nsid: Nsid,
    /// Where the document came from (a file path, or `built-in …`).
    pub origin: String,
    /// JSON-pointer path into the document.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// A document refused while loading a batch ([`Registry::extend`], [`Registry::load_dir`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {kind}")]
pub struct LoadError {
    /// Where the document came from (a file path, or `built-in …`).
    pub origin: String,
    /// Why it was refused.
    pub kind: LoadErrorKind,
}

/// Why a document was refused while loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// The document is invalid, or conflicts with a loaded one.
    #[error(transparent)]
    Add(#[from] AddError),
    /// The document is valid alone, but not with the rest of the set (its references do not
    /// resolve), so it was left out.
    #[error("refused: {0}")]
    Inconsistent(Problem),
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Parses a document and adds it. Adding a document identical to a loaded one is a no-op;
    /// a different document with the same NSID is refused. References are not checked (see
    /// [`Registry::check`]).
    pub fn add(&mut self, origin: impl Into<String>, text: &str) -> Result<Nsid, AddError> {
        let doc = LexiconDoc::parse(text)?;
        self.add_doc(origin, doc)
    }

    /// Adds a parsed document; see [`Registry::add`].
    pub fn add_doc(
        &mut self,
        origin: impl Into<String>,
        doc: LexiconDoc,
    ) -> Result<Nsid, AddError> {
        self.insert(origin.into(), doc, false)
    }

    fn insert(&mut self, origin: String, doc: LexiconDoc, builtin: bool) -> Result<Nsid, AddError> {
        let nsid = doc.id.clone();
        if let Some(existing) = self.docs.get(&nsid) {
            if existing.doc == doc {
                return Ok(nsid);
            }
            return Err(AddError::Conflict {
                nsid,
                existing: existing.origin.clone(),
            });
        }
        self.docs.insert(
            nsid.clone(),
            Entry {
                doc,
                origin,
                builtin,
            },
        );
        Ok(nsid)
    }

    /// Adds a batch of documents given as `(origin, JSON text)`, such as the files of an
    /// extension directory, keeping the registry consistent: a document that does not parse,
    /// conflicts with a loaded one, or whose references do not resolve (also after another
    /// document of the batch was refused) is left out. Returns one error per refused document;
    /// the others stay loaded.
    pub fn extend<I, S>(&mut self, sources: I) -> Vec<LoadError>
    where
        I: IntoIterator<Item = (String, S)>,
        S: AsRef<str>,
    {
        self.extend_inner(sources, false)
    }

    pub(crate) fn extend_inner<I, S>(&mut self, sources: I, builtin: bool) -> Vec<LoadError>
    where
        I: IntoIterator<Item = (String, S)>,
        S: AsRef<str>,
    {
        let mut errors = Vec::new();
        let mut added: BTreeSet<Nsid> = BTreeSet::new();
        for (origin, text) in sources {
            let before = self.docs.len();
            let result = LexiconDoc::parse(text.as_ref())
                .map_err(AddError::from)
                .and_then(|doc| self.insert(origin.clone(), doc, builtin));
            match result {
                Ok(nsid) if self.docs.len() > before => {
                    added.insert(nsid);
                }
                Ok(_) => {} // identical to a loaded document
                Err(e) => errors.push(LoadError {
                    origin,
                    kind: e.into(),
                }),
            }
        }
        // Refuse documents with problems until none are left: refusing one can break another.
        let mut refused: BTreeSet<Nsid> = BTreeSet::new();
        loop {
            let mut found = Vec::new();
            for nsid in &added {
                if let Some(entry) = self.docs.get(nsid)
                    && let Some((mut problem, missing)) =
                        self.doc_problems(entry).into_iter().next()
                {
                    if missing.is_some_and(|m| refused.contains(&m)) {
                        problem.reason.push_str(" (its lexicon was refused)");
                    }
                    found.push(problem);
                }
            }
            if found.is_empty() {
                break;
            }
            for problem in found {
                added.remove(&problem.nsid);
                self.docs.remove(&problem.nsid);
                refused.insert(problem.nsid.clone());
                errors.push(LoadError {
                    origin: problem.origin.clone(),
                    kind: LoadErrorKind::Inconsistent(problem),
                });
            }
        }
        errors
    }

    /// Every consistency problem of the set: references that do not resolve, and references to
    /// definitions of the wrong kind. Empty for a registry built by [`Registry::builtin`] and
    /// [`Registry::extend`].
    pub fn check(&self) -> Vec<Problem> {
        self.docs
            .values()
            .flat_map(|e| self.doc_problems(e).into_iter().map(|(p, _)| p))
            .collect()
    }

    /// The problems of one document, each with the NSID it failed to find, if that was it.
    fn doc_problems(&self, entry: &Entry) -> Vec<(Problem, Option<Nsid>)> {
        let mut out = Vec::new();
        let mut report = |path: String, reason: String, missing: Option<Nsid>| {
            out.push((
                Problem {
                    nsid: entry.doc.id.clone(),
                    origin: entry.origin.clone(),
                    path,
                    reason,
                },
                missing,
            ));
        };
        for (name, def) in &entry.doc.defs {
            let base = format!("/defs/{}", escape(name));
            let mut fields: Vec<(String, &Field)> = Vec::new();
            match def {
                Def::Record(r) => {
                    push_object(&mut fields, &format!("{base}/record"), &r.record.properties);
                }
                Def::Query(x) | Def::Procedure(x) => {
                    if let Some(p) = &x.parameters {
                        push_object(&mut fields, &format!("{base}/parameters"), &p.properties);
                    }
                    for (which, body) in [("input", &x.input), ("output", &x.output)] {
                        if let Some(s) = body.as_ref().and_then(|b| b.schema.as_ref()) {
                            fields.push((format!("{base}/{which}/schema"), s));
                        }
                    }
                }
                Def::Subscription(s) => {
                    if let Some(p) = &s.parameters {
                        push_object(&mut fields, &format!("{base}/parameters"), &p.properties);
                    }
                    if let Some(m) = &s.message {
                        fields.push((format!("{base}/message/schema"), &m.schema));
                    }
                }
                Def::Type(f) => fields.push((base, f)),
                Def::PermissionSet(_) | Def::Token(_) => {}
            }
            // Depth-first over inline types; bounded by the parser's depth limit.
            while let Some((path, field)) = fields.pop() {
                match field {
                    Field::Object(o) => push_object(&mut fields, &path, &o.properties),
                    Field::Array(a) => fields.push((format!("{path}/items"), &a.items)),
                    Field::Ref(r) => {
                        if let Err((reason, missing)) = self.resolve_for_ref(&r.target) {
                            report(format!("{path}/ref"), reason, missing);
                        }
                    }
                    Field::Union(u) => {
                        for (i, target) in u.refs.iter().enumerate() {
                            if let Err((reason, missing)) = self.resolve_for_union(target) {
                                report(format!("{path}/refs/{i}"), reason, missing);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        out
    }

    fn resolve_any(&self, target: &DefRef) -> Result<&Def, (String, Option<Nsid>)> {
        let Some(entry) = self.docs.get(&target.nsid) else {
            return Err((
                format!(
                    "refers to {target}, but no loaded lexicon defines {}",
                    target.nsid
                ),
                Some(target.nsid.clone()),
            ));
        };
        entry.doc.defs.get(&target.name).ok_or_else(|| {
            (
                format!(
                    "refers to {target}, but {} has no definition {:?}",
                    target.nsid, target.name
                ),
                None,
            )
        })
    }

    fn resolve_for_ref(&self, target: &DefRef) -> Result<(), (String, Option<Nsid>)> {
        match self.resolve_any(target)? {
            Def::Type(_) | Def::Record(_) | Def::Token(_) => Ok(()),
            other => Err((
                format!(
                    "refers to {target}, a {}, which is not a data type",
                    other.kind()
                ),
                None,
            )),
        }
    }

    fn resolve_for_union(&self, target: &DefRef) -> Result<(), (String, Option<Nsid>)> {
        match self.resolve_any(target)? {
            Def::Type(Field::Object(_)) | Def::Record(_) => Ok(()),
            other => Err((
                format!(
                    "union member {target} is a {}; union members must be objects or records",
                    other.kind()
                ),
                None,
            )),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Lookups

    /// The number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The document with this NSID.
    pub fn get(&self, nsid: &str) -> Option<&LexiconDoc> {
        self.docs.get(nsid).map(|e| &e.doc)
    }

    /// Whether a document with this NSID is loaded (of any kind).
    pub fn contains(&self, nsid: &str) -> bool {
        self.docs.contains_key(nsid)
    }

    /// Whether `nsid` is a known record type: the policy question of AT's `validate` flag
    /// (Guild's collective repos refuse records whose type is not known).
    pub fn is_record_type(&self, nsid: &str) -> bool {
        matches!(
            self.get(nsid).and_then(LexiconDoc::main),
            Some(Def::Record(_))
        )
    }

    /// The record-key type of a record collection.
    pub fn record_key_type(&self, nsid: &str) -> Option<&KeyType> {
        match self.get(nsid)?.main()? {
            Def::Record(r) => Some(&r.key),
            _ => None,
        }
    }

    /// Where the document with this NSID came from.
    pub fn origin(&self, nsid: &str) -> Option<&str> {
        self.docs.get(nsid).map(|e| e.origin.as_str())
    }

    /// Whether the document with this NSID is one of Guild's built-in lexicons.
    pub fn is_builtin(&self, nsid: &str) -> bool {
        self.docs.get(nsid).is_some_and(|e| e.builtin)
    }

    /// The definition a reference names.
    pub fn def(&self, target: &DefRef) -> Option<&Def> {
        self.docs.get(&target.nsid)?.doc.defs.get(&target.name)
    }

    /// Every document with its origin, in NSID order.
    pub fn iter(&self) -> impl Iterator<Item = (&LexiconDoc, &str)> {
        self.docs.values().map(|e| (&e.doc, e.origin.as_str()))
    }

    fn main_def(&self, nsid: &str) -> Result<&Def, ValidationError> {
        let doc = self
            .get(nsid)
            .ok_or_else(|| ValidationError::UnknownType(nsid.to_owned()))?;
        doc.main().ok_or_else(|| ValidationError::WrongKind {
            reference: nsid.to_owned(),
            expected: "record, query, procedure or subscription",
            found: "set of definitions without main",
        })
    }

    // -----------------------------------------------------------------------------------------
    // Validation

    fn validator(&self) -> Validator<'_> {
        Validator { registry: self }
    }

    /// Validates a record: an object whose `$type` names a record lexicon in the registry.
    ///
    /// A `$type` that no loaded lexicon defines gives [`ValidationError::UnknownType`], so the
    /// caller can apply its policy (AT's `validate` flag).
    pub fn validate_record(&self, value: &Ipld) -> Result<(), ValidationError> {
        Validator::data_model(value)?;
        let nsid = record_type(value)?;
        self.record_body(&nsid, value)
    }

    /// Validates a record of a given collection: as [`Registry::validate_record`], and its
    /// `$type` must name that collection.
    pub fn validate_record_as(
        &self,
        collection: &str,
        value: &Ipld,
    ) -> Result<(), ValidationError> {
        Validator::data_model(value)?;
        let nsid = record_type(value)?;
        let expected =
            DefRef::parse(collection).map_or_else(|| collection.to_owned(), |r| r.to_string());
        if nsid.to_string() != expected {
            return Err(ValidationError::Invalid {
                path: "/$type".into(),
                rule: Rule::TypeMismatch {
                    expected,
                    found: nsid.to_string(),
                },
            });
        }
        self.record_body(&nsid, value)
    }

    fn record_body(&self, target: &DefRef, value: &Ipld) -> Result<(), ValidationError> {
        if !self.contains(target.nsid.as_str()) {
            return Err(ValidationError::UnknownType(target.to_string()));
        }
        match self.def(target) {
            Some(Def::Record(r)) => self.validator().object(&r.record, value, &Path::Root, 0),
            Some(other) => Err(ValidationError::WrongKind {
                reference: target.to_string(),
                expected: "record",
                found: other.kind(),
            }),
            None => Err(ValidationError::UnknownType(target.to_string())),
        }
    }

    /// Validates a value against any data definition, named `nsid` (its `main`) or
    /// `nsid#name`: an object, a record's fields, a token, an array or a primitive type.
    pub fn validate_value(&self, reference: &str, value: &Ipld) -> Result<(), ValidationError> {
        let target = DefRef::parse(reference)
            .ok_or_else(|| ValidationError::UnknownType(reference.to_owned()))?;
        if self.def(&target).is_none() {
            return Err(ValidationError::UnknownType(target.to_string()));
        }
        Validator::data_model(value)?;
        self.validator().reference(&target, value, &Path::Root, 0)
    }

    /// Validates a record key against a collection's key type (`tid`, `nsid`, `literal:…`,
    /// `any`).
    pub fn validate_record_key(&self, collection: &str, rkey: &str) -> Result<(), ValidationError> {
        let key = match self.main_def(collection)? {
            Def::Record(r) => &r.key,
            other => {
                return Err(ValidationError::WrongKind {
                    reference: collection.to_owned(),
                    expected: "record",
                    found: other.kind(),
                });
            }
        };
        let ok = match key {
            KeyType::Tid => syntax::Tid::parse(rkey).is_ok(),
            KeyType::Nsid => syntax::Nsid::parse(rkey).is_ok(),
            KeyType::Literal(k) => k.as_str() == rkey,
            KeyType::Any => syntax::RecordKey::parse(rkey).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(ValidationError::BadRecordKey {
                collection: collection.to_owned(),
                rkey: rkey.chars().take(64).collect(),
                expected: key.to_string(),
            })
        }
    }

    /// Builds and validates the parameters of a query, procedure or subscription from the
    /// pairs of a query string (already percent-decoded; an array parameter repeats its name).
    /// Each value is read as its declared type (`true`/`false`, a decimal integer, a string),
    /// defaults are filled in, and the result is checked like an object. Parameters the lexicon
    /// does not declare are ignored.
    pub fn validate_params(
        &self,
        nsid: &str,
        pairs: &[(String, String)],
    ) -> Result<BTreeMap<String, Ipld>, ValidationError> {
        let params = match self.main_def(nsid)? {
            Def::Query(x) | Def::Procedure(x) => x.parameters.as_ref(),
            Def::Subscription(s) => s.parameters.as_ref(),
            other => {
                return Err(ValidationError::WrongKind {
                    reference: nsid.to_owned(),
                    expected: "query, procedure or subscription",
                    found: other.kind(),
                });
            }
        };
        match params {
            Some(p) => self.validator().params(p, pairs),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Validates the input (request body) of a procedure.
    pub fn validate_input(&self, nsid: &str, value: &Ipld) -> Result<(), ValidationError> {
        let body = match self.main_def(nsid)? {
            Def::Procedure(x) => x.input.as_ref(),
            other => {
                return Err(ValidationError::WrongKind {
                    reference: nsid.to_owned(),
                    expected: "procedure",
                    found: other.kind(),
                });
            }
        };
        self.body(nsid, "input", body, value)
    }

    /// Validates the output (response body) of a query or procedure.
    pub fn validate_output(&self, nsid: &str, value: &Ipld) -> Result<(), ValidationError> {
        let body = match self.main_def(nsid)? {
            Def::Query(x) | Def::Procedure(x) => x.output.as_ref(),
            other => {
                return Err(ValidationError::WrongKind {
                    reference: nsid.to_owned(),
                    expected: "query or procedure",
                    found: other.kind(),
                });
            }
        };
        self.body(nsid, "output", body, value)
    }

    fn body(
        &self,
        nsid: &str,
        which: &'static str,
        body: Option<&crate::schema::Body>,
        value: &Ipld,
    ) -> Result<(), ValidationError> {
        let no_body = || ValidationError::NoBody {
            nsid: nsid.to_owned(),
            which,
        };
        let body = body.ok_or_else(no_body)?;
        Validator::data_model(value)?;
        match &body.schema {
            Some(schema) => self.validator().field(schema, value, &Path::Root, 0),
            None if body.encoding == "application/json" => match value {
                Ipld::Map(_) => Ok(()),
                _ => Err(ValidationError::Invalid {
                    path: "/".into(),
                    rule: Rule::WrongType {
                        expected: "object",
                        found: crate::validate::kind_of(value),
                    },
                }),
            },
            None => Err(no_body()),
        }
    }

    /// Validates a subscription message that carries its type in `$type` (the JSON form of
    /// an event stream), such as `{"$type": "coop.guild.feed.subscribe#info", …}`.
    pub fn validate_message(&self, nsid: &str, value: &Ipld) -> Result<(), ValidationError> {
        let message_type = match value {
            Ipld::Map(m) => match m.get("$type") {
                Some(Ipld::String(t)) => Some(t.clone()),
                _ => None,
            },
            _ => None,
        };
        match message_type {
            Some(t) => self.validate_message_as(nsid, &t, value),
            None => self.message_schema(nsid).and_then(|schema| {
                Validator::data_model(value)?;
                self.validator().field(schema, value, &Path::Root, 0)
            }),
        }
    }

    /// Validates a subscription message whose type comes from the frame header (`t`, such as
    /// `#bundle`, relative to the subscription's NSID) rather than from a `$type` in the body.
    /// A type outside the message union is refused if the union is closed and let through if it
    /// is open (clients skip message types they do not know).
    pub fn validate_message_as(
        &self,
        nsid: &str,
        message_type: &str,
        value: &Ipld,
    ) -> Result<(), ValidationError> {
        let schema = self.message_schema(nsid)?;
        Validator::data_model(value)?;
        let Field::Union(u) = schema else {
            return self.validator().field(schema, value, &Path::Root, 0);
        };
        let base = self
            .get(nsid)
            .map(|d| d.id.clone())
            .ok_or_else(|| ValidationError::UnknownType(nsid.to_owned()))?;
        let Some(t) = DefRef::parse_in(message_type, &base) else {
            return Err(ValidationError::Invalid {
                path: "/$type".into(),
                rule: Rule::BadTypeName(message_type.chars().take(64).collect()),
            });
        };
        if let Ipld::Map(m) = value
            && let Some(Ipld::String(own)) = m.get("$type")
            && DefRef::parse_in(own, &base).as_ref() != Some(&t)
        {
            return Err(ValidationError::Invalid {
                path: "/$type".into(),
                rule: Rule::TypeMismatch {
                    expected: t.to_string(),
                    found: own.chars().take(64).collect(),
                },
            });
        }
        if u.refs.contains(&t) {
            return self.validator().reference(&t, value, &Path::Root, 0);
        }
        if u.closed {
            return Err(ValidationError::Invalid {
                path: "/$type".into(),
                rule: Rule::NotInUnion {
                    found: t.to_string(),
                    allowed: u.refs.iter().map(DefRef::to_string).collect(),
                },
            });
        }
        Ok(())
    }

    fn message_schema(&self, nsid: &str) -> Result<&Field, ValidationError> {
        match self.main_def(nsid)? {
            Def::Subscription(s) => {
                s.message
                    .as_ref()
                    .map(|m| &m.schema)
                    .ok_or_else(|| ValidationError::NoBody {
                        nsid: nsid.to_owned(),
                        which: "message",
                    })
            }
            other => Err(ValidationError::WrongKind {
                reference: nsid.to_owned(),
                expected: "subscription",
                found: other.kind(),
            }),
        }
    }

    /// Serializes a Rust value as DAG-CBOR, decodes it strictly, and validates the result as a
    /// record: the check that keeps typed records and their lexicons from drifting apart.
    pub fn validate_serialized<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<(), ValidationError> {
        let bytes =
            guild_core::data::encode_serde(value).map_err(|e| ValidationError::Invalid {
                path: "/".into(),
                rule: Rule::DataModel(e.to_string()),
            })?;
        let ipld = guild_core::data::decode(&bytes).map_err(|e| ValidationError::Invalid {
            path: "/".into(),
            rule: Rule::DataModel(e.to_string()),
        })?;
        self.validate_record(&ipld)
    }
}

fn push_object<'a>(
    fields: &mut Vec<(String, &'a Field)>,
    path: &str,
    properties: &'a BTreeMap<String, Field>,
) {
    for (name, f) in properties {
        fields.push((format!("{path}/properties/{}", escape(name)), f));
    }
}

/// The `$type` of a record, as a reference.
fn record_type(value: &Ipld) -> Result<DefRef, ValidationError> {
    let Ipld::Map(map) = value else {
        return Err(ValidationError::Invalid {
            path: "/".into(),
            rule: Rule::WrongType {
                expected: "object (a record)",
                found: crate::validate::kind_of(value),
            },
        });
    };
    let t = match map.get("$type") {
        Some(Ipld::String(t)) => t,
        Some(other) => {
            return Err(ValidationError::Invalid {
                path: "/$type".into(),
                rule: Rule::WrongType {
                    expected: "string",
                    found: crate::validate::kind_of(other),
                },
            });
        }
        None => {
            return Err(ValidationError::Invalid {
                path: "/".into(),
                rule: Rule::MissingType,
            });
        }
    };
    DefRef::parse(t).ok_or_else(|| ValidationError::Invalid {
        path: "/$type".into(),
        rule: Rule::BadTypeName(t.chars().take(64).collect()),
    })
}
