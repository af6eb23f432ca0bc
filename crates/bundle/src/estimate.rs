//! Contribution estimates (protocol.md §8): each member's value to the builder's task, for the
//! manifest's `estimates`.
//!
//! When the builder's accept carries an evaluation set (`coop.guild.agreement.accept#evaluation`),
//! every steward values the bundle's records by member with guild-valuation and writes the
//! same estimates into the manifest, so they must come out the same to the bit on every
//! machine:
//!
//! - a record's **text** is its string values, depth first in key order, leaving out `$type`,
//!   keys ending in `At` (dates) and the label field; its **label** is the label field's
//!   value (a string; for an array, its first string among the evaluation labels, else its
//!   first string); a record without one gets a label no evaluation point has;
//! - features: the TF-IDF featurizer (guild-valuation's defaults: 1024 columns, word 1–2 and
//!   character 3–5 grams) fitted on the bundle's texts and the baseline's;
//! - distances with the portable backend (plain scalar loops, no machine-chosen kernel);
//! - group Shapley over the bundle's members, exact for up to [`MAX_EXACT`] members, else
//!   [`PERMUTATIONS`] permutations seeded by the proposal's CID; coalition utilities are
//!   integer counts, so the sums do not depend on thread scheduling;
//! - `group-shapley` estimates with no baseline and, when the accept names one,
//!   `group-shapley-over-baseline` estimates with it always present;
//! - every value as Rust's shortest round-trip decimal of the `f64`.

use std::collections::BTreeMap;

use guild_core::Cid;
use guild_core::syntax::Did;
use guild_gov::body::{Evaluation, LabelledText};
use guild_valuation::{Backend, GroupGame, Metric, Points, Problem, TextFeaturizer};
use ipld_core::ipld::Ipld;
use sha2::{Digest, Sha256};

use crate::BundleError;
use crate::manifest::Estimate;

/// The method name of estimates without a baseline.
pub const METHOD: &str = "group-shapley";
/// The method name of estimates over the accept's baseline.
pub const METHOD_OVER_BASELINE: &str = "group-shapley-over-baseline";
/// The most members valued exactly (2^16 coalitions).
pub const MAX_EXACT: usize = 16;
/// Permutations sampled beyond [`MAX_EXACT`] members.
pub const PERMUTATIONS: usize = 2000;

/// One record to value: its author and its DAG-CBOR bytes.
#[derive(Debug, Clone, Copy)]
pub struct Valued<'a> {
    /// The author.
    pub author: &'a Did,
    /// The record's bytes.
    pub bytes: &'a [u8],
}

