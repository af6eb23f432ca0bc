//! What can be wrong with a contract, its record form, or an emitted form.

/// A contract that cannot be read, or a form that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    /// A value of an open lexicon set this version does not know.
    #[error("{field}: unknown value {value:?} (this version cannot render it)")]
    Unknown {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A compensation kind this version does not know.
    #[error("compensation: unknown kind {0:?}")]
    UnknownCompensation(String),
    /// Not an ISO 4217 code in capitals.
    #[error("not an ISO 4217 currency code: {0:?}")]
    Currency(String),
    /// Not an assigned ISO 3166-1 alpha-2 code in capitals.
    #[error("not an ISO 3166-1 alpha-2 country code: {0:?}")]
    Country(String),
    /// More than 10000 basis points.
    #[error("basis points out of range (0 to 10000): {0}")]
    BasisPoints(u32),
    /// A template id Guild cannot name files and IRIs with.
    #[error("template id not usable: {0:?}")]
    TemplateId(String),
    /// A number out of its range.
    #[error("{field}: {value} out of range")]
    Range {
        /// The field.
        field: &'static str,
        /// The value.
        value: i64,
    },
    /// A contract whose fields contradict each other.
    #[error("invalid contract: {0}")]
    Invalid(String),
    /// The record form does not have the lexicon's shape.
    #[error("not a licence template record: {0}")]
    Shape(String),
    /// A value a format's serializer refused (a bug if it happens: the inputs are typed).
    #[error("{format}: {message}")]
    Emit {
        /// The format.
        format: &'static str,
        /// What its serializer said.
        message: String,
    },
}
