//! `coop.guild.collective.revokeConsent`: withdraw consent; the member's records stop entering
//! new bundles under these templates.

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.revokeConsent";

crate::methods::method!(
    /// `coop.guild.collective.revokeConsent`.
    procedure RevokeConsent
);

/// The templates withdrawn, and which records.
pub type Input = super::ConsentInput;

/// The consent revoke op.
pub type Output = super::OpWritten;
