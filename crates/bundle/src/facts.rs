//! What the dataset forms ([`crate::croissant`], [`crate::card`], [`crate::disclosure`]) say
//! about a bundle, computed once from its manifest and its CAR: every sentence the three
//! forms share comes from here, so they cannot disagree.

use std::collections::BTreeMap;

use guild_core::syntax::{Datetime, Tid};
use guild_license::{Contract, text};

use crate::error::BundleError;
use crate::manifest::Manifest;

/// The bundle's CAR file, as written by the packager: what the forms name and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarInfo {
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Its size in bytes.
    pub bytes: u64,
    /// Its file name (no directory): letters, digits, `.`, `-`, `_`, ending `.car`.
    pub file_name: String,
}

impl CarInfo {
    /// The SHA-256 as 64 lower-case hex digits.
    pub fn sha256_hex(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(64);
        for b in self.sha256 {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    fn check(&self) -> Result<(), BundleError> {
        let ok = self.file_name.len() > 4
            && self.file_name.len() <= 255
            && self.file_name.ends_with(".car")
            && !self.file_name.starts_with('.')
            && self
                .file_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok {
            Ok(())
        } else {
            Err(BundleError::CarFileName(self.file_name.clone()))
        }
    }
}

/// What is unknown to Guild and known to the builder, written where a form asks for it.
pub const UNKNOWN: &str = "unknown: the builder states this";

/// The IRI of an agreement (its offer op's CID).
pub fn agreement_iri(offer: &impl std::fmt::Display) -> String {
    format!("urn:guild:agreement:{offer}")
}

/// The IRI of a collective (its genesis op's CID).
pub fn collective_iri(genesis: &impl std::fmt::Display) -> String {
    format!("urn:guild:collective:{genesis}")
}

/// The IRI of a bundle (its manifest's CID).
pub fn bundle_iri(manifest: &impl std::fmt::Display) -> String {
    format!("urn:guild:bundle:{manifest}")
}

/// The IRI of a member repository's commit: `at://<did>` names the repository (AT URI
/// syntax, authority only); the commit is the CID after it, in a `commit:` URN of our own.
pub fn commit_iri(commit: &impl std::fmt::Display) -> String {
    format!("urn:guild:commit:{commit}")
}

/// One member repository the bundle was assembled from.
#[derive(Debug, Clone)]
pub struct Source {
    /// `did:…`.
    pub did: String,
    /// The credited name.
    pub name: String,
    /// Its revision at the cut.
    pub rev: String,
    /// Its commit at the cut.
    pub commit: String,
    /// How many of the bundle's records are from it.
    pub records: u64,
}

/// Records of one collection.
#[derive(Debug, Clone)]
pub struct Kind {
    /// The collection NSID.
    pub collection: String,
    /// How many records.
    pub records: u64,
    /// What the collection holds, in words.
    pub what: &'static str,
    /// The EU template's modality for it.
    pub modality: &'static str,
}

/// Everything the forms say about a bundle.
#[derive(Debug, Clone)]
pub struct Facts {
    pub manifest_cid: String,
    pub bundle_iri: String,
    pub agreement_iri: String,
    pub collective: String,
    pub collective_iri: String,
    pub evaluation: bool,
    pub kind: String,
    pub template_id: String,
    pub template_title: String,
    pub template_version: i64,
    pub uses: Vec<String>,
    pub summary: String,
    pub paid: bool,
    pub records: u64,
    pub sources: Vec<Source>,
    pub kinds: Vec<Kind>,
    /// The earliest and latest time the authors' repos state for the records: record keys
    /// that are TIDs, and the revisions at the cut.
    pub period: Option<(Datetime, Datetime)>,
    pub created_at: String,
    pub canary: Option<String>,
    pub guid: Option<String>,
    /// How many per-licensee canary records the bundle carries.
    pub licensee_canaries: u64,
    pub sha256: String,
    pub bytes: u64,
    pub file_name: String,
}

fn collection_words(nsid: &str) -> (&'static str, &'static str) {
    match nsid {
        "coop.guild.data.text" => ("text works (title and body)", "text"),
        "coop.guild.data.file" => (
            "file works (a blob with its media type, named in each record)",
            "other",
        ),
        _ => ("records of a collection Guild does not describe", "other"),
    }
}

fn micros(tid: &Tid) -> Option<i64> {
    i64::try_from(tid.timestamp_micros()).ok()
}

impl Facts {
    /// The facts of `manifest` packaged as `car`.
    pub fn of(manifest: &Manifest, car: &CarInfo) -> Result<Facts, BundleError> {
        car.check()?;
        let (cid, _) = manifest.encode()?;
        let json = serde_json::to_value(&manifest.terms)
            .map_err(|e| BundleError::Encode(e.to_string()))?;
        let contract = Contract::from_record_json(&json)?;

        let mut per_author: BTreeMap<&str, u64> = BTreeMap::new();
        let mut per_collection: BTreeMap<&str, u64> = BTreeMap::new();
        let mut times: Vec<i64> = Vec::new();
        for e in &manifest.records {
            *per_author.entry(e.author.as_str()).or_default() += 1;
            let (collection, rkey) = e.path.split_once('/').unwrap_or((e.path.as_str(), ""));
            *per_collection.entry(collection).or_default() += 1;
            if let Some(t) = Tid::parse(rkey).ok().as_ref().and_then(micros) {
                times.push(t);
            }
        }
        let names: BTreeMap<&str, &str> = manifest
            .credits
            .iter()
            .map(|c| (c.did.as_str(), c.name.as_str()))
            .collect();
        let mut sources: Vec<Source> = manifest
            .cut
            .replicas
            .iter()
            .filter_map(|r| {
                let records = per_author.get(r.did.as_str()).copied()?;
                Some(Source {
                    did: r.did.to_string(),
                    name: names
                        .get(r.did.as_str())
                        .map_or_else(|| r.did.to_string(), |n| (*n).to_owned()),
                    rev: r.rev.as_str().to_owned(),
                    commit: r.commit.0.to_string(),
                    records,
                })
            })
            .collect();
        sources.sort_by(|a, b| a.did.cmp(&b.did));
        for r in &manifest.cut.replicas {
            if per_author.contains_key(r.did.as_str()) {
                times.extend(micros(&r.rev));
            }
        }
        let period = match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) => Some((
                Datetime::from_unix_micros(*a),
                Datetime::from_unix_micros(*b),
            )),
            _ => None,
        };
        let kinds = per_collection
            .into_iter()
            .map(|(c, n)| {
                let (what, modality) = collection_words(c);
                Kind {
                    collection: c.to_owned(),
                    records: n,
                    what,
                    modality,
                }
            })
            .collect();
        Ok(Facts {
            manifest_cid: cid.to_string(),
            bundle_iri: bundle_iri(&cid),
            agreement_iri: agreement_iri(&manifest.agreement.0),
            collective: manifest.collective.0.to_string(),
            collective_iri: collective_iri(&manifest.collective.0),
            evaluation: manifest.is_evaluation(),
            kind: manifest.kind.to_string(),
            template_id: manifest.terms.id.clone(),
            template_title: manifest.terms.title.clone(),
            template_version: manifest.terms.version,
            uses: manifest.terms.uses.clone(),
            summary: text::summary(&contract),
            paid: contract.compensation.is_paid(),
            records: manifest.records.len() as u64,
            sources,
            kinds,
            period,
            created_at: manifest.created_at.as_str().to_owned(),
            canary: manifest.canary.clone(),
            guid: manifest.guid.clone(),
            licensee_canaries: manifest.licensee_canaries.len() as u64,
            sha256: car.sha256_hex(),
            bytes: car.bytes,
            file_name: car.file_name.clone(),
        })
    }

