//! The record form of a contract: `coop.guild.licence.template` exactly as the lexicon writes
//! it (inside a charter's `licenceTemplates` and an agreement offer's `terms`), and the
//! lossless conversion between it and [`Contract`].
//!
//! Decision: guild-license does not depend on guild-gov. It reads the lexicon shape itself
//! ([`TemplateRecord`], serde, any serde data format: JSON or the DAG-CBOR data model), so
//! that the licence crate stays below governance and a builder's verifier can use it without
//! the op log. A test (`tests/gov_templates.rs`) holds the two readings equal: every
//! template guild-gov's `standard_templates()` writes converts to a [`Contract`] equal to
//! [`crate::standard`]'s, and back to the same JSON value.
//!
//! Every field is kept: unknown fields are refused (`deny_unknown_fields`), absent optional
//! fields stay absent, and `Contract → TemplateRecord → Contract` and
//! `TemplateRecord → Contract → TemplateRecord` are identities on valid input.

use guild_core::syntax::Nsid;
use serde::{Deserialize, Serialize};

use crate::error::LicenceError;
use crate::terms::{
    Attribution, BasisPoints, Compensation, Contract, Country, Currency, FlowDown, Money,
    Reporting, TemplateId, Territory,
};

/// The `$type` prefix of the compensation union's members.
const COMPENSATION: &str = "coop.guild.licence.template#";

/// `coop.guild.licence.template` as written on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TemplateRecord {
    pub id: String,
    pub title: String,
    pub version: i64,
    pub uses: Vec<String>,
    pub user_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub territories: Option<Vec<String>>,
    pub flow_down: FlowDownRecord,
    pub attribution: AttributionRecord,
    pub compensation: CompensationRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_days: Option<i64>,
    pub notice_days: i64,
    pub on_termination: String,
    pub reporting: ReportingRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
}

/// `#flowDown`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FlowDownRecord {
    pub synthetic_data: bool,
    pub downstream_models: bool,
}

/// `#attribution`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AttributionRecord {
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `coop.guild.defs#money`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MoneyRecord {
    pub amount: i64,
    pub currency: String,
}

/// The compensation union (`#fixedFee`, `#perQuery`, `#revenueShare`, `#noFee`), read as one
/// struct of optional fields so that any serde format (the DAG-CBOR data model included) can
/// read it; [`Contract`] conversion checks that exactly the member's fields are present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CompensationRecord {
    #[serde(rename = "$type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<MoneyRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_per_thousand: Option<MoneyRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<MoneyRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `#reporting`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ReportingRecord {
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<String>>,
}

impl Contract {
    /// Reads the lexicon's JSON form (e.g. one entry of a charter's `licenceTemplates`).
    pub fn from_record_json(value: &serde_json::Value) -> Result<Contract, LicenceError> {
        let record =
            TemplateRecord::deserialize(value).map_err(|e| LicenceError::Shape(e.to_string()))?;
        Contract::try_from(&record)
    }

    /// The lexicon's JSON form.
    pub fn to_record_json(&self) -> serde_json::Value {
        // A struct of strings, integers, booleans and vectors always serializes.
        serde_json::to_value(TemplateRecord::from(self)).unwrap_or(serde_json::Value::Null)
    }
}

fn int<T: TryFrom<i64>>(field: &'static str, value: i64) -> Result<T, LicenceError> {
    T::try_from(value).map_err(|_| LicenceError::Range { field, value })
}

fn positive(field: &'static str, value: i64) -> Result<u32, LicenceError> {
    if value < 1 {
        return Err(LicenceError::Range { field, value });
    }
    int(field, value)
}

fn money(m: &MoneyRecord) -> Result<Money, LicenceError> {
    Ok(Money {
        amount: int("amount", m.amount)?,
        currency: Currency::parse(&m.currency)?,
    })
}

fn money_record(m: &Money) -> MoneyRecord {
    MoneyRecord {
        amount: i64::try_from(m.amount).unwrap_or(i64::MAX),
        currency: m.currency.code().to_owned(),
    }
}

fn all<T: std::str::FromStr<Err = LicenceError>>(items: &[String]) -> Result<Vec<T>, LicenceError> {
    items.iter().map(|s| s.parse()).collect()
}

fn compensation(c: &CompensationRecord) -> Result<Compensation, LicenceError> {
    let kind = c
        .kind
        .strip_prefix(COMPENSATION)
        .ok_or_else(|| LicenceError::UnknownCompensation(c.kind.clone()))?;
    // The fields present, so that a field of another member is refused rather than dropped.
    let present = [
        ("fee", c.fee.is_some()),
        ("period", c.period.is_some()),
        ("feePerThousand", c.fee_per_thousand.is_some()),
        ("share", c.share.is_some()),
        ("base", c.base.is_some()),
        ("minimum", c.minimum.is_some()),
        ("reason", c.reason.is_some()),
    ];
    let allowed: &[&str] = match kind {
        "fixedFee" => &["fee", "period"],
        "perQuery" => &["feePerThousand"],
        "revenueShare" => &["share", "base", "minimum"],
        "noFee" => &["reason"],
        _ => return Err(LicenceError::UnknownCompensation(c.kind.clone())),
    };
    if let Some((field, _)) = present
        .iter()
        .find(|(field, here)| *here && !allowed.contains(field))
    {
        return Err(LicenceError::Shape(format!(
            "compensation #{kind} has {field}"
        )));
    }
    let missing = |field: &str| LicenceError::Shape(format!("compensation #{kind} lacks {field}"));
    Ok(match kind {
        "fixedFee" => Compensation::FixedFee {
            fee: money(c.fee.as_ref().ok_or_else(|| missing("fee"))?)?,
            period: c
                .period
                .as_deref()
                .ok_or_else(|| missing("period"))?
                .parse()?,
        },
        "perQuery" => Compensation::PerQuery {
            fee_per_thousand: money(
                c.fee_per_thousand
                    .as_ref()
                    .ok_or_else(|| missing("feePerThousand"))?,
            )?,
        },
        "revenueShare" => {
            let share = c.share.ok_or_else(|| missing("share"))?;
            Compensation::RevenueShare {
                share: BasisPoints::new(int("share", share)?)?,
                base: c.base.as_deref().ok_or_else(|| missing("base"))?.parse()?,
                minimum: c.minimum.as_ref().map(money).transpose()?,
            }
        }
        _ => Compensation::NoFee {
            reason: c.reason.clone(),
        },
    })
}

