//! The demo's licensing steps: a builder with only a key accepts an agreement the stewards
//! offer and countersign; a bundle is proposed, recomputed by every steward and sealed; the
//! builder verifies it offline and reads its credits; a member revokes, and the next bundle
//! leaves them out while a revocation notice lists what the first one delivered.
//!
//! Everything goes through the `guild` CLI, as a steward and a builder would type it; the
//! builder's commands run with no data directory at all.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Devnet, Story};

/// The template the demo licenses under.
const TEMPLATE: &str = "training-commercial-attribution";

impl Devnet {
    /// Runs `guild <args>` with no data directory (a builder's machine: a key, no node) and
    /// returns its standard output, trimmed.
    pub fn guild_bare(&self, args: &[&str]) -> Result<String> {
        let out = self.bare(args)?;
        if !out.status.success() {
            bail!(
                "builder: `guild {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Like [`Devnet::guild_bare`], for a command that must fail: its error output.
    pub fn guild_bare_fails(&self, args: &[&str]) -> Result<String> {
        let out = self.bare(args)?;
        if out.status.success() {
            bail!(
                "builder: `guild {}` succeeded where it must fail",
                args.join(" ")
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }

    fn bare(&self, args: &[&str]) -> Result<std::process::Output> {
        self.check_stop()?;
        self.exe
            .command()
            .args(args)
            .current_dir(&self.root)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("cannot run guild {}", args.join(" ")))
    }
}

/// Node `i`'s bundles (`guild bundle list --json`).
fn bundles(d: &Devnet, i: usize) -> Result<Vec<Value>> {
    let out = d.guild(i, &["bundle", "list", "--json"])?;
    let v: Value = serde_json::from_str(&out).context("bundle list: not JSON")?;
    Ok(v["bundles"].as_array().cloned().unwrap_or_default())
}

fn bundle<'a>(list: &'a [Value], proposal: &str) -> Option<&'a Value> {
    list.iter().find(|b| b["proposal"] == proposal)
}

impl Story {
    /// The builder accepts an agreement with only its key; the stewards countersign.
    pub(super) fn agreement(&mut self) -> Result<String> {
        let d = &self.d;
        let t = Instant::now();
        let builder_dir = d.root.join("builder");
        std::fs::create_dir_all(&builder_dir)
            .with_context(|| format!("cannot create {}", builder_dir.display()))?;
        let key = builder_dir.join("builder.key");
        let key_s = key.to_string_lossy().into_owned();
        if key.exists() {
            std::fs::remove_file(&key)?;
        }
        let builder = d.guild_bare(&["key", "generate", "--out", &key_s])?;
        let builder = builder
            .lines()
            .find(|l| l.starts_with("did:"))
            .unwrap_or(&builder)
            .trim()
            .to_owned();
        let offer_file = builder_dir.join("offer.json");
        let offer_s = offer_file.to_string_lossy().into_owned();
        let offer = d.guild(
            0,
            &[
                "agreement",
                "offer",
                "--builder",
                &builder,
                "--template",
                TEMPLATE,
                "--out",
                &offer_s,
            ],
        )?;
        // The builder's target task: a small labelled evaluation set, and open data it already
        // has in one of the topics (the commons), by which the stewards value each member.
        let eval = builder_dir.join("eval.jsonl");
        let commons = builder_dir.join("commons.jsonl");
        std::fs::write(&eval, crate::EVAL)?;
        std::fs::write(&commons, crate::COMMONS)?;
        let accepted = d.guild_bare(&[
            "agreement",
            "accept",
            "--key",
            &key_s,
            &offer_s,
            "--eval",
            &eval.to_string_lossy(),
            "--eval-baseline",
            &commons.to_string_lossy(),
            "--eval-k",
            "3",
            "--label-field",
            "topic",
        ])?;
        // A quorum of stewards countersigns (node-1, node-2, node-4 hold the seats).
        let stewards = self.stewards();
        for &i in stewards.iter().take(self.quorum) {
            d.wait_for("the accept reaches the steward", |d| {
                Ok(agreement_status(d, i, &offer)? == "accepted"
                    || agreement_status(d, i, &offer)? == "in-force")
            })?;
            if agreement_status(d, i, &offer)? == "accepted" {
                d.guild(i, &["agreement", "countersign", &offer])?;
            }
        }
        let c = d.wait_for("the agreement in force on every node", |d| {
            for i in 0..d.nodes.len() {
                if agreement_status(d, i, &offer)? != "in-force" {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        let accepted = accepted.lines().last().unwrap_or_default().to_owned();
        self.steps.done(
            t.elapsed(),
            &format!(
                "a builder with only a key ({}) accepted a {TEMPLATE} agreement (accept {}); {} stewards countersigned: in force on every node",
                short(&builder),
                short(&accepted),
                self.quorum
            ),
            Some(c),
        );
        Ok(offer)
    }

    /// A bundle is proposed, recomputed by every steward and sealed; the builder verifies
    /// it offline and reads its credits.
    pub(super) fn bundle(&mut self, offer: &str, label: &str) -> Result<BundleOut> {
        let d = &self.d;
        let t = Instant::now();
        let proposal = d.guild(0, &["bundle", "propose", "--agreement", offer])?;
        let stewards = self.stewards();
        let c = d.wait_for("the bundle sealed and recomputed by every steward", |d| {
            let mut sealed = None;
            for &i in &stewards {
                let list = bundles(d, i)?;
                let Some(b) = bundle(&list, &proposal) else {
                    return Ok(false);
                };
                if b["status"] == "void" {
                    bail!("the bundle was voided: {b}");
                }
                if b["status"] != "sealed" || b["computed"].is_null() {
                    return Ok(false);
                }
                if b["computed"] != b["manifest"] {
                    bail!(
                        "{} computed manifest {} but the stewards sealed {}",
                        d.nodes[i].name,
                        b["computed"],
                        b["manifest"]
                    );
                }
                sealed = Some(b["manifest"].clone());
            }
            // The proposer's node packaged it.
            let list = bundles(d, 0)?;
            Ok(sealed.is_some()
                && bundle(&list, &proposal).is_some_and(|b| !b["carBytes"].is_null()))
        })?;
        let list = bundles(d, 0)?;
        let b = bundle(&list, &proposal)
            .cloned()
            .context("the sealed bundle vanished")?;
        let manifest = b["manifest"].as_str().unwrap_or_default().to_owned();
        let approvals = b["approvals"].as_array().map_or(0, Vec::len);
        // The builder's copy: exported from a steward's node, then checked with nothing but
        // the file.
        let dir = d.root.join("builder").join(label);
        let dir_s = dir.to_string_lossy().into_owned();
        d.guild(0, &["bundle", "export", &manifest, "--out", &dir_s])?;
        let car = dir.join("bundle.car");
        let car_s = car.to_string_lossy().into_owned();
        // Every steward's node packages the same bytes.
        let other = *stewards
            .iter()
            .find(|&&i| i != 0)
            .context("a second steward")?;
        let other_dir = dir.join(format!("from-{}", d.nodes[other].name));
        d.wait_for("the second steward packaged the bundle", |d| {
            let list = bundles(d, other)?;
            Ok(bundle(&list, &proposal).is_some_and(|b| !b["carBytes"].is_null()))
        })?;
        d.guild(
            other,
            &[
                "bundle",
                "export",
                &manifest,
                "--out",
                &other_dir.to_string_lossy(),
            ],
        )?;
        if std::fs::read(&car)? != std::fs::read(other_dir.join("bundle.car"))? {
            bail!(
                "check `deterministic packaging`: node-1's and {}'s bundle files differ",
                d.nodes[other].name
            );
        }
        let verified = d.guild_bare(&["bundle", "verify", &car_s])?;
        if !verified.starts_with("OK ") {
            bail!("check `bundle verify`: {verified}");
        }
        let shown = d.guild_bare(&["bundle", "show", &car_s, "--json"])?;
        let shown: Value = serde_json::from_str(&shown).context("bundle show: not JSON")?;
        for f in ["croissant.json", "README.md", "disclosure.json"] {
            if !dir.join(f).is_file() {
                bail!("check `export`: {f} missing in {}", dir.display());
            }
        }
        let credits: Vec<(String, u64)> = shown["credits"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["did"].as_str().unwrap_or_default().to_owned(),
                            c["records"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let records = shown["records"].as_u64().unwrap_or(0);
        if records == 0 || credits.iter().map(|c| c.1).sum::<u64>() != records {
            bail!("check `bundle show`: {records} records, credits {credits:?}");
        }
        // Every member's own node recomputes its part of the bundle from its own repo and the
        // log (what its dashboard's bundles page shows): the manifest's credit, exactly.
        for (i, node) in d.nodes.iter().enumerate().take(self.n) {
            let credited = credits.iter().find(|c| c.0 == node.did).map_or(0, |c| c.1);
            let list = bundles(d, i)?;
            let mine = bundle(&list, &proposal)
                .map(|b| b["mine"]["records"].as_u64())
                .with_context(|| format!("{} does not list the bundle", node.name))?;
            if mine != Some(credited) {
                bail!(
                    "check `a member's part`: {} counts {mine:?} of its records in the bundle, the manifest credits {credited}",
                    node.name
                );
            }
        }
        // Any change to the file is caught: one byte of a record flipped near the end.
        let tampered = dir.join("tampered.car");
        let mut bytes = std::fs::read(&car)?;
        let at = bytes.len() - 3;
        bytes[at] ^= 0x01;
        std::fs::write(&tampered, &bytes)?;
        let why = d.guild_bare_fails(&["bundle", "verify", &tampered.to_string_lossy()])?;
        self.steps.done(
            t.elapsed(),
            &format!(
                "bundle {} ({records} records by {} members) recomputed by {} stewards, sealed by {approvals}; node-1 and {} wrote byte-identical files; every member's node counts its own records in it as the manifest credits them; the builder verified it offline; a flipped byte is refused ({})",
                short(&manifest),
                credits.len(),
                stewards.len(),
                d.nodes[other].name,
                first_words(why.lines().last().unwrap_or_default())
            ),
            Some(c),
        );
        let names: Vec<String> = credits
            .iter()
            .map(|(did, n)| format!("{} {n}", self.name_of(did)))
            .collect();
        println!("      credits: {}", names.join(", "));
        let estimates = shown["estimates"].as_array().cloned().unwrap_or_default();
        Ok(BundleOut {
            manifest,
            credits,
            estimates,
        })
    }

    /// Every member's estimated contribution to the bundle, on the builder's evaluation set,
    /// with and without the builder's commons as a baseline.
    pub(super) fn contributions(&mut self, b: &BundleOut) -> Result<()> {
        let t = Instant::now();
        let value = |member: &str, method: &str| -> Option<f64> {
            b.estimates
                .iter()
                .find(|e| e["member"] == member && e["method"] == method)
                .and_then(|e| e["value"].as_str())
                .and_then(|v| v.parse().ok())
        };
        let mut rows = Vec::new();
        for (did, _) in &b.credits {
            let (Some(alone), Some(over)) = (
                value(did, "group-shapley"),
                value(did, "group-shapley-over-baseline"),
            ) else {
                bail!(
                    "check `contribution estimates`: the manifest has no group-shapley estimates (with and without the baseline) for {did}: {:?}",
                    b.estimates
                );
            };
            rows.push((self.name_of(did), alone, over));
        }
        let (sum, sum_over): (f64, f64) =
            rows.iter().fold((0.0, 0.0), |a, r| (a.0 + r.1, a.1 + r.2));
        // Efficiency: the values add up to what the whole collective is worth, which the
        // commons can only lower (it answers part of the task already).
        if sum_over > sum + 1e-9 {
            bail!(
                "check `contribution estimates`: worth more over the commons ({sum_over}) than alone ({sum})"
            );
        }
        let params = b
            .estimates
            .first()
            .and_then(|e| e["parameters"].as_str())
            .unwrap_or("");
        self.steps.done(
            t.elapsed(),
            &format!(
                "every member's contribution to the bundle estimated by every steward (exact group KNN-Shapley on the builder's 12 labelled texts; {params}): the collective is worth {sum:.3} alone and {sum_over:.3} over the builder's commons"
            ),
            None,
        );
        for (name, alone, over) in &rows {
            println!("      {name:<8} contribution {alone:>8.4}   over the commons {over:>8.4}");
        }
        Ok(())
    }

    /// A steward books the agreement's revenue for a period; every other steward recomputes
    /// the statement and publishes the same bytes; every member reads their line, and the
    /// lines sum exactly to the revenue.
    pub(super) fn payouts(&mut self, offer: &str) -> Result<()> {
        let d = &self.d;
        let t = Instant::now();
        // A 30-day period from today's midnight (UTC): member-days start tomorrow for the
        // members consenting now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let start = now - now.rem_euclid(86_400);
        let end = start + 30 * 86_400;
        let iso = |secs: i64| {
            guild_core::syntax::Datetime::from_unix_micros(secs * 1_000_000).to_string()
        };
        let period = format!("demo-{}", &iso(start)[..10]);
        const TOTAL: i64 = 100_000;
        let booked = d.guild(
            0,
            &[
                "payout",
                "book",
                "--agreement",
                offer,
                "--period",
                &period,
                "--start",
                &iso(start),
                "--end",
                &iso(end),
                "--amount",
                &TOTAL.to_string(),
                "--currency",
                "EUR",
                "--json",
            ],
        )?;
        let booked: Value = serde_json::from_str(&booked).context("payout book: not JSON")?;
        let stewards = self.stewards();
        let c = d.wait_for("every steward published the same statement", |d| {
            let list = d.guild(0, &["payout", "list", "--period", &period, "--json"])?;
            let list: Value = serde_json::from_str(&list)?;
            let Some(all) = list["statements"].as_array() else {
                return Ok(false);
            };
            if all.len() > 1 {
                bail!(
                    "check `statements`: the stewards published {} different statements: {list}",
                    all.len()
                );
            }
            Ok(all
                .first()
                .and_then(|s| s["publishedBy"].as_array())
                .is_some_and(|p| p.len() == stewards.len()))
        })?;
        // Every member reads their own line on their own node; the lines sum exactly.
        let mut paid = 0i64;
        let mut rows = Vec::new();
        let mut reporter = None;
        for i in 0..self.n {
            let out = d.guild(i, &["statement", "--period", &period, "--json"])?;
            let v: Value = serde_json::from_str(&out).context("statement: not JSON")?;
            for e in v["earnings"].as_array().into_iter().flatten() {
                let amount = e["amount"].as_i64().context("statement: no amount")?;
                if e["stewards"].as_array().map_or(0, Vec::len) != stewards.len() {
                    bail!(
                        "check `statement`: {} sees a statement not every steward published: {e}",
                        d.nodes[i].name
                    );
                }
                paid += amount;
                reporter.get_or_insert(i);
                rows.push((
                    d.nodes[i].name.clone(),
                    amount,
                    e["memberDays"].as_u64().unwrap_or(0),
                    e["weight"].as_u64().unwrap_or(0),
                ));
            }
        }
        let lines = booked["statement"]["lines"].as_array().map_or(0, Vec::len);
        if paid != TOTAL || rows.len() != lines {
            bail!(
                "check `statements sum`: {} members read {paid} cents of {TOTAL} over {lines} lines",
                rows.len()
            );
        }
        let report_dir = d.root.join("reports");
        let reporter = reporter.context("no member has a line")?;
        let report_s = report_dir.to_string_lossy().into_owned();
        d.guild(
            reporter,
            &["report", "--period", &period, "--out", &report_s],
        )?;
        for ext in ["md", "json"] {
            let f = report_dir.join(format!("report-{period}.{ext}"));
            if !f.is_file() {
                bail!("check `report`: {} missing", f.display());
            }
        }
        self.steps.done(
            t.elapsed(),
            &format!(
                "node-1 booked 1000.00 EUR of the agreement for {period} (largest remainder over the estimates times member-days); {} stewards recomputed it and published byte-identical statements; {} members read lines summing to exactly 100000 cents; {}'s report written (Markdown and JSON)",
                stewards.len(),
                rows.len(),
                d.nodes[reporter].name
            ),
            Some(c),
        );
        for (name, amount, days, weight) in &rows {
            println!(
                "      {name:<8} {:>4}.{:02} EUR  ({days} member-days, weight {weight})",
                amount / 100,
                amount % 100
            );
        }
        Ok(())
    }

    /// A member revokes; the next bundle leaves them out and a revocation notice lists what
    /// the first bundle delivered of theirs.
    pub(super) fn revoke_and_rebundle(
        &mut self,
        offer: &str,
        first: &BundleOut,
    ) -> Result<BundleOut> {
        let t = Instant::now();
        let r = self.n - 1;
        let did = self.d.nodes[r].did.clone();
        let delivered = first
            .credits
            .iter()
            .find(|c| c.0 == did)
            .map(|c| c.1)
            .context("the revoking member has no record in the first bundle")?;
        self.d
            .guild(r, &["consent", "revoke", "--template", TEMPLATE])?;
        self.d.converge(&self.all)?;
        let second = self.bundle(offer, "second")?;
        if second.credits.iter().any(|c| c.0 == did) {
            bail!("check `revocation`: the second bundle still credits {did}");
        }
        let d = &self.d;
        let notices = d.guild(0, &["bundle", "revocations", "--json"])?;
        let notices: Value = serde_json::from_str(&notices).context("revocations: not JSON")?;
        let notice = notices["notices"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["member"] == did.as_str()))
            .cloned()
            .context("check `revocation notice`: none for the revoking member")?;
        let listed = notice["records"].as_array().map_or(0, Vec::len) as u64;
        if notice["bundle"] != first.manifest.as_str() || listed != delivered {
            bail!(
                "check `revocation notice`: expected {delivered} records of bundle {}, got {notice}",
                first.manifest
            );
        }
        self.steps.done(
            t.elapsed(),
            &format!(
                "{} revoked consent: the next bundle ({}) leaves them out; a revocation notice lists the {delivered} records bundle {} delivered",
                d.nodes[r].name,
                short(&second.manifest),
                short(&first.manifest)
            ),
            None,
        );
        Ok(second)
    }

    /// The stewards' node indices, as node-1's view has them.
    pub(super) fn stewards(&self) -> Vec<usize> {
        let s = self.d.collective_status(0).ok();
        let stewards: Vec<String> = s
            .as_ref()
            .and_then(|s| s["stewards"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (0..self.n)
            .filter(|&i| stewards.contains(&self.d.nodes[i].did))
            .collect()
    }

    pub(super) fn name_of(&self, did: &str) -> String {
        self.d
            .nodes
            .iter()
            .find(|n| n.did == did)
            .map_or_else(|| short(did), |n| n.name.clone())
    }
}

/// A sealed bundle as the builder holds it.
pub(super) struct BundleOut {
    pub(super) manifest: String,
    pub(super) credits: Vec<(String, u64)>,
    /// The manifest's contribution estimates (`guild bundle show --json`).
    pub(super) estimates: Vec<Value>,
}

/// Node `i`'s view of the agreement's status.
fn agreement_status(d: &Devnet, i: usize, offer: &str) -> Result<String> {
    let s = d.collective_status(i)?;
    Ok(s["agreements"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == offer))
        .and_then(|x| x["status"].as_str())
        .unwrap_or("unknown")
        .to_owned())
}

/// What a failed verification said, after the file name, in a few words.
fn first_words(why: &str) -> String {
    let after = why.split("FAILED verification: ").nth(1).unwrap_or(why);
    let words: Vec<&str> = after.split_whitespace().take(9).collect();
    format!("{}…", words.join(" "))
}

pub(super) fn short(s: &str) -> String {
    if s.len() > 20 {
        format!("{}…{}", &s[..12], &s[s.len() - 6..])
    } else {
        s.to_owned()
    }
}
