//! The bundle's **disclosure file**: what a model builder that trains on the bundle needs for
//! its own transparency obligations, filled from the manifest where the bundle knows, and
//! `"unknown: the builder states this"` ([`UNKNOWN`]) where only the builder knows.
//!
//! Shape `coop.guild.bundle.disclosure` version [`VERSION`] (`docs/bundle-forms.md`):
//!
//! - `californiaAb2013`: the twelve items of California Civil Code §3111(a) (AB 2013, 2024),
//!   the documentation a developer of a generative AI system posts about its training data;
//!   each `{item, asks, answer}`, `answer` a string or an object;
//! - `euAiActTrainingSummary`: an entry for the public summary of training content that
//!   Article 53(1)(d) of Regulation (EU) 2024/1689 requires of general-purpose AI model
//!   providers, following the sections of the Commission's template (1: general
//!   information; 2: list of data sources, this bundle under 2.2.1 "data commercially licensed
//!   by rightsholders or their representatives"; 3: data processing aspects).
//!
//! Nothing here is legal advice: the file gives facts the bundle proves, and names the gaps.

use serde_json::{Value, json};

use crate::croissant::CAR_MEDIA_TYPE;
use crate::error::BundleError;
use crate::facts::{CarInfo, Facts, UNKNOWN};
use crate::manifest::Manifest;

/// The disclosure file's `$type`.
pub const TYPE: &str = "coop.guild.bundle.disclosure";

/// The version of its shape.
pub const VERSION: u32 = 1;

fn item(n: u32, asks: &str, answer: Value) -> Value {
    json!({"item": n, "asks": asks, "answer": answer})
}

