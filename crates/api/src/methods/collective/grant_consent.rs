//! `coop.guild.collective.grantConsent`: consent to licence templates for the member's records.

/// The method's NSID.
pub const NSID: &str = "coop.guild.collective.grantConsent";

crate::methods::method!(
    /// `coop.guild.collective.grantConsent`.
    procedure GrantConsent
);

/// The templates consented to, and which records.
pub type Input = super::ConsentInput;

/// The consent grant op.
pub type Output = super::OpWritten;
