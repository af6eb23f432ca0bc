//! `guild value`: data valuation for analysts, on JSONL files ([`guild_valuation`]).
//!
//! Every input line is `{"id": string, "label": string|integer, "vector": [numbers]}` or
//! `{"id", "label", "text"}` (text is featurized by the built-in TF-IDF featurizer, fitted on
//! the training and baseline texts); `guild value groups` also reads `"group"` (string or
//! integer) on each training line. All lines of a run are vectors of one dimension, or all
//! texts. Output: one JSON line per training point (`{"id", "value"}`) or per group
//! (`{"group", "value"}`), in input order (groups in order of first appearance).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use guild_valuation::groups::summed_leave_one_out;
use guild_valuation::{
    Backend, GroupGame, Metric, Points, Problem, TextFeaturizer, knn_shapley, leave_one_out,
};
use rayon::prelude::*;
use serde_json::Value;

/// `guild value …`
#[derive(Debug, Subcommand)]
pub enum ValueCmd {
    /// Exact KNN-Shapley value of every training point (Jia et al. 2019), optionally over a
    /// baseline always present (the commons): one `{"id", "value"}` line per training line.
    KnnShapley {
        #[command(flatten)]
        common: Common,
        /// Leave-one-out values instead of Shapley values.
        #[arg(long)]
        loo: bool,
    },
    /// Values of groups of training points (the `"group"` field: a member's records), one
    /// `{"group", "value"}` line per group; the collective's value (over the baseline, if
    /// any) goes to stderr.
    Groups {
        #[command(flatten)]
        common: Common,
        /// exact: Shapley over all 2^groups coalitions (up to 20 groups); sample: Monte-Carlo
        /// permutations with a Hoeffding bound (printed as "bound"); loo: the sum of the
        /// group's points' leave-one-out values; ablation: U(B ∪ D) − U(B ∪ D ∖ G).
        /// Default: exact up to 16 groups, else sample.
        #[arg(long, value_enum)]
        method: Option<GroupMethod>,
        /// Permutations to sample.
        #[arg(long, default_value_t = 1000)]
        permutations: usize,
        /// The sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// How groups are valued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupMethod {
    /// Exact group Shapley.
    Exact,
    /// Sampled group Shapley.
    Sample,
    /// Summed leave-one-out.
    Loo,
    /// Ablation.
    Ablation,
}

/// What both commands take.
#[derive(Debug, Args)]
pub struct Common {
    /// The training points (JSONL).
    #[arg(long, value_name = "FILE.jsonl")]
    train: PathBuf,
    /// The labelled evaluation points (JSONL).
    #[arg(long, value_name = "FILE.jsonl")]
    test: PathBuf,
    /// K of the KNN classifier.
    #[arg(long)]
    k: usize,
    /// The distance.
    #[arg(long, default_value = "l2", value_parser = ["l2", "cosine"])]
    metric: String,
    /// Points always present (the commons, or open data the builder already has) (JSONL).
    #[arg(long, value_name = "FILE.jsonl")]
    baseline: Option<PathBuf>,
    /// Compute distances with plain scalar loops (the same bits on every machine) instead of
    /// the GEMM.
    #[arg(long)]
    portable: bool,
    /// The text featurizer's dimension.
    #[arg(long, default_value_t = 1024)]
    dim: usize,
}

/// Turns a text into its vector.
type Featurize = dyn Fn(&str) -> Vec<f64> + Sync;

/// One parsed input line.
#[derive(Debug)]
struct Line {
    id: Option<String>,
    label: Label,
    features: Features,
    group: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Label {
    Text(String),
    Int(i64),
}

#[derive(Debug)]
enum Features {
    Vector(Vec<f64>),
    Text(String),
}

/// A line as it is written (typed, so that parsing a large vector file is fast).
#[derive(serde::Deserialize)]
struct RawLine {
    id: Option<String>,
    label: Option<Label>,
    vector: Option<Vec<f64>>,
    text: Option<String>,
    group: Option<GroupName>,
}

impl<'de> serde::Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Label;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Label, E> {
                Ok(Label::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Label, E> {
                Ok(Label::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Label, E> {
                i64::try_from(v)
                    .map(Label::Int)
                    .map_err(|_| E::custom("an integer label beyond 64 bits"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A group's name as written: a string or an integer (printed back as given).
#[derive(Debug)]
struct GroupName(Value);

impl<'de> serde::Deserialize<'de> for GroupName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            v @ (Value::String(_) | Value::Number(_)) => Ok(Self(v)),
            _ => Err(serde::de::Error::custom(
                "\"group\" must be a string or an integer",
            )),
        }
    }
}

fn parse_line(text: &str) -> Result<Line, String> {
    let raw: RawLine = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let label = raw.label.ok_or("no \"label\"")?;
    let features = match (raw.vector, raw.text) {
        (Some(v), None) => Features::Vector(v),
        (None, Some(t)) => Features::Text(t),
        (Some(_), Some(_)) => return Err("a line has \"vector\" or \"text\", not both".into()),
        (None, None) => return Err("no \"vector\" and no \"text\"".into()),
    };
    Ok(Line {
        id: raw.id,
        label,
        features,
        group: raw.group.map(|g| g.0),
    })
}

/// Reads a JSONL file (lines parsed in parallel); errors name the file and line.
fn read_lines(path: &Path) -> Result<Vec<Line>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let numbered: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    numbered
        .par_iter()
        .map(|(n, l)| {
            parse_line(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

/// The three sets as points, with labels interned across them.
struct Sets {
    train: Points,
    test: Points,
    baseline: Option<Points>,
    lines: Vec<Line>,
}

fn load(c: &Common) -> Result<Sets> {
    if c.k == 0 {
        bail!("--k must be at least 1");
    }
    let mut train = read_lines(&c.train)?;
    let mut test = read_lines(&c.test)?;
    let mut baseline = c.baseline.as_deref().map(read_lines).transpose()?;
    if train.is_empty() {
        bail!("{}: no training points", c.train.display());
    }
    if test.is_empty() {
        bail!("{}: no evaluation points", c.test.display());
    }
    for (i, l) in train.iter().enumerate() {
        if l.id.is_none() {
            bail!(
                "{}: training point {} has no \"id\"",
                c.train.display(),
                i + 1
            );
        }
    }
    let mut labels: HashMap<Label, u32> = HashMap::new();
    let mut intern = |l: &Label| -> u32 {
        let next = labels.len() as u32;
        *labels.entry(l.clone()).or_insert(next)
    };
    let all = train
        .iter()
        .map(|l| (&c.train, l))
        .chain(test.iter().map(|l| (&c.test, l)))
        .chain(
            baseline
                .iter()
                .flatten()
                .map(|l| (c.baseline.as_ref().unwrap_or(&c.train), l)),
        );
    let texts = train
        .iter()
        .any(|l| matches!(l.features, Features::Text(_)));
    let mut dim = None;
    for (path, l) in all.clone() {
        match (&l.features, texts) {
            (Features::Text(_), true) => {}
            (Features::Vector(v), false) => match dim {
                None => dim = Some(v.len()),
                Some(d) if d != v.len() => bail!(
                    "{}: a vector of {} numbers where the first training vector has {d}",
                    path.display(),
                    v.len()
                ),
                Some(_) => {}
            },
            _ => bail!(
                "{}: every line must be a vector, or every line a text (the first training line decides)",
                path.display()
            ),
        }
    }
    // Vectors are moved out of the lines (they are not needed twice); texts are featurized.
    let to_points =
        |set: &mut [Line], labels: Vec<u32>, f: &(dyn Fn(&str) -> Vec<f64> + Sync), dim: usize| {
            let rows: Vec<Vec<f64>> = set
                .par_iter_mut()
                .map(|l| match &mut l.features {
                    Features::Vector(v) => std::mem::take(v),
                    Features::Text(t) => f(t),
                })
                .collect();
            Points::new(dim, &rows, labels)
        };
    let train_labels: Vec<u32> = train.iter().map(|l| intern(&l.label)).collect();
    let test_labels: Vec<u32> = test.iter().map(|l| intern(&l.label)).collect();
    let base_labels: Option<Vec<u32>> = baseline
        .as_ref()
        .map(|b| b.iter().map(|l| intern(&l.label)).collect());
    let (f, dim): (Box<Featurize>, usize) = if texts {
        let corpus: Vec<&str> = train
            .iter()
            .chain(baseline.iter().flatten())
            .filter_map(|l| match &l.features {
                Features::Text(t) => Some(t.as_str()),
                Features::Vector(_) => None,
            })
            .collect();
        let fitted = TextFeaturizer {
            dim: c.dim,
            ..TextFeaturizer::default()
        }
        .fit(&corpus)?;
        let d = fitted.dim();
        (Box::new(move |t: &str| fitted.transform(t)), d)
    } else {
        (Box::new(|_: &str| Vec::new()), dim.unwrap_or(0))
    };
    let train_points = to_points(&mut train, train_labels, &*f, dim)
        .with_context(|| format!("{}", c.train.display()))?;
    let test_points = to_points(&mut test, test_labels, &*f, dim)
        .with_context(|| format!("{}", c.test.display()))?;
    let base_points = match (&mut baseline, base_labels) {
        (Some(b), Some(l)) => Some(to_points(b, l, &*f, dim).context("the baseline")?),
        _ => None,
    };
    Ok(Sets {
        train: train_points,
        test: test_points,
        baseline: base_points,
        lines: train,
    })
}

fn progress(total: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what} ({{eta}} left)"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn write_json_lines(lines: impl Iterator<Item = Value>) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for v in lines {
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Runs a `guild value` command.
pub fn run(cmd: ValueCmd) -> Result<ExitCode> {
    match cmd {
        ValueCmd::KnnShapley { common, loo } => {
            let started = std::time::Instant::now();
            let sets = load(&common)?;
            tracing::info!(elapsed = ?started.elapsed(), "inputs read");
            let p = problem(&common, &sets)?;
            let bar = progress(sets.test.len(), "evaluation points");
            let tick = |n: usize| bar.inc(n as u64);
            let values = if loo {
                leave_one_out(&p, Some(&tick))?
            } else {
                knn_shapley(&p, Some(&tick))?
            };
            bar.finish_and_clear();
            tracing::info!(elapsed = ?started.elapsed(), "values computed");
            write_json_lines(
                sets.lines
                    .iter()
                    .zip(values)
                    .map(|(l, v)| serde_json::json!({"id": l.id, "value": v})),
            )?;
        }
        ValueCmd::Groups {
            common,
            method,
            permutations,
            seed,
        } => {
            let sets = load(&common)?;
            let mut names: Vec<Value> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            let mut group_of = Vec::with_capacity(sets.lines.len());
            for (i, l) in sets.lines.iter().enumerate() {
                let Some(g) = &l.group else {
                    bail!(
                        "{}: training point {} has no \"group\"",
                        common.train.display(),
                        i + 1
                    );
                };
                let key = g.to_string();
                let next = names.len();
                let gi = *index.entry(key).or_insert_with(|| {
                    names.push(g.clone());
                    next
                });
                group_of.push(gi);
            }
            let p = problem(&common, &sets)?;
            let groups = names.len();
            let method = method.unwrap_or(if groups <= 16 {
                GroupMethod::Exact
            } else {
                GroupMethod::Sample
            });
            let bar = progress(sets.test.len(), "evaluation points");
            let tick = |n: usize| bar.inc(n as u64);
            let result = if method == GroupMethod::Loo {
                let r = summed_leave_one_out(&p, &group_of, groups, Some(&tick))?;
                bar.finish_and_clear();
                r
            } else {
                let game = GroupGame::new(&p, &group_of, groups, Some(&tick))?;
                bar.finish_and_clear();
                eprintln!(
                    "collective: U(B ∪ D) − U(B) = {} (U(B) = {}, {} groups, {} evaluation points)",
                    game.collective(),
                    game.baseline_utility(),
                    groups,
                    sets.test.len()
                );
                match method {
                    GroupMethod::Exact => game.exact()?,
                    GroupMethod::Sample => {
                        let bar = progress(permutations, "permutations");
                        let tick = |n: usize| bar.inc(n as u64);
                        let r = game.sample(permutations, seed, Some(&tick))?;
                        bar.finish_and_clear();
                        r
                    }
                    _ => game.ablation(),
                }
            };
            write_json_lines(names.into_iter().zip(result.values).map(
                |(g, v)| match result.bound {
                    Some(b) => serde_json::json!({"group": g, "value": v, "bound": b}),
                    None => serde_json::json!({"group": g, "value": v}),
                },
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn problem<'a>(c: &Common, sets: &'a Sets) -> Result<Problem<'a>> {
    let metric: Metric = c.metric.parse().map_err(anyhow::Error::msg)?;
    Ok(Problem {
        train: &sets.train,
        test: &sets.test,
        baseline: sets.baseline.as_ref(),
        k: c.k,
        metric,
        backend: if c.portable {
            Backend::Portable
        } else {
            Backend::Gemm
        },
    })
}