/// The estimates of a bundle's members, by member then method.
pub fn estimates(
    records: &[Valued<'_>],
    eval: &Evaluation,
    proposal: &Cid,
) -> Result<Vec<Estimate>, BundleError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let label_field = eval.label_field.as_deref().unwrap_or("tags");
    let metric = match eval.metric.as_deref() {
        None | Some("cosine") => Metric::Cosine,
        Some("l2") => Metric::L2,
        Some(other) => return Err(BundleError::Valuation(format!("unknown metric {other:?}"))),
    };
    // Labels: the evaluation's first, then the baseline's, then the records' own.
    let mut labels: BTreeMap<String, u32> = BTreeMap::new();
    let intern = |l: &str, labels: &mut BTreeMap<String, u32>| {
        let next = labels.len() as u32;
        *labels.entry(l.to_owned()).or_insert(next)
    };
    let test_labels: Vec<u32> = eval
        .points
        .iter()
        .map(|p| intern(&p.label, &mut labels))
        .collect();
    let eval_labels: std::collections::BTreeSet<&str> =
        eval.points.iter().map(|p| p.label.as_str()).collect();
    let base_labels: Vec<u32> = eval
        .baseline
        .iter()
        .map(|p| intern(&p.label, &mut labels))
        .collect();
    let mut texts = Vec::with_capacity(records.len());
    let mut train_labels = Vec::with_capacity(records.len());
    for r in records {
        let ipld = guild_core::data::decode(r.bytes)
            .map_err(|e| BundleError::Valuation(format!("a record does not decode: {e}")))?;
        let (text, label) = text_and_label(&ipld, label_field, &eval_labels);
        texts.push(text);
        train_labels.push(match label {
            Some(l) => intern(&l, &mut labels),
            None => u32::MAX,
        });
    }
    let corpus: Vec<&str> = texts
        .iter()
        .map(String::as_str)
        .chain(eval.baseline.iter().map(|p| p.text.as_str()))
        .collect();
    let settings = TextFeaturizer::default();
    let fitted = settings.fit(&corpus).map_err(valuation)?;
    let dim = fitted.dim();
    let featurize = |xs: &mut dyn Iterator<Item = &str>| -> Vec<Vec<f64>> {
        xs.map(|t| fitted.transform(t)).collect()
    };
    let train = Points::new(
        dim,
        &featurize(&mut texts.iter().map(String::as_str)),
        train_labels,
    )
    .map_err(valuation)?;
    let test = Points::new(
        dim,
        &featurize(&mut eval.points.iter().map(|p| p.text.as_str())),
        test_labels,
    )
    .map_err(valuation)?;
    let base = Points::new(
        dim,
        &featurize(&mut eval.baseline.iter().map(|p| p.text.as_str())),
        base_labels,
    )
    .map_err(valuation)?;
    // Members in DID order.
    let members: Vec<&Did> = {
        let mut m: Vec<&Did> = records.iter().map(|r| r.author).collect();
        m.sort();
        m.dedup();
        m
    };
    let index: BTreeMap<&Did, usize> = members.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let group_of: Vec<usize> = records.iter().map(|r| index[r.author]).collect();
    let seed = u64::from_be_bytes(
        Sha256::digest(proposal.to_bytes())[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    let eval_hash = hash_points(&eval.points)?;
    let k = usize::try_from(eval.k).map_err(|_| BundleError::Valuation("k is too large".into()))?;
    let mut out = Vec::new();
    let runs: Vec<(&str, Option<&Points>, Option<String>)> = if eval.baseline.is_empty() {
        vec![(METHOD, None, None)]
    } else {
        vec![
            (METHOD, None, None),
            (
                METHOD_OVER_BASELINE,
                Some(&base),
                Some(hash_points(&eval.baseline)?),
            ),
        ]
    };
    for (method, baseline, baseline_hash) in runs {
        let p = Problem {
            train: &train,
            test: &test,
            baseline,
            k,
            metric,
            backend: Backend::Portable,
        };
        let game = GroupGame::new(&p, &group_of, members.len(), None).map_err(valuation)?;
        let (values, how) = if members.len() <= MAX_EXACT {
            (game.exact().map_err(valuation)?, "exact".to_owned())
        } else {
            let v = game.sample(PERMUTATIONS, seed, None).map_err(valuation)?;
            let how = format!(
                "sample permutations={PERMUTATIONS} bound={}",
                v.bound.unwrap_or(f64::NAN)
            );
            (v, how)
        };
        let parameters = format!(
            "k={k} metric={} features=tfidf-hash dim={dim} words=1-2 chars=3-5 labelField={label_field} {how}",
            match metric {
                Metric::L2 => "l2",
                Metric::Cosine => "cosine",
            }
        );
        for (member, value) in members.iter().zip(&values.values) {
            out.push(Estimate {
                member: (*member).clone(),
                method: method.to_owned(),
                value: format!("{value}"),
                parameters: Some(parameters.clone()),
                evaluation_set: Some(eval_hash.clone()),
                baseline: baseline_hash.clone(),
            });
        }
    }
    out.sort_by(|a, b| (&a.member, &a.method).cmp(&(&b.member, &b.method)));
    Ok(out)
}

fn valuation(e: guild_valuation::ValuationError) -> BundleError {
    BundleError::Valuation(e.to_string())
}

/// `sha256:<hex>` of the DAG-CBOR encoding of a list of labelled texts.
fn hash_points(points: &[LabelledText]) -> Result<String, BundleError> {
    let bytes = guild_core::data::encode_serde(points)
        .map_err(|e| BundleError::Valuation(format!("cannot encode the evaluation set: {e}")))?;
    Ok(format!(
        "sha256:{}",
        data_encoding::HEXLOWER.encode(&Sha256::digest(&bytes))
    ))
}

/// A record's text and label (see the module documentation).
fn text_and_label(
    record: &Ipld,
    label_field: &str,
    eval_labels: &std::collections::BTreeSet<&str>,
) -> (String, Option<String>) {
    let mut text = String::new();
    let mut label = None;
    if let Ipld::Map(m) = record {
        for (key, value) in m {
            if key == label_field {
                label = match value {
                    Ipld::String(s) => Some(s.clone()),
                    Ipld::List(xs) => {
                        let strings: Vec<&str> = xs
                            .iter()
                            .filter_map(|x| match x {
                                Ipld::String(s) => Some(s.as_str()),
                                _ => None,
                            })
                            .collect();
                        strings
                            .iter()
                            .find(|s| eval_labels.contains(*s))
                            .or(strings.first())
                            .map(|s| (*s).to_owned())
                    }
                    _ => None,
                };
                continue;
            }
            if key == "$type" || key.ends_with("At") {
                continue;
            }
            push_strings(value, &mut text);
        }
    }
    (text, label)
}

fn push_strings(v: &Ipld, out: &mut String) {
    match v {
        Ipld::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        Ipld::List(xs) => xs.iter().for_each(|x| push_strings(x, out)),
        Ipld::Map(m) => m
            .iter()
            .filter(|(k, _)| k.as_str() != "$type" && !k.ends_with("At"))
            .for_each(|(_, x)| push_strings(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str, topic: &str) -> Vec<u8> {
        let json = serde_json::json!({
            "$type": "coop.guild.data.text",
            "body": text,
            "topic": topic,
            "createdAt": "2026-12-01T00:00:00.000Z",
        });
        guild_core::data::encode_record_json(&json).unwrap().1
    }

    fn did(n: u8) -> Did {
        Did::parse(&format!("did:example:m{n}")).unwrap()
    }

    fn eval(baseline: bool) -> Evaluation {
        let p = |l: &str, t: &str| LabelledText {
            label: l.into(),
            text: t.into(),
        };
        Evaluation {
            k: 2,
            metric: None,
            label_field: Some("topic".into()),
            points: vec![
                p("stars", "the moon and the stars at night"),
                p("bread", "bread dough rises in a warm oven"),
            ],
            baseline: if baseline {
                vec![p("stars", "stars shine at night")]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn estimates_are_exact_group_shapley_and_the_same_every_time() {
        let (a, b, c) = (did(1), did(2), did(3));
        let bytes = [
            (&a, record("the moon rises over the stars", "stars")),
            (&a, record("night sky full of stars", "stars")),
            (&b, record("warm bread from the oven", "bread")),
            (&c, record("tide tables for sailors", "sailing")),
        ];
        let valued: Vec<Valued<'_>> = bytes
            .iter()
            .map(|(author, bytes)| Valued { author, bytes })
            .collect();
        let proposal = guild_core::data::encode_with_cid(&Ipld::String("p".into()))
            .unwrap()
            .0;
        let with = estimates(&valued, &eval(true), &proposal).unwrap();
        // Two methods per member, by member then method.
        assert_eq!(with.len(), 6);
        let value = |m: &Did, method: &str| -> f64 {
            with.iter()
                .find(|e| &e.member == m && e.method == method)
                .unwrap()
                .value
                .parse()
                .unwrap()
        };
        // The sailing member answers neither evaluation point: a null player.
        assert_eq!(value(&c, METHOD), 0.0);
        // Over a baseline that already answers "stars", the stars member adds less.
        assert!(value(&a, METHOD) > 0.0 && value(&b, METHOD) > 0.0);
        assert!(value(&a, METHOD_OVER_BASELINE) < value(&a, METHOD));
        // Efficiency: the values sum to U(D). With K = 2, the stars point's two nearest are
        // a's two stars texts (2 matches of 2) and the bread point's hold b's one bread text
        // (1 of 2): U(D) = (1 + 1/2) / 2.
        let sum: f64 = [&a, &b, &c].iter().map(|m| value(m, METHOD)).sum();
        assert!((sum - 0.75).abs() < 1e-12, "efficiency: {sum}");
        assert!(with.iter().all(|e| {
            e.evaluation_set
                .as_deref()
                .is_some_and(|h| h.starts_with("sha256:"))
        }));
        assert!(
            with.iter()
                .filter(|e| e.method == METHOD_OVER_BASELINE)
                .all(|e| e.baseline.is_some())
        );
        // Deterministic, whatever the thread count.
        let again = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| estimates(&valued, &eval(true), &proposal).unwrap());
        assert_eq!(again, with);
        // No baseline: one method only.
        assert_eq!(
            estimates(&valued, &eval(false), &proposal).unwrap().len(),
            3
        );
    }

    #[test]
    fn a_record_that_does_not_decode_is_an_error() {
        let a = did(1);
        let valued = [Valued {
            author: &a,
            bytes: &[0xff, 0x00],
        }];
        let proposal = guild_core::data::encode_with_cid(&Ipld::String("p".into()))
            .unwrap()
            .0;
        assert!(matches!(
            estimates(&valued, &eval(false), &proposal),
            Err(BundleError::Valuation(_))
        ));
    }
}
