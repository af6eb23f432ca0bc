//! `coop.guild.agreement.*`: licence agreements with model builders. A steward offers
//! (`makeOffer`), the builder fetches the offer (`getOffer`, no token) and accepts it by
//! signing an accept op with its own key and posting it (`submitAccept`, no token: the op's
//! signature is the authentication), stewards countersign (`countersignAgreement`), and
//! anyone reads the collective's agreements (`listAgreements`, no token: contract
//! transparency).

use guild_core::Ipld;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Bytes as AT's JSON writes them: `{"$bytes": "<base64, no padding>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtBytes(pub Vec<u8>);

impl Serialize for AtBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        guild_core::data::to_json(&Ipld::Bytes(self.0.clone())).serialize(s)
    }
}

impl<'de> Deserialize<'de> for AtBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match guild_core::data::from_json(&v) {
            Ok(Ipld::Bytes(b)) => Ok(AtBytes(b)),
            Ok(_) => Err(de::Error::custom("expected {\"$bytes\": …}")),
            Err(e) => Err(de::Error::custom(format!("{}: {}", e.path, e.reason))),
        }
    }
}

/// The offer document: what a steward hands a builder (a file) and what `getOffer` answers.
/// Everything a builder needs to read the offer, check its signature and accept it with only
/// a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferDocument {
    /// The document's format version: 1.
    pub version: i64,
    /// The collective's id.
    pub collective: String,
    /// The offer's id (the CID of the offer op): the agreement's id.
    pub offer: String,
    /// The signed offer op, as stored in the collective's log.
    pub op: AtBytes,
    /// The plain-language summary of the terms offered.
    pub summary: String,
    /// The node to post the accept to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The offer document's format version.
pub const OFFER_DOCUMENT_VERSION: i64 = 1;

/// An amount of money in minor units (`coop.guild.defs#money`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// In minor units (cents).
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// `coop.guild.agreement.makeOffer`.
pub mod make_offer {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.agreement.makeOffer";

    crate::methods::method!(
        /// `coop.guild.agreement.makeOffer`.
        procedure MakeOffer
    );

    /// The offer: a charter template and its parameters.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Input {
        /// The collective; default: the only one the node holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collective: Option<String>,
        /// The builder's DID.
        pub builder: String,
        /// The charter template's id.
        pub template: String,
        /// The price: a fixed fee's fee, a per-query template's fee per thousand queries, a
        /// revenue share's minimum payment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub price: Option<super::Money>,
        /// The term in days, replacing the template's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub term_days: Option<i64>,
        /// Only records of these collections.
        #[serde(
            default,
            deserialize_with = "crate::methods::null_as_default",
            skip_serializing_if = "Vec::is_empty"
        )]
        pub collections: Vec<String>,
        /// Seconds until the offer lapses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expires_in_secs: Option<i64>,
        /// A note to the builder.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub note: Option<String>,
    }

    /// The offer op and its document.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Output {
        /// The offer op's id.
        pub op: String,
        /// The collective's id.
        pub collective: String,
        /// The offer document to hand the builder.
        pub offer: super::OfferDocument,
    }
}

/// `coop.guild.agreement.getOffer`.
pub mod get_offer {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.agreement.getOffer";

    crate::methods::method!(
        /// `coop.guild.agreement.getOffer`.
        query GetOffer
    );

    /// Which offer.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Params {
        /// The collective; default: the only one the node holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collective: Option<String>,
        /// The offer's id.
        pub offer: String,
    }

    /// The offer document.
    pub type Output = super::OfferDocument;
}

/// `coop.guild.agreement.submitAccept`.
pub mod submit_accept {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.agreement.submitAccept";

    crate::methods::method!(
        /// `coop.guild.agreement.submitAccept`.
        procedure SubmitAccept
    );

    /// The builder's signed accept op.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Input {
        /// The collective's id.
        pub collective: String,
        /// The signed accept op.
        pub op: super::AtBytes,
    }

    /// The accept op.
    pub type Output = crate::methods::collective::OpWritten;
}

/// `coop.guild.agreement.countersignAgreement`.
pub mod countersign_agreement {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.agreement.countersignAgreement";

    crate::methods::method!(
        /// `coop.guild.agreement.countersignAgreement`.
        procedure CountersignAgreement
    );

    /// Which agreement.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Input {
        /// The collective; default: the only one the node holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collective: Option<String>,
        /// The offer's id.
        pub offer: String,
    }

    /// The countersign op.
    pub type Output = crate::methods::collective::OpWritten;
}

/// `coop.guild.agreement.listAgreements`.
pub mod list_agreements {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.agreement.listAgreements";

    crate::methods::method!(
        /// `coop.guild.agreement.listAgreements`.
        query ListAgreements
    );

    /// Which collective.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Params {
        /// The collective; default: the only one the node holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collective: Option<String>,
    }

    /// The collective's agreements.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Output {
        /// The collective's id.
        pub collective: String,
        /// Whether the charter keeps prices private (then no entry has a price).
        pub prices_private: bool,
        /// The agreements, oldest offer first.
        pub agreements: Vec<Agreement>,
    }

    /// One agreement.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Agreement {
        /// The offer's id (the agreement's id).
        pub offer: String,
        /// The template id.
        pub template: String,
        /// The template's version.
        pub template_version: i64,
        /// The builder's DID.
        pub builder: String,
        /// `offered`, `accepted`, `in-force` or `expired`.
        pub status: String,
        /// When the offer was made (the offer op's `createdAt`).
        pub offered_at: String,
        /// When the offer lapses, if it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expires_at: Option<String>,
        /// When the quorum of countersignatures was reached (that op's `createdAt`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub in_force_since: Option<String>,
        /// The term.
        pub term: Term,
        /// The price; absent when the charter keeps prices private.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub price: Option<Price>,
        /// Only records of these collections; absent: every consented record.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collections: Option<Vec<String>>,
        /// The stewards who countersigned.
        pub countersigned_by: Vec<String>,
        /// The plain-language summary (without the price when prices are private).
        pub summary: String,
    }

    /// An agreement's term.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Term {
        /// Its length in days; absent: until terminated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub days: Option<i64>,
        /// When it started (in force since).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub start: Option<String>,
        /// When it ends (start plus days).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub end: Option<String>,
    }

    /// What the builder pays.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Price {
        /// `fixed-fee`, `per-query`, `revenue-share`, `no-fee` or `other`.
        pub kind: String,
        /// The fee, the fee per thousand queries, or the revenue share's minimum.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub amount: Option<super::Money>,
        /// A fixed fee's period.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub period: Option<String>,
        /// A revenue share, in basis points.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub share: Option<i64>,
        /// A revenue share's base.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub base: Option<String>,
    }
}
