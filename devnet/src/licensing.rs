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
        let accepted = d.guild_bare(&["agreement", "accept", "--key", &key_s, &offer_s])?;
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
                "bundle {} ({records} records by {} members) recomputed by {} stewards, sealed by {approvals}; node-1 and {} wrote byte-identical files; the builder verified it offline; a flipped byte is refused ({})",
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
        Ok(BundleOut { manifest, credits })
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
    fn stewards(&self) -> Vec<usize> {
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
