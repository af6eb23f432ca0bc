//! The invariants checked after the last heal: no acknowledged write lost, nothing served
//! to the outsider, no panic.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use serde_json::Value;

use crate::Devnet;

use super::ChaosReport;

use super::faults::*;
use super::workload::*;

/// Every record a member holds in the space, from its own node: uri → cid.
pub(super) fn records_of(d: &Devnet, i: usize, id: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![
            ("repo", d.nodes[i].did.as_str()),
            ("collection", "coop.guild.data.text"),
            ("space", id),
            ("limit", "100"),
        ];
        if let Some(c) = cursor.as_deref() {
            params.push(("cursor", c));
        }
        let page = d.nodes[i].query("coop.guild.repo.listRecords", &params)?;
        let records = page["records"].as_array().cloned().unwrap_or_default();
        for r in &records {
            if let (Some(uri), Some(cid)) = (r["uri"].as_str(), r["cid"].as_str()) {
                out.insert(uri.to_string(), cid.to_string());
            }
        }
        cursor = page["cursor"].as_str().map(str::to_owned);
        if records.is_empty() || cursor.is_none() {
            return Ok(out);
        }
    }
}

/// No acknowledged record, consent or ballot lost, and nothing served to the outsider.
pub(super) fn check_ledger(run: &mut Run, ledger: &Ledger) -> Result<()> {
    let r = &mut run.report;
    r.records = ledger.records.len() as u64;
    r.record_failures = ledger.record_failures;
    r.probes = ledger.probes;
    r.probes_refused = ledger.probes_refused;
    let mut failures: Vec<(String, u64)> = ledger
        .failures
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    failures.truncate(12);
    r.failures = failures;
    r.violations.extend(ledger.served.iter().cloned());
    check_records(run, ledger)?;
    let status = run.d.collective_status(0)?;
    check_consents(run, ledger, &status);
    check_ballots(&mut run.report, ledger, &status);
    Ok(())
}

/// Every acknowledged record is in its member's repo, with the acknowledged CID.
fn check_records(run: &mut Run, ledger: &Ledger) -> Result<()> {
    let r = &mut run.report;
    for i in 0..run.n {
        let held = records_of(&run.d, i, &run.id)?;
        let lost: Vec<&str> = ledger
            .records
            .iter()
            .filter(|(m, uri, cid)| *m == i && held.get(uri) != Some(cid))
            .map(|(_, uri, _)| uri.as_str())
            .collect();
        if !lost.is_empty() {
            r.violations.push(format!(
                "{}: {} acknowledged record(s) missing or changed, e.g. {}",
                run.d.nodes[i].name,
                lost.len(),
                lost[0]
            ));
        }
    }
    Ok(())
}

/// Each member's consent per template is what its last acknowledged change made it (or what
/// a later change whose answer was lost made it).
fn check_consents(run: &mut Run, ledger: &Ledger, status: &Value) {
    let r = &mut run.report;
    let consents = status["consents"].as_array().cloned().unwrap_or_default();
    for (&(m, template), attempts) in &ledger.consents {
        r.consents += attempts
            .iter()
            .filter(|(_, o)| *o == Outcome::Acked)
            .count() as u64;
        let Some(last) = attempts.iter().rposition(|(_, o)| *o == Outcome::Acked) else {
            continue;
        };
        let allowed: BTreeSet<bool> = attempts[last..]
            .iter()
            .enumerate()
            .filter(|(k, (_, o))| *k == 0 || *o == Outcome::Unknown)
            .map(|(_, (g, _))| *g)
            .collect();
        let did = &run.d.nodes[m].did;
        let now = consents
            .iter()
            .find(|c| c["member"] == did.as_str() && c["template"] == template)
            .is_some_and(|c| c["granted"] == true);
        if !allowed.contains(&now) {
            r.violations.push(format!(
                "{}'s {template} consent is {now}, but its last acknowledged change set it {}",
                run.d.nodes[m].name, attempts[last].0
            ));
        }
    }
}

/// Every election opened holds at least its acknowledged ballots, and no more than were cast.
fn check_ballots(r: &mut ChaosReport, ledger: &Ledger, status: &Value) {
    let elections = status["elections"].as_array().cloned().unwrap_or_default();
    r.elections = (
        ledger.elections_opened,
        elections
            .iter()
            .filter(|e| !e["certified"].is_null())
            .count() as u64,
    );
    for (election, (acked, attempted)) in &ledger.ballots {
        r.ballots += acked.len() as u64;
        let Some(e) = elections.iter().find(|e| e["id"] == election.as_str()) else {
            r.violations.push(format!(
                "election {election} (opened, acknowledged) is unknown"
            ));
            continue;
        };
        let voters = e["voters"].as_u64().unwrap_or(0) as usize;
        let counted = e["certified"]["ballots"].as_u64().map(|b| b as usize);
        if voters < acked.len() || voters > attempted.len() {
            r.violations.push(format!(
                "election {election}: {voters} ballots held, {} acknowledged, {} attempted",
                acked.len(),
                attempted.len()
            ));
        }
        // A certified result counts only ballots cast before the close, all of which are here.
        if counted.is_some_and(|c| c > voters) {
            r.violations.push(format!(
                "election {election}: counted more ballots than it holds"
            ));
        }
    }
}

/// No panic in any node's log.
pub(super) fn check_logs(run: &mut Run) {
    for node in &run.d.nodes {
        let Ok(log) = std::fs::read_to_string(node.log()) else {
            continue;
        };
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            run.report
                .violations
                .push(format!("{} panicked: {line}", node.name));
        }
    }
}
