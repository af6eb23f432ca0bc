//! Guild's own lexicon set, as embedded: it loads cleanly, is stored by NSID path, describes
//! every definition and field, and gives every governance op the shared op fields.

use guild_lexicon::schema::{Def, Field, ObjectSchema};
use guild_lexicon::{Registry, embedded};

#[test]
fn builtin_is_clean() {
    let (registry, errors) = Registry::builtin_with_errors();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(registry.check().is_empty(), "{:#?}", registry.check());
    assert_eq!(registry.len(), embedded::sources().len());
    assert!(registry.len() >= 53, "{}", registry.len());
    for (doc, _) in registry.iter() {
        assert!(registry.is_builtin(doc.id.as_str()));
        assert!(doc.id.as_str().starts_with("coop.guild."), "{}", doc.id);
    }
}

#[test]
fn files_are_stored_by_nsid_path() {
    for (path, text) in embedded::sources() {
        let doc = guild_lexicon::LexiconDoc::parse(text).unwrap();
        let expected = format!("{}.json", doc.id.as_str().replace('.', "/"));
        assert_eq!(path, expected);
    }
}

fn undescribed_fields(path: &str, field: &Field, out: &mut Vec<String>) {
    if field.description().is_none_or(str::is_empty) {
        out.push(path.to_owned());
    }
    match field {
        Field::Object(o) => undescribed_properties(path, o, out),
        Field::Array(a) => {
            // Items are not fields; but objects inside them have fields.
            if let Field::Object(o) = &*a.items {
                undescribed_properties(&format!("{path}/items"), o, out);
            }
        }
        _ => {}
    }
}

fn undescribed_properties(path: &str, o: &ObjectSchema, out: &mut Vec<String>) {
    for (name, f) in &o.properties {
        undescribed_fields(&format!("{path}/{name}"), f, out);
    }
}

#[test]
fn every_def_and_field_is_described() {
    let registry = Registry::builtin();
    let mut missing = Vec::new();
    for (doc, _) in registry.iter() {
        if doc.description.as_deref().is_none_or(str::is_empty) {
            missing.push(format!("{}", doc.id));
        }
        for (name, def) in &doc.defs {
            let path = format!("{}#{name}", doc.id);
            if def.description().is_none_or(str::is_empty) {
                missing.push(path.clone());
            }
            match def {
                Def::Record(r) => undescribed_properties(&path, &r.record, &mut missing),
                Def::Type(f) => undescribed_fields(&path, f, &mut missing),
                Def::Query(x) | Def::Procedure(x) => {
                    for (n, f) in x.parameters.iter().flat_map(|p| &p.properties) {
                        undescribed_fields(&format!("{path}/parameters/{n}"), f, &mut missing);
                    }
                    for (which, body) in [("input", &x.input), ("output", &x.output)] {
                        let Some(body) = body else { continue };
                        if body.description.as_deref().is_none_or(str::is_empty) {
                            missing.push(format!("{path}/{which}"));
                        }
                        if let Some(schema) = &body.schema {
                            undescribed_fields(
                                &format!("{path}/{which}/schema"),
                                schema,
                                &mut missing,
                            );
                        }
                    }
                }
                Def::Subscription(s) => {
                    for (n, f) in s.parameters.iter().flat_map(|p| &p.properties) {
                        undescribed_fields(&format!("{path}/parameters/{n}"), f, &mut missing);
                    }
                }
                _ => {}
            }
        }
    }
    assert!(missing.is_empty(), "without a description: {missing:#?}");
}

/// Records that are not governance ops; every other record type is an op.
const NOT_OPS: [&str; 8] = [
    "coop.guild.space.declaration",
    "coop.guild.data.text",
    "coop.guild.data.file",
    "coop.guild.bundle.manifest",
    "coop.guild.bundle.page",
    "coop.guild.commons.licence",
    "coop.guild.commons.snapshot",
    "coop.guild.commons.snapshotPage",
];

#[test]
fn every_op_has_the_shared_op_fields() {
    let registry = Registry::builtin();
    let mut ops = 0;
    for (doc, _) in registry.iter() {
        let Some(Def::Record(r)) = doc.main() else {
            continue;
        };
        if NOT_OPS.contains(&doc.id.as_str()) {
            continue;
        }
        ops += 1;
        let genesis = doc.id.as_str() == "coop.guild.collective.charter";
        let mut fields = vec![
            ("author", None),
            ("prev", Some("coop.guild.defs#heads")),
            ("createdAt", None),
            ("sig", Some("coop.guild.defs#signature")),
        ];
        if !genesis {
            fields.push(("collective", Some("coop.guild.defs#collectiveId")));
        }
        for (name, target) in fields {
            assert!(
                r.record.required.iter().any(|n| n == name),
                "{}: {name} is not required",
                doc.id
            );
            let field = &r.record.properties[name];
            if let Some(target) = target {
                match field {
                    Field::Ref(rf) => assert_eq!(rf.target.to_string(), target, "{}", doc.id),
                    other => panic!("{}: {name} is a {}", doc.id, other.kind()),
                }
            }
        }
        assert!(
            !r.record.properties.contains_key("collective") || !genesis,
            "the genesis charter cannot name its own collective"
        );
    }
    assert_eq!(ops, 19);
}
