//! The bundle as **Croissant 1.1** JSON-LD (MLCommons, `http://mlcommons.org/croissant/1.1`),
//! with the Croissant RAI 1.0 fields (`http://mlcommons.org/croissant/RAI/`) and PROV-O
//! provenance. `docs/bundle-forms.md` gives the mapping field by field.
//!
//! - The `@context` is inline and complete (the Croissant 1.1 context as `mlcroissant` 1.1
//!   writes it, plus `prov`), so the document reads offline.
//! - `distribution`: one `cr:FileObject`, the CAR, by file name, media type
//!   `application/vnd.ipld.car`, SHA-256 and size.
//! - `recordSet`: one `cr:RecordSet`, `records`, whose rows are given inline (`data`): per
//!   record its author DID, path, CID, commit and covering consent op, keyed by author and
//!   path. The record bytes live in the CAR, which no Croissant extractor reads. Inline only
//!   up to [`INLINE_RECORDS`] records, so that the document stays under about a megabyte; a
//!   larger bundle's document has no `recordSet` (its records are listed in the manifest's
//!   pages, in the CAR).
//! - `license` and `usageInfo` name the agreement (`urn:guild:agreement:<offer CID>`), its
//!   template id and version, and its plain-language summary.
//! - `prov:wasDerivedFrom`: one `prov:Entity` per member commit at the cut,
//!   `urn:guild:commit:<commit CID>`, a `prov:specializationOf` the repository `at://<did>`.
//! - Evaluation bundles: the canary string and GUID in `description` and
//!   `rai:dataLimitations`.
//!
//! Output is deterministic: keys in a fixed order, lists in the manifest's order.

use serde_json::{Value, json};

use crate::error::BundleError;
use crate::facts::{CarInfo, Facts, UNKNOWN};
use crate::manifest::Manifest;

/// `dct:conformsTo` of a Croissant 1.1 document.
pub const CONFORMS_TO: &str = "http://mlcommons.org/croissant/1.1";

/// `dct:conformsTo` of the Croissant RAI 1.0 vocabulary.
pub const RAI_CONFORMS_TO: &str = "http://mlcommons.org/croissant/RAI/1.0";

/// The CAR's media type.
pub const CAR_MEDIA_TYPE: &str = "application/vnd.ipld.car";

/// The inline `@context`: Croissant 1.1's, and `prov`.
pub(crate) fn context() -> Value {
    json!({
        "@language": "en",
        "@vocab": "https://schema.org/",
        "arrayShape": "cr:arrayShape",
        "citeAs": "cr:citeAs",
        "column": "cr:column",
        "conformsTo": "dct:conformsTo",
        "containedIn": "cr:containedIn",
        "cr": "http://mlcommons.org/croissant/",
        "rai": "http://mlcommons.org/croissant/RAI/",
        "data": {"@id": "cr:data", "@type": "@json"},
        "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
        "dct": "http://purl.org/dc/terms/",
        "description": {"@container": "@language"},
        "equivalentProperty": "cr:equivalentProperty",
        "examples": {"@id": "cr:examples", "@type": "@json"},
        "extract": "cr:extract",
        "field": "cr:field",
        "fileProperty": "cr:fileProperty",
        "fileObject": "cr:fileObject",
        "fileSet": "cr:fileSet",
        "format": "cr:format",
        "includes": "cr:includes",
        "isArray": "cr:isArray",
        "isLiveDataset": "cr:isLiveDataset",
        "jsonPath": "cr:jsonPath",
        "key": "cr:key",
        "md5": "cr:md5",
        "name": {"@container": "@language"},
        "parentField": "cr:parentField",
        "path": "cr:path",
        "prov": "http://www.w3.org/ns/prov#",
        "recordSet": "cr:recordSet",
        "references": "cr:references",
        "regex": "cr:regex",
        "repeated": "cr:repeated",
        "replace": "cr:replace",
        "samplingRate": "cr:samplingRate",
        "sc": "https://schema.org/",
        "separator": "cr:separator",
        "source": "cr:source",
        "subField": "cr:subField",
        "transform": "cr:transform"
    })
}

