//! # guild-lexicon
//!
//! Lexicons for Guild: the schema language every record and governance op is checked against
//! (protocol.md §3).
//!
//! It owns
//! - the Lexicon v1 document model and its parser ([`schema`]): every type (record, query,
//!   procedure, subscription, permission-set, token, object, array, the primitives, blob,
//!   cid-link, bytes, unknown, ref, union, params), with every rule that can be checked inside
//!   one document;
//! - the [`Registry`]: Guild's own lexicons, embedded in the binary from the workspace's
//!   `lexicons/` directory ([`Registry::builtin`]), plus extension documents loaded at start
//!   ([`Registry::extend`], [`Registry::load_dir`]); a conflicting or inconsistent extension is
//!   refused with a clear message and the rest still load, so the registry is always
//!   consistent (every reference resolves);
//! - validation of values in the AT data model ([`guild_core::Ipld`]) against the registry
//!   ([`validate`]): records by `$type`, XRPC parameters from a query string, inputs, outputs
//!   and subscription messages, with errors that name the path into the value and the rule
//!   broken.
//!
//! ```
//! use guild_lexicon::{Registry, ValidationError};
//!
//! let registry = Registry::builtin();
//! let text = guild_core::data::from_json(&serde_json::json!({
//!     "$type": "coop.guild.data.text",
//!     "body": "Grey water, older than the names we give it.",
//!     "createdAt": "2025-03-14T09:26:53Z",
//! }))?;
//! registry.validate_record(&text)?;
//!
//! let untitled = guild_core::data::from_json(&serde_json::json!({
//!     "$type": "coop.guild.data.text",
//!     "title": 7,
//!     "body": "…",
//!     "createdAt": "2025-03-14T09:26:53Z",
//! }))?;
//! let err = registry.validate_record(&untitled).unwrap_err();
//! assert_eq!(err.to_string(), "/title: expected string, found integer");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! It must not know any one record type: Guild's schemas are data in `lexicons/`, not code
//! here. It must not do I/O, except in [`fs`], which reads lexicon files for
//! [`Registry::load_dir`]; the rest takes already-read text. No runtime, clock or socket.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod embedded;
pub mod fs;
mod registry;
pub mod schema;
pub mod validate;

pub use embedded::BUILTIN_ORIGIN;
pub use registry::{AddError, LoadError, LoadErrorKind, Problem, Registry};
pub use schema::{Def, DefRef, Field, KeyType, LexiconDoc, ParseError, StringFormat};
pub use validate::{Rule, Unit, ValidationError};
