//! `coop.guild.feed.*`: a builder's login (the subscription itself is a WebSocket, served
//! by [`crate::feeds`]).

/// `coop.guild.feed.getChallenge`.
pub mod get_challenge {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.feed.getChallenge";

    crate::methods::method!(
        /// `coop.guild.feed.getChallenge`.
        query GetChallenge
    );

    /// No parameters.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Params {}

    /// A challenge to sign.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Output {
        /// Random hex, usable once.
        pub nonce: String,
        /// The node's DID.
        pub audience: String,
        /// When it lapses.
        pub expires_at: String,
    }
}

/// `coop.guild.feed.login`.
pub mod login {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.feed.login";

    crate::methods::method!(
        /// `coop.guild.feed.login`.
        procedure Login
    );

    /// A signed challenge.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Input {
        /// The builder's DID.
        pub did: String,
        /// The challenge's nonce.
        pub nonce: String,
        /// The signature of the challenge's bytes.
        pub signature: crate::methods::agreement::AtBytes,
    }

    /// The session.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Output {
        /// The builder.
        pub did: String,
        /// The bearer token.
        pub token: String,
        /// When it lapses.
        pub expires_at: String,
    }
}

/// `coop.guild.feed.submitReceipt`.
pub mod submit_receipt {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.feed.submitReceipt";

    crate::methods::method!(
        /// `coop.guild.feed.submitReceipt`.
        procedure SubmitReceipt
    );

    /// The builder's signed receipt op.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Input {
        /// The collective's id.
        pub collective: String,
        /// The signed receipt op.
        pub op: crate::methods::agreement::AtBytes,
    }

    /// The receipt op.
    pub type Output = crate::methods::collective::OpWritten;
}

/// `coop.guild.feed.listDeliveries`.
pub mod list_deliveries {
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.feed.listDeliveries";

    crate::methods::method!(
        /// `coop.guild.feed.listDeliveries`.
        query ListDeliveries
    );

    /// Largest `limit`.
    pub const MAX_LIMIT: u64 = 100;

    /// Which deliveries.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Params {
        /// Only this builder's (a DID).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub builder: Option<String>,
        /// Only those of this bundle (its manifest CID).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bundle: Option<String>,
        /// The `cursor` of the previous page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cursor: Option<String>,
        /// Entries per page (1–100, default 50).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<u64>,
    }

    /// A page of the delivery log.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Output {
        /// Oldest first.
        pub deliveries: Vec<Delivery>,
        /// Where the next page starts, when there may be one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cursor: Option<String>,
    }

    /// One delivery.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Delivery {
        /// Its place in the log.
        pub seq: u64,
        /// The builder.
        pub builder: String,
        /// When (the node's clock).
        pub time: String,
        /// The client's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub remote: Option<String>,
        /// `download` or `event`.
        pub kind: String,
        /// The bundle downloaded, or announced by a `#bundle` event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bundle: Option<String>,
        /// A download's file: `car`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub file: Option<String>,
        /// A download's `Range` header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub range: Option<String>,
        /// A download's HTTP status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status: Option<u64>,
        /// A download's body bytes handed to the connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bytes: Option<u64>,
        /// Whether a download's body was sent to its end.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub complete: Option<bool>,
        /// An event's `seq` in the feed log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub event_seq: Option<u64>,
        /// An event's type: `#bundle`, `#revocation`, `#agreement`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub event_type: Option<String>,
        /// The subscription an event was sent on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub connection: Option<u64>,
    }
}