/// The record set's fields: (name, what it is).
const FIELDS: [(&str, &str); 5] = [
    ("author", "The member who wrote the record: their DID."),
    (
        "path",
        "The record's path in its author's repository: `collection/rkey`.",
    ),
    (
        "cid",
        "The record's CID (CIDv1, DAG-CBOR, SHA-256): its bytes are in the CAR.",
    ),
    (
        "commit",
        "The CID of the signed repository commit the record is proven against.",
    ),
    (
        "consent",
        "The CID of the consent grant op that covers the record at the cut.",
    ),
];

/// The most records a Croissant document lists inline (about 400 bytes of JSON each).
pub const INLINE_RECORDS: usize = 2_500;

fn record_set(manifest: &Manifest) -> Value {
    let fields: Vec<Value> = FIELDS
        .iter()
        .map(|(name, what)| {
            json!({
                "@type": "cr:Field",
                "@id": format!("records/{name}"),
                "name": name,
                "description": what,
                "dataType": "sc:Text"
            })
        })
        .collect();
    let rows: Vec<Value> = manifest
        .records
        .iter()
        .map(|e| {
            json!({
                "records/author": e.author.as_str(),
                "records/path": e.path,
                "records/cid": e.cid.0.to_string(),
                "records/commit": e.commit.0.to_string(),
                "records/consent": e.consent.0.to_string()
            })
        })
        .collect();
    json!({
        "@type": "cr:RecordSet",
        "@id": "records",
        "name": "records",
        "description": "The bundle's records, in the manifest's order (author DID, then path). \
                        Given inline: the record bytes are blocks of the CAR file.",
        "key": [{"@id": "records/author"}, {"@id": "records/path"}],
        "field": fields,
        "data": rows
    })
}

/// BibTeX text: no braces or backslashes, which would unbalance the entry.
fn bib(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '{' | '}' | '\\'))
        .collect()
}

/// `cr:citeAs`: a BibTeX entry naming the credited members as authors.
fn cite_as(manifest: &Manifest, f: &Facts) -> String {
    let authors: Vec<String> = manifest.credits.iter().map(|c| bib(&c.name)).collect();
    format!(
        "@misc{{guild-{cid},\n  title = {{{{Guild {kind} bundle {cid}}}}},\n  author = {{{authors}}},\n  \
         year = {{{year}}},\n  note = {{{note}}}\n}}",
        cid = f.manifest_cid,
        kind = f.kind,
        authors = authors.join(" and "),
        year = f.created_at.get(..4).unwrap_or(""),
        note = bib(&format!(
            "Licensed under {}; collective {}",
            f.agreement_iri, f.collective_iri
        )),
    )
}