/// The disclosure file of `manifest` packaged as `car` (pretty-printed JSON, ending with a
/// newline).
pub fn emit(manifest: &Manifest, car: &CarInfo) -> Result<String, BundleError> {
    let f = Facts::of(manifest, car)?;
    let owners: Vec<Value> = f
        .sources
        .iter()
        .map(|s| json!({"did": s.did, "name": s.name, "records": s.records}))
        .collect();
    let types: Vec<Value> = f
        .kinds
        .iter()
        .map(|k| json!({"collection": k.collection, "records": k.records, "description": k.what}))
        .collect();
    let (start, end) = match &f.period {
        Some((a, b)) => (json!(a.as_str()), json!(b.as_str())),
        None => (json!(UNKNOWN), json!(UNKNOWN)),
    };
    let period = json!({
        "start": start,
        "end": end,
        "ongoing": false,
        "basis": format!("The bundle is a fixed cut: no record is added to it. Dates {}.", f.period_words()),
    });
    let licence = json!({
        "agreement": f.agreement_iri,
        "template": f.template_id,
        "templateVersion": f.template_version,
        "title": f.template_title,
        "paid": f.paid,
        "summary": f.summary,
    });
    let evaluation_note = if f.evaluation {
        json!(
            "Evaluation bundle: licensed for evaluation only and never to be trained on. A \
             training-data disclosure lists it only if the builder used it in development \
             in a way the law counts; the canary GUID identifies it."
        )
    } else {
        Value::Null
    };
    let ab2013 = json!({
        "law": "California Civil Code §3111(a), added by AB 2013 (2024), \
                in force 1 January 2026: a developer of a generative AI system or service \
                made available to Californians posts documentation of the data used to train it.",
        "applies": format!(
            "To the builder, for each generative AI system or service trained with this \
             bundle. {}",
            if f.evaluation { "This is an evaluation bundle (see note)." } else { "" }
        ).trim_end().to_owned(),
        "items": [
            item(1, "The sources or owners of the datasets.", json!({
                "source": format!("The Guild data collective {}, licensing under the agreement {}.", f.collective_iri, f.agreement_iri),
                "owners": owners,
            })),
            item(2, "How the datasets further the intended purpose of the AI system or service.", json!({
                "licensedUses": f.uses,
                "purpose": UNKNOWN,
            })),
            item(3, "The number of data points in the datasets.", json!({
                "records": f.records,
                "authors": f.sources.len(),
                "bytes": f.bytes,
                "dynamic": false,
            })),
            item(4, "The types of data points in the datasets.", json!({
                "types": types,
                "labels": "None: the records are works, not labelled examples.",
            })),
            item(5, "Whether the datasets include data protected by copyright, trademark or patent, or are entirely in the public domain.", json!({
                "copyright": "Presumed protected: the records are their authors' works, licensed by them through the collective; not public domain.",
                "trademarkOrPatent": UNKNOWN,
            })),
            item(6, "Whether the datasets were purchased or licensed by the developer.", json!({
                "licensed": true,
                "licence": licence,
            })),
            item(7, "Whether the datasets include personal information (Civil Code §1798.140(v)).", json!({
                "fromBundle": "Yes, for attribution: each author's DID and credited name.",
                "inTheWorks": UNKNOWN,
            })),
            item(8, "Whether the datasets include aggregate consumer information (Civil Code §1798.140(b)).", json!({
                "fromBundle": "No: the collective adds none.",
                "inTheWorks": UNKNOWN,
            })),
            item(9, "Whether the developer cleaned, processed or otherwise modified the datasets, and to what end.", json!({
                "byTheCollective": "None: records are delivered as their authors wrote them; their bytes hash to the CIDs the bundle lists.",
                "byTheBuilder": UNKNOWN,
            })),
            item(10, "The time period during which the data were collected, and whether collection is ongoing.", period.clone()),
            item(11, "The dates the datasets were first used during development.", json!({
                "bundleSealed": f.created_at,
                "firstUsed": UNKNOWN,
            })),
            item(12, "Whether the system or service used or continuously uses synthetic data generation in its development.", json!({
                "inTheBundle": "The records are members' works; Guild does not attest that none was machine-generated.",
                "byTheBuilder": UNKNOWN,
            })),
        ],
    });
    let modalities: Vec<Value> = {
        let mut m: Vec<&str> = f.kinds.iter().map(|k| k.modality).collect();
        m.sort_unstable();
        m.dedup();
        m.into_iter().map(Value::from).collect()
    };
    let eu = json!({
        "law": "Regulation (EU) 2024/1689 (AI Act), Article 53(1)(d): a provider of a \
                general-purpose AI model publishes a sufficiently detailed summary of the \
                content used to train it, on the AI Office's template (Commission Explanatory \
                Notice and Template for the Public Summary of Training Content, July 2025).",
        "section1GeneralInformation": {
            "provider": UNKNOWN,
            "model": UNKNOWN,
            "modalities": modalities,
            "trainingDataSize": {
                "fromThisBundle": {"records": f.records, "bytes": f.bytes},
                "sizeRangeInTokens": UNKNOWN,
            },
            "typesOfContent": types,
            "latestDateOfDataCollection": end,
        },
        "section2DataSources": {
            "2.2.1DataLicensedFromRightholders": {
                "description": format!(
                    "Works licensed from their rightsholders, the members of the Guild data \
                     collective {}, through it, under the agreement {} (template {} version {}).",
                    f.collective_iri, f.agreement_iri, f.template_id, f.template_version
                ),
                "licensor": f.collective_iri,
                "rightsholders": f.sources.len(),
                "records": f.records,
                "types": f.kinds.iter().map(|k| k.collection.clone()).collect::<Vec<_>>(),
                "collectionPeriod": period,
            },
            "otherSources": UNKNOWN,
        },
        "section3DataProcessing": {
            "reservationOfRights": "Every record is used under its author's explicit consent and the collective's licence; no text-and-data-mining exception is relied on.",
            "illegalContentRemoval": UNKNOWN,
        },
    });
    let doc = json!({
        "$type": TYPE,
        "version": VERSION,
        "note": "Facts the bundle proves, for the builder's own disclosures; not legal advice. \
                 Each field the bundle cannot know reads exactly \"unknown: the builder states this\".",
        "bundle": {
            "id": f.bundle_iri,
            "manifest": f.manifest_cid,
            "kind": f.kind,
            "collective": f.collective_iri,
            "agreement": f.agreement_iri,
            "createdAt": f.created_at,
            "file": {"name": f.file_name, "mediaType": CAR_MEDIA_TYPE, "bytes": f.bytes, "sha256": f.sha256},
            "canary": f.canary,
            "guid": f.guid,
            "evaluationNote": evaluation_note,
        },
        "californiaAb2013": ab2013,
        "euAiActTrainingSummary": eu,
    });
    let mut out =
        serde_json::to_string_pretty(&doc).map_err(|e| BundleError::Encode(e.to_string()))?;
    out.push('\n');
    Ok(out)
}
