//! A valid and an invalid example for each of Guild's lexicons, checked by one data-driven
//! test. Examples live in `tests/examples/`, named after the definition they exercise
//! (`coop.guild.data.text.valid.json`, `coop.guild.defs#money.invalid.json`); the error an
//! invalid example must give is in the matching `.invalid.err` file. Run with
//! `UPDATE_EXPECT=1` to rewrite the `.err` files after a deliberate change, then review the diff.
//!
//! How an example is read depends on the definition's kind: a record is validated by its
//! `$type`, a subscription example is a message with `$type`, a query example is an object of
//! query-string parameters (strings, or arrays of strings), a procedure example is its input
//! (the request body), anything else is a value of the named type. An XRPC method's output has
//! examples of its own, named `<nsid>.output.valid.json` and `<nsid>.output.invalid.json`; for a
//! method they count as its examples too (a query without parameters has no other).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use guild_lexicon::{Def, DefRef, Registry};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/examples")
}

/// Validates one example file; the error line, or `None` when valid.
fn check_file(registry: &Registry, reference: &str, path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    if let Some(method) = output_of(registry, reference) {
        let value = match guild_core::data::from_json(&json) {
            Ok(v) => v,
            Err(e) => return Some(format!("{}: {}", e.path, e.reason)),
        };
        return registry
            .validate_output(method, &value)
            .err()
            .map(|e| e.to_string());
    }
    let target = DefRef::parse(reference).unwrap();
    let def = registry
        .def(&target)
        .unwrap_or_else(|| panic!("no definition {reference}"));
    let result = match def {
        Def::Procedure(_) => {
            let value = match guild_core::data::from_json(&json) {
                Ok(v) => v,
                Err(e) => return Some(format!("{}: {}", e.path, e.reason)),
            };
            registry.validate_input(reference, &value)
        }
        Def::Query(_) => {
            let mut pairs = Vec::new();
            for (k, v) in json.as_object().unwrap() {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            pairs.push((k.clone(), item.as_str().unwrap().to_owned()));
                        }
                    }
                    other => pairs.push((k.clone(), other.as_str().unwrap().to_owned())),
                }
            }
            registry.validate_params(reference, &pairs).map(drop)
        }
        _ => {
            let value = match guild_core::data::from_json(&json) {
                Ok(v) => v,
                Err(e) => return Some(format!("{}: {}", e.path, e.reason)),
            };
            match def {
                Def::Record(_) => {
                    assert_eq!(json["$type"], reference, "{}", path.display());
                    registry.validate_record(&value)
                }
                Def::Subscription(_) => registry.validate_message(reference, &value),
                _ => registry.validate_value(reference, &value),
            }
        }
    };
    result.err().map(|e| e.to_string())
}

/// The method whose output an example is about: `<nsid>.output` names the output of the
/// query or procedure `<nsid>` (when no definition has that name itself).
fn output_of<'a>(registry: &Registry, reference: &'a str) -> Option<&'a str> {
    let method = reference.strip_suffix(".output")?;
    if DefRef::parse(reference).is_some_and(|r| registry.def(&r).is_some()) {
        return None;
    }
    let target = DefRef::parse(method)?;
    matches!(
        registry.def(&target),
        Some(Def::Query(_) | Def::Procedure(_))
    )
    .then_some(method)
}

#[test]
fn examples() {
    let registry = Registry::builtin();
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = dir().join(&name);
        if let Some(reference) = name.strip_suffix(".valid.json") {
            covered.insert((reference.to_owned(), "valid"));
            if let Some(e) = check_file(&registry, reference, &path) {
                failures.push(format!("{name}: should be valid, but: {e}"));
            }
        } else if let Some(reference) = name.strip_suffix(".invalid.json") {
            covered.insert((reference.to_owned(), "invalid"));
            let err_path = dir().join(format!("{reference}.invalid.err"));
            let Some(got) = check_file(&registry, reference, &path) else {
                failures.push(format!("{name}: should be invalid, but was accepted"));
                continue;
            };
            if update {
                std::fs::write(&err_path, format!("{got}\n")).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&err_path).unwrap_or_default();
            if want.trim_end() != got {
                failures.push(format!(
                    "{name}:\n  want: {}\n  got:  {got}",
                    want.trim_end()
                ));
            }
        } else if !name.ends_with(".invalid.err") {
            failures.push(format!("{name}: not an example file"));
        }
    }
    // Every lexicon has a valid and an invalid example: documents with a `main` under their
    // own NSID (or, for an XRPC method, its output's), sets of shared definitions under at
    // least one `nsid#name`.
    for (doc, _) in registry.iter() {
        for kind in ["valid", "invalid"] {
            let has = if doc.main().is_some() {
                covered.contains(&(doc.id.to_string(), kind))
                    || covered.contains(&(format!("{}.output", doc.id), kind))
            } else {
                let prefix = format!("{}#", doc.id);
                covered
                    .iter()
                    .any(|(r, k)| *k == kind && r.starts_with(&prefix))
            };
            if !has {
                failures.push(format!("{}: no {kind} example", doc.id));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