/// The Croissant 1.1 JSON-LD of `manifest` packaged as `car` (pretty-printed, ending with a
/// newline).
pub fn emit(manifest: &Manifest, car: &CarInfo) -> Result<String, BundleError> {
    let f = Facts::of(manifest, car)?;
    let creators: Vec<Value> = manifest
        .credits
        .iter()
        .map(|c| {
            json!({
                "@type": "sc:Person",
                "name": c.name,
                "identifier": c.did.as_str()
            })
        })
        .collect();
    let derived: Vec<Value> = f
        .sources
        .iter()
        .map(|s| {
            json!({
                "@type": "prov:Entity",
                "@id": crate::facts::commit_iri(&s.commit),
                "name": format!("The repository of {} at revision {}", s.name, s.rev),
                "identifier": s.commit,
                "prov:specializationOf": {"@id": format!("at://{}", s.did)}
            })
        })
        .collect();
    let kinds: Vec<String> = f
        .kinds
        .iter()
        .map(|k| format!("{} {} ({})", k.records, k.what, k.collection))
        .collect();
    let mut limitations = vec![format!(
        "Licensed data: every use is bound by the agreement {} ({} version {}); uses it does \
         not grant are not licensed. A member may revoke consent: later bundles leave their \
         records out, and the licence says what happens to delivered data.",
        f.agreement_iri, f.template_id, f.template_version
    )];
    limitations.extend(f.canary_limitation());
    limitations.extend(f.licensee_canary_limitation());
    let mut time_frame = Vec::new();
    if let Some((a, b)) = &f.period {
        time_frame.push(a.as_str().to_owned());
        time_frame.push(b.as_str().to_owned());
    }
    let mut doc = json!({
        "@context": context(),
        "@type": "sc:Dataset",
        "name": format!("Guild {} bundle {}", f.kind, f.manifest_cid),
        "description": f.description(),
        "conformsTo": [CONFORMS_TO, RAI_CONFORMS_TO],
        "identifier": f.bundle_iri,
        "version": "1.0.0",
        "citeAs": cite_as(manifest, &f),
        "license": {
            "@type": "sc:CreativeWork",
            "@id": f.agreement_iri,
            "name": format!("{} ({}, version {})", f.template_title, f.template_id, f.template_version),
            "identifier": f.template_id,
            "version": f.template_version.to_string(),
            "description": f.summary
        },
        "usageInfo": {
            "@type": "sc:CreativeWork",
            "name": format!("ODRL 2.2 Agreement {}", f.agreement_iri),
            "url": f.agreement_iri,
            "encodingFormat": "application/ld+json",
            "description": format!(
                "The licence as an ODRL 2.2 Agreement with the Guild profile, uid {}, on the \
                 template {} version {}; the bundle manifest carries it (licence.odrl) or its \
                 terms, from which every form is derived.",
                f.agreement_iri, f.template_id, f.template_version
            )
        },
        "isAccessibleForFree": !f.paid,
        "creator": creators,
        "publisher": {
            "@type": "sc:Organization",
            "name": format!("Guild data collective {}", f.collective),
            "identifier": f.collective_iri
        },
        "datePublished": f.created_at,
        "keywords": ["guild", "licensed", "consented", f.kind.as_str(), f.template_id.as_str()],
        "prov:wasDerivedFrom": derived,
        "rai:dataCollection": format!(
            "Each record is a work its author, a member of the collective, wrote to their own \
             AT Protocol repository and signed. The collective's stewards selected, \
             deterministically, every record whose author's consent covered the template {} \
             at a cut of the collective's governance log, and a quorum of them sealed the \
             bundle. Records are delivered as written: {}.",
            f.template_id,
            kinds.join(", ")
        ),
        "rai:dataCollectionType": ["Direct contribution by the rights holders (consented, licensed)"],
        "rai:dataCollectionTimeframe": time_frame,
        "rai:dataCollectionRawData": "The records are the raw data: unmodified, each \
            proven against its author's signed commit.",
        "rai:dataPreprocessingProtocol": ["None: the collective does not clean, filter or \
            transform records; the selection is by consent only."],
        "rai:dataUseCases": [format!("The uses the licence grants: {}.", f.uses.join(", "))],
        "rai:dataLimitations": limitations,
        "rai:dataBiases": [format!("{UNKNOWN}: the records are what the collective's consenting \
            members wrote; Guild does not measure their representativeness.")],
        "rai:personalSensitiveInformation": [format!(
            "The bundle names its authors (DIDs and credited names) for attribution. Guild \
             does not inspect the works for personal or sensitive information: {UNKNOWN}."
        )],
        "rai:dataReleaseMaintenancePlan": "A bundle is immutable. Later bundles under the \
            same agreement are new bundles; a member's revocation keeps their records out of \
            every later bundle, and the collective records a revocation notice naming the \
            affected records of sealed bundles.",
        "distribution": [{
            "@type": "cr:FileObject",
            "@id": f.file_name,
            "name": f.file_name,
            "description": "The bundle: one CAR (v1) whose root is the manifest's CID, with \
                the records, their inclusion proofs, the consent ops that cover them, and the \
                stewards' approvals.",
            "contentUrl": f.file_name,
            "contentSize": format!("{} B", f.bytes),
            "encodingFormat": CAR_MEDIA_TYPE,
            "sha256": f.sha256
        }],
        "recordSet": [record_set(manifest)]
    });
    if manifest.records.len() > INLINE_RECORDS
        && let Some(obj) = doc.as_object_mut()
    {
        obj.remove("recordSet");
    }
    if let (true, Some(obj), Some(guid)) = (f.evaluation, doc.as_object_mut(), f.guid.as_ref()) {
        obj.insert(
            "alternateName".to_owned(),
            json!([format!("Guild evaluation bundle, canary GUID {guid}")]),
        );
    }
    let mut out =
        serde_json::to_string_pretty(&doc).map_err(|e| BundleError::Encode(e.to_string()))?;
    out.push('\n');
    Ok(out)
}
