//! Lexicon parsing and validation of untrusted input: a lexicon document (the first part of
//! the input, as UTF-8 up to a NUL byte) is parsed and, if valid, added to a copy of Guild's
//! built-in registry and checked; the rest of the input is decoded as DAG-CBOR (or read as
//! JSON) and validated as a record, against every def of the new document, as XRPC params and
//! as a subscription message. Nothing may panic, whatever the document or the value.
#![no_main]

use std::sync::OnceLock;

use guild_lexicon::{LexiconDoc, Registry};
use libfuzzer_sys::fuzz_target;

/// Guild's built-in set, parsed once.
fn builtin() -> Registry {
    static BUILTIN: OnceLock<Registry> = OnceLock::new();
    BUILTIN.get_or_init(Registry::builtin).clone()
}

fuzz_target!(|input: &[u8]| {
    let (doc_bytes, value_bytes) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let mut registry = builtin();
    let mut nsid = None;
    if let Ok(text) = std::str::from_utf8(doc_bytes) {
        if let Ok(doc) = LexiconDoc::parse(text) {
            let id = doc.id.as_str().to_string();
            let _ = registry.extend([("fuzz".to_string(), text.to_string())]);
            let _ = registry.check();
            nsid = Some(id);
        }
    }
    let value = match guild_core::data::decode(value_bytes) {
        Ok(v) => Some(v),
        Err(_) => serde_json::from_slice::<serde_json::Value>(value_bytes)
            .ok()
            .and_then(|j| guild_core::data::from_json(&j).ok()),
    };
    let Some(value) = value else {
        return;
    };
    let _ = registry.validate_record(&value);
    for target in ["coop.guild.data.text", "coop.guild.feed.subscribe"] {
        let _ = registry.validate_message(target, &value);
    }
    if let Some(nsid) = nsid {
        let _ = registry.validate_record_as(&nsid, &value);
        let _ = registry.validate_value(&nsid, &value);
        let _ = registry.validate_input(&nsid, &value);
        let _ = registry.validate_output(&nsid, &value);
        let _ = registry.validate_message(&nsid, &value);
        let params: Vec<(String, String)> = match &value {
            guild_core::Ipld::Map(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), format!("{v:?}")))
                .collect(),
            _ => Vec::new(),
        };
        let _ = registry.validate_params(&nsid, &params);
    }
});
