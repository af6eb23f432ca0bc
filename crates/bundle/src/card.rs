//! The bundle's **dataset card**: a `README.md` with YAML front matter as the Hugging Face Hub
//! reads it (its dataset card metadata: `license`, `license_name`, `license_link`,
//! `pretty_name`, `tags`, `size_categories`, `viewer`), then the summary, the licence in plain
//! language, the credits, how to verify the bundle and, for evaluation bundles, the canary
//! warning.
//!
//! Every front-matter value is written as a JSON string or array of strings, which YAML 1.2
//! (and PyYAML's 1.1) reads as the same double-quoted scalar or flow sequence; so no value,
//! whatever a member named themselves, can break the YAML. `task_categories` and `language`
//! are left out: the manifest does not say what task the works serve nor their language, and
//! the card does not guess.

use std::fmt::Write as _;

use crate::error::BundleError;
use crate::facts::{CarInfo, Facts, plural};
use crate::manifest::Manifest;

/// Hugging Face's `size_categories` bucket for `n` examples.
pub fn size_category(n: u64) -> &'static str {
    match n {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        1_000_000..10_000_000 => "1M<n<10M",
        10_000_000..100_000_000 => "10M<n<100M",
        100_000_000..1_000_000_000 => "100M<n<1B",
        1_000_000_000..10_000_000_000 => "1B<n<10B",
        10_000_000_000..100_000_000_000 => "10B<n<100B",
        100_000_000_000..1_000_000_000_000 => "100B<n<1T",
        _ => "n>1T",
    }
}

/// A JSON string literal: a valid YAML double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Markdown table cell text: no `|`, no line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The dataset card of `manifest` packaged as `car`.
pub fn emit(manifest: &Manifest, car: &CarInfo) -> Result<String, BundleError> {
    let f = Facts::of(manifest, car)?;
    let mut tags: Vec<String> = vec![
        "guild".into(),
        "licensed".into(),
        "consented".into(),
        format!("guild-{}", f.kind),
        format!("guild-template-{}", f.template_id),
    ];
    if f.evaluation {
        tags.push("evaluation-only".into());
        tags.push("canary".into());
    }
    let tags: Vec<String> = tags.iter().map(|t| q(t)).collect();
    let pretty = format!(
        "Guild {} bundle: {} ({} record{})",
        f.kind,
        f.template_title,
        f.records,
        plural(f.records)
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "---");
    let _ = writeln!(out, "license: other");
    let _ = writeln!(
        out,
        "license_name: {}",
        q(&format!("guild-{}-v{}", f.template_id, f.template_version))
    );
    let _ = writeln!(out, "license_link: {}", q(&f.agreement_iri));
    let _ = writeln!(out, "pretty_name: {}", q(&pretty));
    let _ = writeln!(out, "tags: [{}]", tags.join(", "));
    let _ = writeln!(out, "size_categories: [{}]", q(size_category(f.records)));
    let _ = writeln!(out, "viewer: false");
    let _ = writeln!(out, "---");
    let _ = writeln!(out);
    let _ = writeln!(out, "# {pretty}");
    let _ = writeln!(out);
    if let Some(c) = &f.canary {
        let _ = writeln!(
            out,
            "> **EVALUATION DATA: never train on it.** This bundle is licensed for evaluating \
             models only. Keep it out of every training corpus; a corpus or model output that \
             contains the canary string below is contaminated.\n>\n> Canary string: `{c}`\n"
        );
    }
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(out, "{}\n", f.description());
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Bundle | `{}` |", f.bundle_iri);
    let _ = writeln!(out, "| Kind | {} |", f.kind);
    let _ = writeln!(out, "| Collective | `{}` |", f.collective_iri);
    let _ = writeln!(out, "| Agreement | `{}` |", f.agreement_iri);
    let _ = writeln!(
        out,
        "| Template | {} (`{}`, version {}) |",
        cell(&f.template_title),
        f.template_id,
        f.template_version
    );
    let _ = writeln!(out, "| Records | {} |", f.records);
    for k in &f.kinds {
        let _ = writeln!(
            out,
            "| `{}` | {} {} |",
            k.collection,
            k.records,
            cell(k.what)
        );
    }
    let _ = writeln!(out, "| Sealed | {} |", f.created_at);
    let _ = writeln!(
        out,
        "| File | `{}`, {} bytes, SHA-256 `{}` |\n",
        f.file_name, f.bytes, f.sha256
    );
    let _ = writeln!(out, "## Licence\n");
    let _ = writeln!(out, "{}\n", f.summary);
    let _ = writeln!(
        out,
        "This is a summary; the terms bind. The manifest in the bundle carries the \
         agreement's full terms and their machine-readable forms (ODRL 2.2 and others).\n"
    );
    let _ = writeln!(out, "## Credits\n");
    let _ = writeln!(out, "| Member | DID | Records |\n|---|---|---:|");
    for c in &manifest.credits {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            cell(&c.name),
            c.did,
            c.records.unwrap_or(0)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## How to verify\n");
    let _ = writeln!(
        out,
        "```sh\nsha256sum {}   # {}\nguild bundle verify {}\n```\n",
        f.file_name, f.sha256, f.file_name
    );
    let _ = writeln!(
        out,
        "`guild bundle verify` checks offline the stewards' signatures and quorum against the \
         election results carried in the bundle, every record's author signature and \
         inclusion proof, every record's consent at the cut, the licence against the \
         agreement's, and every hash. It needs no network and no Guild node."
    );
    if let Some(l) = f.licensee_canary_limitation() {
        let _ = writeln!(out, "\n## Licensee canaries\n\n{l}");
    }
    if let (Some(c), Some(g)) = (&f.canary, &f.guid) {
        let _ = writeln!(out, "\n## Evaluation canary\n");
        let _ = writeln!(
            out,
            "This bundle's GUID is `{g}`. Its canary string is:\n\n```\n{c}\n```\n\n\
             Do not train on these records, do not put them in a training corpus, and filter \
             out any document that contains the GUID. A Guild collective never delivers a \
             record of this bundle in a training bundle."
        );
    }
    Ok(out)
}
