//! Guild's own lexicons, embedded in the binary at build time from the workspace's
//! `lexicons/` directory (see `build.rs`).

use crate::registry::{LoadError, Registry};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The prefix of the origin of every built-in document (`built-in lexicons/coop/…`).
pub const BUILTIN_ORIGIN: &str = "built-in";

/// Guild's lexicon files as embedded: `(path under lexicons/, JSON text)`, sorted by path.
pub fn sources() -> impl ExactSizeIterator<Item = (&'static str, &'static str)> {
    EMBEDDED.iter().copied()
}

impl Registry {
    /// A registry holding Guild's built-in lexicons.
    ///
    /// The embedded set is checked by this crate's tests (`builtin_is_clean`), so this never
    /// leaves a document out in a tested build; should one fail anyway, it is left out and
    /// [`Registry::builtin_with_errors`] (and `guild lexicon check`) say why.
    pub fn builtin() -> Registry {
        Registry::builtin_with_errors().0
    }

    /// [`Registry::builtin`], with the errors of any document that was left out.
    pub fn builtin_with_errors() -> (Registry, Vec<LoadError>) {
        let mut registry = Registry::new();
        let errors = registry.extend_inner(
            sources().map(|(path, text)| (format!("{BUILTIN_ORIGIN} lexicons/{path}"), text)),
            true,
        );
        (registry, errors)
    }
}
