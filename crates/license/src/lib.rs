//! # guild-license
//!
//! Licences (protocol.md §6) as one typed contract structure, and everything made from it.
//!
//! It owns
//! - the contract structure ([`Contract`], [`terms`]): uses, user classes, territory,
//!   flow-down, attribution, compensation in integer minor units of an ISO 4217 currency or
//!   basis points, term, notice, what happens on termination, reporting, canary;
//! - its record form ([`record`]): `coop.guild.licence.template` as the lexicon writes it,
//!   converted both ways without loss (this crate reads the lexicon shape itself rather than
//!   depending on guild-gov; a test holds the two equal);
//! - the standard templates ([`standard`]) with the ids the charter uses;
//! - the plain-language summary and full terms ([`text`]), rendered from the fields;
//! - the machine-readable forms ([`emit`]): ODRL 2.2 JSON-LD with the Guild profile, RSL 1.0,
//!   AI-preferences `Content-Usage`, Content Signals, CC signals, TDMRep; and what each
//!   cannot express ([`emit::unexpressed`], `docs/licence-formats.md`);
//! - the one decision whether a record may be used ([`may()`]).
//!
//! It must not do I/O (no runtime, disk, socket or clock: time is an argument), and must not
//! write a form per template: every form is a function of the structure.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod emit;
pub mod error;
pub mod may;
pub mod record;
pub mod standard;
pub mod terms;
pub mod text;

pub use emit::{AgreementParty, Format, Publication};
pub use error::LicenceError;
pub use may::{Agreement, Answer, Consent, ConsentScope, Refusal, UseRequest, may};
pub use record::TemplateRecord;
pub use standard::{STANDARD_IDS, standard, standard_template};
pub use terms::{
    Attribution, AttributionForm, BasisPoints, Compensation, Contract, Country, Currency,
    FeePeriod, FlowDown, Money, OnTermination, ReportContent, Reporting, RevenueBase, TemplateId,
    Territory, UseKind, UserClass,
};
