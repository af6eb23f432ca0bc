//! The worked example of `lexicons/README.md` through the library: the extension directory
//! loads over the built-in set, the valid record passes and the invalid one fails with the
//! path and rule the README shows.

use std::path::PathBuf;

use guild_lexicon::{Registry, Rule, ValidationError};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lexicons/examples")
}

fn record(name: &str) -> guild_core::Ipld {
    let text = std::fs::read_to_string(examples().join(name)).unwrap();
    guild_core::data::from_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn extension_example_validates_as_the_readme_says() {
    let (registry, errors) = Registry::load_dir(&examples().join("lexicons"));
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(registry.is_record_type("org.example.audio.transcript"));
    assert!(!registry.is_builtin("org.example.audio.transcript"));

    registry
        .validate_record(&record("transcript.json"))
        .unwrap();
    let err = registry
        .validate_record(&record("transcript.invalid.json"))
        .unwrap_err();
    assert_eq!(
        err,
        ValidationError::Invalid {
            path: "/segments/1/startMs".into(),
            rule: Rule::Minimum {
                minimum: 0,
                actual: -20
            }
        }
    );
    assert_eq!(
        err.to_string(),
        "/segments/1/startMs: -20 is less than the minimum 0"
    );

    // Without the extension, the type is unknown: its own error, for the caller's policy.
    assert_eq!(
        Registry::builtin().validate_record(&record("transcript.json")),
        Err(ValidationError::UnknownType(
            "org.example.audio.transcript".into()
        ))
    );
}

#[test]
fn examples_directory_is_not_part_of_the_builtin_set() {
    let (registry, errors) = Registry::load_dir(&examples().join(".."));
    // Loading Guild's own directory as an extension is a no-op: every document is identical to
    // a built-in one, and `examples/` is skipped.
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(registry.len(), Registry::builtin().len());
    assert!(!registry.contains("org.example.audio.transcript"));
}
