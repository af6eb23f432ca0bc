//! `guild payout`, `guild statement`, `guild report`: booking a period's revenue (stewards),
//! and a member's statement and periodic report, through the running node.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guild_api::methods::payout::{book_statement, list_statements};
use guild_core::syntax::Datetime;
use guild_gov::body::{Money, Period};
use guild_license::terms::{Currency, Money as LicenceMoney};

use crate::bundle_cmd::call;
use crate::client_cmd::{connect, explain};

/// `guild payout …`
#[derive(Debug, Subcommand)]
pub enum PayoutCmd {
    /// Book a period's revenue for an agreement (stewards): the node computes the statement
    /// (largest remainder over the members' contribution estimates or records in the
    /// agreement's bundles sealed in the period, pro-rated by member-days) and publishes it;
    /// every other steward's node recomputes it and publishes the same one if it agrees.
    Book {
        /// The agreement (its offer op's CID).
        #[arg(long)]
        agreement: String,
        /// The period's id (such as 2026-Q4), part of the rounding tie-break.
        #[arg(long)]
        period: String,
        /// The period's start (RFC 3339, inclusive).
        #[arg(long)]
        start: String,
        /// The period's end (RFC 3339, exclusive).
        #[arg(long)]
        end: String,
        /// The revenue, in minor units (cents).
        #[arg(long)]
        amount: i64,
        /// Its ISO 4217 currency.
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// estimates:<method> or records.
        #[arg(long, default_value = "estimates:group-shapley")]
        basis: String,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Every statement of the collective, with the stewards who published each.
    List {
        /// Only this period's.
        #[arg(long)]
        period: Option<String>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// An amount in minor units as guild-license writes money (`1999` EUR → `19.99 EUR`, with
/// the currency's own number of decimals).
fn money<N: TryInto<u64> + Copy + std::fmt::Display>(minor: N, currency: &str) -> String {
    match (minor.try_into(), Currency::parse(currency)) {
        (Ok(amount), Ok(currency)) => LicenceMoney { amount, currency }.to_string(),
        _ => format!("{minor} minor units of {currency}"),
    }
}

/// Runs `guild payout`.
pub fn run(data_dir: &Path, cmd: PayoutCmd) -> Result<ExitCode> {
    match cmd {
        PayoutCmd::Book {
            agreement,
            period,
            start,
            end,
            amount,
            currency,
            basis,
            collective,
            json,
        } => {
            let parse = |s: &str, what: &str| {
                Datetime::parse(s)
                    .with_context(|| format!("--{what}: {s:?} is not an RFC 3339 date-time"))
            };
            let out = call::<book_statement::BookStatement>(
                data_dir,
                &book_statement::Input {
                    collective,
                    agreement,
                    period: Period {
                        id: period,
                        start: parse(&start, "start")?,
                        end: parse(&end, "end")?,
                    },
                    total: Money { amount, currency },
                    basis: Some(basis),
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                let s = &out.statement;
                println!(
                    "statement {} booked: {} for {} over {} lines ({})",
                    out.op,
                    money(s.total.amount, &s.total.currency),
                    s.period.id,
                    s.lines.len(),
                    s.basis.as_deref().unwrap_or("?")
                );
                for l in &s.lines {
                    println!(
                        "  {}  {:>14}  weight {}  {} member-days",
                        l.member,
                        money(l.amount, &s.total.currency),
                        l.weight,
                        l.member_days
                    );
                }
            }
        }
        PayoutCmd::List {
            period,
            collective,
            json,
        } => {
            let out = call::<list_statements::ListStatements>(
                data_dir,
                &list_statements::Params { collective, period },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for v in &out.statements {
                    let s = &v.statement;
                    println!(
                        "{}  {}  {} lines  agreed by {} steward(s)",
                        s.period.id,
                        money(s.total.amount, &s.total.currency),
                        s.lines.len(),
                        v.published_by.len()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of a member's statement: what they earned from one agreement in one period.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Earning {
    /// The period's id.
    pub period: String,
    /// Its start and end.
    pub start: String,
    /// The end.
    pub end: String,
    /// The agreement.
    pub agreement: Option<String>,
    /// Its builder.
    pub builder: Option<String>,
    /// The bundles whose estimates or credits gave the weights.
    pub bundles: Vec<String>,
    /// The weights' basis (the valuation method).
    pub basis: Option<String>,
    /// The member's weight (estimate in billionths, or records).
    pub weight: u64,
    /// The sum of every member's weight.
    pub total_weight: u64,
    /// Member-days in the period.
    pub member_days: u64,
    /// What they earned, in minor units.
    pub amount: u64,
    /// The statement's total.
    pub total: i64,
    /// Its currency.
    pub currency: String,
    /// The stewards who published this statement, byte for byte.
    pub stewards: Vec<String>,
}

/// The member's earnings, from the node's statements.
fn earnings(data_dir: &Path, period: Option<String>) -> Result<(String, Vec<Earning>)> {
    let (client, me) = connect(data_dir)?;
    let out = client
        .call::<list_statements::ListStatements>(&list_statements::Params {
            collective: None,
            period,
        })
        .map_err(explain)?;
    let mut rows = Vec::new();
    for v in out.statements {
        let s = v.statement;
        let Some(line) = s.lines.iter().find(|l| l.member.as_str() == me) else {
            continue;
        };
        rows.push(Earning {
            period: s.period.id.clone(),
            start: s.period.start.to_string(),
            end: s.period.end.to_string(),
            agreement: s.agreement.map(|a| a.0.to_string()),
            builder: v.builder,
            bundles: s.bundles.iter().map(|b| b.0.to_string()).collect(),
            basis: s.basis.clone(),
            weight: line.weight,
            total_weight: s.lines.iter().map(|l| l.weight).sum(),
            member_days: line.member_days,
            amount: line.amount,
            total: s.total.amount,
            currency: s.total.currency.clone(),
            stewards: v.published_by.into_iter().map(|p| p.steward).collect(),
        });
    }
    Ok((me, rows))
}

fn share(e: &Earning) -> String {
    if e.total_weight == 0 {
        return "-".into();
    }
    format!("{:.2} %", e.weight as f64 * 100.0 / e.total_weight as f64)
}

/// `guild statement`: what this node's member earned, as a table.
pub fn statement(data_dir: &Path, period: Option<String>, json: bool) -> Result<ExitCode> {
    let (me, rows) = earnings(data_dir, period)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"member": me, "earnings": rows}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Statement for {me}");
    if rows.is_empty() {
        println!("  (no payout statement names you yet)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  {:<10} {:<34} {:>8} {:>10} {:>6} {:>16}  stewards",
        "period", "builder", "bundles", "share", "days", "earned"
    );
    for e in &rows {
        println!(
            "  {:<10} {:<34} {:>8} {:>10} {:>6} {:>16}  {}",
            e.period,
            e.builder
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "-".into()),
            e.bundles.len(),
            share(e),
            e.member_days,
            money(e.amount, &e.currency),
            e.stewards.len()
        );
    }
    for e in &rows {
        println!(
            "  {}: your estimated contribution ({}) is weight {} of {}; the statement splits {} and was published identically by {} steward(s)",
            e.period,
            e.basis.as_deref().unwrap_or("?"),
            e.weight,
            e.total_weight,
            money(e.total, &e.currency),
            e.stewards.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn short(did: &str) -> String {
    if did.len() > 32 {
        format!("{}…{}", &did[..24], &did[did.len() - 6..])
    } else {
        did.to_owned()
    }
}

/// `guild report`: the member's periodic report, as Markdown and JSON files.
pub fn report(data_dir: &Path, period: String, out: PathBuf) -> Result<ExitCode> {
    let (me, rows) = earnings(data_dir, Some(period.clone()))?;
    if rows.is_empty() {
        bail!("no payout statement of period {period} names {me}");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut md = String::new();
    let _ = writeln!(md, "# Guild report, {period}\n\nMember: `{me}`\n");
    let _ = writeln!(
        md,
        "Which builders trained on the collective's data, how much your data is estimated to have contributed, and your share of the licensing revenue.\n"
    );
    let _ = writeln!(
        md,
        "| builder | agreement | bundles | method | your weight | share | member-days | earned |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for e in &rows {
        let _ = writeln!(
            md,
            "| `{}` | `{}` | {} | {} | {} of {} | {} | {} | {} |",
            e.builder.as_deref().unwrap_or("-"),
            e.agreement.as_deref().unwrap_or("-"),
            e.bundles.len(),
            e.basis.as_deref().unwrap_or("-"),
            e.weight,
            e.total_weight,
            share(e),
            e.member_days,
            money(e.amount, &e.currency)
        );
    }
    let _ = writeln!(
        md,
        "\nMethod: the revenue of each agreement is split by largest remainder over every member's weight times member-days (protocol.md §8); weights `estimates:group-shapley` are each member's exact group KNN-Shapley value in the agreement's bundles, on the builder's evaluation set, in billionths. Every steward computes the statement byte for byte; the stewards who published it: {}.",
        rows.iter()
            .flat_map(|e| e.stewards.iter().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let stem = out.join(format!("report-{period}"));
    let md_path = stem.with_extension("md");
    let json_path = stem.with_extension("json");
    crate::files::write_public(&md_path, |w| {
        use std::io::Write as _;
        w.write_all(md.as_bytes())?;
        Ok(())
    })?;
    let json = serde_json::to_vec_pretty(
        &serde_json::json!({"member": me, "period": period, "earnings": rows}),
    )?;
    crate::files::write_public(&json_path, |w| {
        use std::io::Write as _;
        w.write_all(&json)?;
        Ok(())
    })?;
    println!("{}\n{}", md_path.display(), json_path.display());
    Ok(ExitCode::SUCCESS)
}