    /// The one-sentence description every form opens with.
    pub fn description(&self) -> String {
        let mut s = format!(
            "A Guild {} bundle: {} record{} by {} member{} of the data collective {}, each \
             consented to by its author, licensed under the agreement {} on the template \
             {} ({}, version {}). Bundle {}, sealed by a quorum of the collective's stewards; \
             its CAR file {} is verifiable offline with `guild bundle verify {}`.",
            self.kind,
            self.records,
            plural(self.records),
            self.sources.len(),
            plural(self.sources.len() as u64),
            self.collective_iri,
            self.agreement_iri,
            self.template_title,
            self.template_id,
            self.template_version,
            self.bundle_iri,
            self.file_name,
            self.file_name,
        );
        if let Some(c) = &self.canary {
            s.push_str(&format!(
                " EVALUATION DATA: never train on it. Canary string: \"{c}\"."
            ));
        }
        s
    }

    /// The limitation evaluation bundles carry (`None` for training bundles).
    pub fn canary_limitation(&self) -> Option<String> {
        let (c, g) = (self.canary.as_ref()?, self.guid.as_ref()?);
        Some(format!(
            "Evaluation data: licensed for evaluating models only. It must never be used to \
             train or fine-tune a model, nor enter a training corpus; a corpus that contains \
             the canary GUID {g} is contaminated. Canary string: \"{c}\"."
        ))
    }

    /// The limitation a bundle with per-licensee canaries carries (`None` without).
    pub fn licensee_canary_limitation(&self) -> Option<String> {
        let n = self.licensee_canaries;
        (n > 0).then(|| {
            format!(
                "Traceable copy: besides its members' records this bundle carries {n} canary \
                 record{} made for its licensee alone (the manifest's licenseeCanaries). They \
                 are part of the licensed data; a copy of the data, or a model trained on it, \
                 that holds them is traced to this licensee.",
                plural(n)
            )
        })
    }

    /// The collection period in words.
    pub fn period_words(&self) -> String {
        match &self.period {
            Some((a, b)) => format!(
                "from {} to {} (the record keys that are TIDs and the repository revisions \
                 at the cut, as the authors' own clocks wrote them; not attested by Guild)",
                a.as_str(),
                b.as_str()
            ),
            None => "not stated by the records".to_owned(),
        }
    }
}

/// `s` unless `n` is 1.
pub fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
