//! Guild's own XRPC methods with typed bodies: one module per `coop.guild.collective.*` and
//! `coop.guild.node.*` method, each with its `NSID`, the serde types of its parameters (a
//! query's `Params`) or input (a procedure's `Input`) and of its `Output`, named as the
//! method's lexicon (`lexicons/coop/guild/<group>/<method>.json`) names them, and a marker type
//! implementing [`Method`].
//!
//! The server parses requests into these types after the router has validated them against
//! the lexicon (`validation.rs`); the client sends and reads them ([`crate::Client::call`]).

pub mod agreement;
pub mod bundle;
pub mod collective;
pub mod feed;
pub mod node;
pub mod payout;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// How an XRPC method is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A query: `GET`, its input in the query string.
    Query,
    /// A procedure: `POST`, its input a JSON body.
    Procedure,
}

/// An XRPC method with a lexicon and typed bodies.
pub trait Method {
    /// The method's NSID, which is its lexicon's id.
    const NSID: &'static str;
    /// Query or procedure.
    const KIND: Kind;
    /// What the caller sends: a query's parameters, or a procedure's JSON input.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What the method answers.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// Declares a method's marker type for the `NSID`, `Params` or `Input` and `Output` of the
/// module it is used in.
macro_rules! method {
    ($(#[$doc:meta])* query $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl $crate::methods::Method for $name {
            const NSID: &'static str = NSID;
            const KIND: $crate::methods::Kind = $crate::methods::Kind::Query;
            type Input = Params;
            type Output = Output;
        }
    };
    ($(#[$doc:meta])* procedure $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl $crate::methods::Method for $name {
            const NSID: &'static str = NSID;
            const KIND: $crate::methods::Kind = $crate::methods::Kind::Procedure;
            type Input = Input;
            type Output = Output;
        }
    };
}
pub(crate) use method;

/// Reads `null` as the default value: for optional lists whose lexicon lets them be null.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}
