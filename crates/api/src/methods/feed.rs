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
