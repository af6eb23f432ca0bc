//! `coop.guild.payout.*`: payout statements.

/// `coop.guild.payout.bookStatement`.
pub mod book_statement {
    use guild_gov::body::{Money, Period, StatementBody};
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.payout.bookStatement";

    crate::methods::method!(
        /// `coop.guild.payout.bookStatement`.
        procedure BookStatement
    );

    /// The revenue to book.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Input {
        /// The collective; default: the only one the node holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collective: Option<String>,
        /// The agreement (its offer op's CID).
        pub agreement: String,
        /// The period.
        pub period: Period,
        /// The revenue to split, in minor units.
        pub total: Money,
        /// `estimates:<method>` (default `estimates:group-shapley`) or `records`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub basis: Option<String>,
    }

    /// The statement op and what it says.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Output {
        /// The statement op.
        pub op: String,
        /// The collective.
        pub collective: String,
        /// The statement.
        pub statement: StatementBody,
    }
}

/// `coop.guild.payout.listStatements`.
pub mod list_statements {
    use guild_gov::body::StatementBody;
    use serde::{Deserialize, Serialize};

    /// The method's NSID.
    pub const NSID: &str = "coop.guild.payout.listStatements";

    crate::methods::method!(
        /// `coop.guild.payout.listStatements`.
        query ListStatements
    );

    /// Which statements.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Params {
        /// The collective; default: the only one the node holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub collective: Option<String>,
        /// Only this period's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub period: Option<String>,
    }

    /// The statements.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Output {
        /// The collective.
        pub collective: String,
        /// One per distinct statement, by period then agreement.
        pub statements: Vec<StatementView>,
    }

    /// A statement and the stewards who published it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct StatementView {
        /// The statement every listed steward published, byte for byte.
        pub statement: StatementBody,
        /// The agreement's builder.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub builder: Option<String>,
        /// Who published it.
        pub published_by: Vec<Publication>,
    }

    /// One steward's statement op.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Publication {
        /// The steward.
        pub steward: String,
        /// Their op.
        pub op: String,
    }
}