fn compensation_record(c: &Compensation) -> CompensationRecord {
    let mut r = CompensationRecord {
        kind: String::new(),
        fee: None,
        period: None,
        fee_per_thousand: None,
        share: None,
        base: None,
        minimum: None,
        reason: None,
    };
    let kind = match c {
        Compensation::FixedFee { fee, period } => {
            r.fee = Some(money_record(fee));
            r.period = Some(period.as_str().to_owned());
            "fixedFee"
        }
        Compensation::PerQuery { fee_per_thousand } => {
            r.fee_per_thousand = Some(money_record(fee_per_thousand));
            "perQuery"
        }
        Compensation::RevenueShare {
            share,
            base,
            minimum,
        } => {
            r.share = Some(i64::from(share.get()));
            r.base = Some(base.as_str().to_owned());
            r.minimum = minimum.as_ref().map(money_record);
            "revenueShare"
        }
        Compensation::NoFee { reason } => {
            r.reason = reason.clone();
            "noFee"
        }
    };
    r.kind = format!("{COMPENSATION}{kind}");
    r
}

impl TryFrom<&TemplateRecord> for Contract {
    type Error = LicenceError;

    fn try_from(r: &TemplateRecord) -> Result<Contract, LicenceError> {
        let territory = match &r.territories {
            None => Territory::Worldwide,
            Some(codes) if codes.is_empty() => {
                return Err(LicenceError::Shape("territories: empty".into()));
            }
            Some(codes) => Territory::Only(
                codes
                    .iter()
                    .map(|c| Country::parse(c))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let contract = Contract {
            id: TemplateId::parse(&r.id)?,
            title: r.title.clone(),
            version: positive("version", r.version)?,
            uses: all(&r.uses)?,
            user_classes: all(&r.user_classes)?,
            territory,
            flow_down: FlowDown {
                synthetic_data: r.flow_down.synthetic_data,
                downstream_models: r.flow_down.downstream_models,
            },
            attribution: Attribution {
                required: r.attribution.required,
                form: r.attribution.form.as_deref().map(str::parse).transpose()?,
                text: r.attribution.text.clone(),
            },
            compensation: compensation(&r.compensation)?,
            term_days: r.term_days.map(|d| positive("termDays", d)).transpose()?,
            notice_days: int("noticeDays", r.notice_days)?,
            on_termination: r.on_termination.parse()?,
            reporting: Reporting {
                required: r.reporting.required,
                interval_days: r
                    .reporting
                    .interval_days
                    .map(|d| positive("reporting.intervalDays", d))
                    .transpose()?,
                contents: r.reporting.contents.as_deref().map(all).transpose()?,
            },
            canary: r.canary,
            collections: r
                .collections
                .as_ref()
                .map(|list| {
                    list.iter()
                        .map(|n| {
                            Nsid::parse(n)
                                .map_err(|e| LicenceError::Shape(format!("collections: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
        };
        contract.validate()?;
        Ok(contract)
    }
}

impl From<&Contract> for TemplateRecord {
    fn from(c: &Contract) -> TemplateRecord {
        let strings = |items: &mut dyn Iterator<Item = &'static str>| {
            items.map(str::to_owned).collect::<Vec<_>>()
        };
        TemplateRecord {
            id: c.id.as_str().to_owned(),
            title: c.title.clone(),
            version: i64::from(c.version),
            uses: strings(&mut c.uses.iter().map(|u| u.as_str())),
            user_classes: strings(&mut c.user_classes.iter().map(|u| u.as_str())),
            territories: match &c.territory {
                Territory::Worldwide => None,
                Territory::Only(list) => Some(strings(&mut list.iter().map(Country::code))),
            },
            flow_down: FlowDownRecord {
                synthetic_data: c.flow_down.synthetic_data,
                downstream_models: c.flow_down.downstream_models,
            },
            attribution: AttributionRecord {
                required: c.attribution.required,
                form: c.attribution.form.map(|f| f.as_str().to_owned()),
                text: c.attribution.text.clone(),
            },
            compensation: compensation_record(&c.compensation),
            term_days: c.term_days.map(i64::from),
            notice_days: i64::from(c.notice_days),
            on_termination: c.on_termination.as_str().to_owned(),
            reporting: ReportingRecord {
                required: c.reporting.required,
                interval_days: c.reporting.interval_days.map(i64::from),
                contents: c
                    .reporting
                    .contents
                    .as_ref()
                    .map(|list| strings(&mut list.iter().map(|x| x.as_str()))),
            },
            canary: c.canary,
            collections: c
                .collections
                .as_ref()
                .map(|list| list.iter().map(|n| n.as_str().to_owned()).collect()),
        }
    }
}
