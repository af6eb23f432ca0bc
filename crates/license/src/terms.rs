//! The one typed contract structure ([`Contract`]) and its parts.
//!
//! Every field of `coop.guild.licence.template` has a typed home here; open lexicon sets
//! (uses, user classes, attribution forms, …) are closed enums in this version, and a value
//! this version does not know is refused by name ([`LicenceError::Unknown`]) rather than
//! guessed, because no emitter or plain-language text could render it faithfully.

use std::fmt;
use std::str::FromStr;

use guild_core::syntax::Nsid;

use crate::error::LicenceError;

/// Declares a closed enum of lexicon string values with their wire spelling.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in lexicon order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The lexicon spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = LicenceError;
            fn from_str(s: &str) -> Result<Self, LicenceError> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(LicenceError::Unknown {
                        field: $field,
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// A kind of use of the data (`coop.guild.defs#useKind`).
    UseKind, "uses" {
        /// Training (or fine-tuning) models on the records.
        Train => "train",
        /// Retrieving records at inference time and showing them or what is made from them.
        RetrieveAndDisplay => "retrieve-and-display",
        /// Indexing the records for search.
        Index => "index",
        /// Evaluating models on the records (never training on them).
        Evaluate => "evaluate",
    }
);

wire_enum!(
    /// A class of licensee (`coop.guild.defs#userClass`).
    UserClass, "userClasses" {
        /// A business.
        Commercial => "commercial",
        /// An academic or independent researcher.
        Research => "research",
        /// A non-profit organisation.
        NonProfit => "non-profit",
        /// A public body.
        PublicSector => "public-sector",
        /// A person, for their own use.
        Personal => "personal",
    }
);

wire_enum!(
    /// Where attribution must appear (`#attribution.form`).
    AttributionForm, "attribution.form" {
        /// In the card of the dataset made from the records.
        DatasetCard => "dataset-card",
        /// In the card of every model trained or evaluated on them.
        ModelCard => "model-card",
        /// Next to every output that uses them.
        PerOutput => "per-output",
    }
);

wire_enum!(
    /// How often a fixed fee is due (`#fixedFee.period`).
    FeePeriod, "compensation.period" {
        /// Once.
        Once => "once",
        /// Every month.
        Monthly => "monthly",
        /// Every year.
        Yearly => "yearly",
    }
);

wire_enum!(
    /// The revenue a share is of (`#revenueShare.base`).
    RevenueBase, "compensation.base" {
        /// Gross revenue.
        GrossRevenue => "gross-revenue",
        /// Net revenue.
        NetRevenue => "net-revenue",
    }
);

wire_enum!(
    /// What the licensee must do with delivered records when the licence ends or a member
    /// revokes consent (`onTermination`).
    OnTermination, "onTermination" {
        /// Delete the records, and stop using models made from them.
        DeleteRecords => "delete-records",
        /// Delete the records; models already trained on them may be kept and used.
        RetainTrainedModels => "retain-trained-models",
        /// Keep everything already delivered; nothing new is delivered.
        RetainAll => "retain-all",
    }
);

wire_enum!(
    /// What a report contains (`#reporting.contents`).
    ReportContent, "reporting.contents" {
        /// How much the records were used.
        UsageCounts => "usage-counts",
        /// The revenue a share is computed from.
        Revenue => "revenue",
        /// Models released that were trained or evaluated on the records.
        ModelReleases => "model-releases",
        /// Incidents (leaks, misuse) involving the records.
        Incidents => "incidents",
    }
);

/// An ISO 4217 currency, parsed from its three-letter code in capitals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// The euro.
    pub const EUR: Currency = Currency(iso_currency::Currency::EUR);

    /// Parses a code such as `EUR`; refuses anything that is not an ISO 4217 code in capitals.
    pub fn parse(code: &str) -> Result<Self, LicenceError> {
        let known = code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase());
        known
            .then(|| iso_currency::Currency::from_code(code))
            .flatten()
            .map(Currency)
            .ok_or_else(|| LicenceError::Currency(code.to_owned()))
    }

    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// The number of decimal places of its minor unit (2 for EUR, 0 for JPY; 0 for codes
    /// without a minor unit).
    pub fn exponent(self) -> u32 {
        self.0.exponent().map_or(0, u32::from)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount of money: integer minor units of a currency (never a float).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// Minor units (cents for EUR).
    pub amount: u64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// The amount as an exact decimal string in major units (`1999` EUR → `19.99`).
    pub fn decimal(&self) -> String {
        decimal(self.amount, self.currency.exponent())
    }

    /// The amount divided by `10^extra` as an exact decimal string (a price per thousand,
    /// `extra = 3`, becomes a price per unit).
    pub fn decimal_scaled(&self, extra: u32) -> String {
        decimal(self.amount, self.currency.exponent() + extra)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency)
    }
}

/// `units / 10^places` written exactly, with trailing zeros of the fraction kept to `places`.
fn decimal(units: u64, places: u32) -> String {
    let digits = units.to_string();
    let places = places as usize;
    if places == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (int, frac) = padded.split_at(padded.len() - places);
    format!("{int}.{frac}")
}

/// A fraction in basis points: 10000 is 100 %.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BasisPoints(u16);

impl BasisPoints {
    /// A share of at most 10000 basis points.
    pub fn new(bp: u32) -> Result<Self, LicenceError> {
        u16::try_from(bp)
            .ok()
            .filter(|bp| *bp <= 10_000)
            .map(BasisPoints)
            .ok_or(LicenceError::BasisPoints(bp))
    }

    /// A share of `bp` basis points, or 10000 if `bp` is larger (for constants).
    pub const fn clamped(bp: u16) -> Self {
        BasisPoints(if bp > 10_000 { 10_000 } else { bp })
    }

    /// The basis points.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }

    /// The share as an exact percentage string (`250` → `2.5`, `300` → `3`).
    pub fn percent(self) -> String {
        let whole = self.0 / 100;
        match self.0 % 100 {
            0 => whole.to_string(),
            r if r % 10 == 0 => format!("{whole}.{}", r / 10),
            r => format!("{whole}.{r:02}"),
        }
    }
}

/// A country, by its ISO 3166-1 alpha-2 code in capitals.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country {
    alpha2: &'static str,
    name: &'static str,
}

impl Country {
    /// Parses a code such as `DE`; refuses anything that is not an assigned ISO 3166-1
    /// alpha-2 code in capitals.
    pub fn parse(code: &str) -> Result<Self, LicenceError> {
        let well_formed = code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase());
        well_formed
            .then(|| celes::Country::from_alpha2(code).ok())
            .flatten()
            .map(|c| Country {
                alpha2: c.alpha2,
                name: c.long_name,
            })
            .ok_or_else(|| LicenceError::Country(code.to_owned()))
    }

    /// The two-letter code.
    pub fn code(&self) -> &'static str {
        self.alpha2
    }

    /// The country's English name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Where the licensee may use the data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Territory {
    /// Anywhere (the lexicon's `territories` absent).
    Worldwide,
    /// Only in these countries (in the order written, none twice, at least one).
    Only(Vec<Country>),
}

impl Territory {
    /// Whether use in `country` is allowed (`None`: the licensee's country is unknown, which
    /// only a worldwide licence allows).
    pub fn allows(&self, country: Option<&Country>) -> bool {
        match (self, country) {
            (Territory::Worldwide, _) => true,
            (Territory::Only(list), Some(c)) => list.contains(c),
            (Territory::Only(_), None) => false,
        }
    }
}

/// Whether the terms bind what is made from the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowDown {
    /// Synthetic data generated from the records is bound by the same terms.
    pub synthetic_data: bool,
    /// Models trained or fine-tuned from the licensee's models are bound.
    pub downstream_models: bool,
}

/// The attribution duty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attribution {
    /// Whether attribution is required.
    pub required: bool,
    /// Where it must appear.
    pub form: Option<AttributionForm>,
    /// The text to use, if fixed.
    pub text: Option<String>,
}

/// How the collective is paid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Compensation {
    /// A fixed fee per period.
    FixedFee {
        /// The fee per period.
        fee: Money,
        /// How often it is due.
        period: FeePeriod,
    },
    /// A fee per use, priced per thousand queries.
    PerQuery {
        /// The fee per thousand queries.
        fee_per_thousand: Money,
    },
    /// A share of the licensee's revenue from what uses the data.
    RevenueShare {
        /// The share.
        share: BasisPoints,
        /// The revenue it is of.
        base: RevenueBase,
        /// A minimum payment per reporting period.
        minimum: Option<Money>,
    },
    /// No payment.
    NoFee {
        /// Why.
        reason: Option<String>,
    },
}

impl Compensation {
    /// Whether money is owed.
    pub fn is_paid(&self) -> bool {
        !matches!(self, Compensation::NoFee { .. })
    }
}

/// The reporting duty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reporting {
    /// Whether reports are required.
    pub required: bool,
    /// How often, in days.
    pub interval_days: Option<u32>,
    /// What they contain (`None`: the lexicon field absent; `Some(empty)` is kept apart so
    /// the record form round-trips).
    pub contents: Option<Vec<ReportContent>>,
}

/// A licence template, or an agreement's terms (a template with its parameters fixed): the
/// one structure every emitted form and every decision is made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Contract {
    /// The template id (`coop.guild.defs#templateId`).
    pub id: TemplateId,
    /// Its title.
    pub title: String,
    /// Its version (≥ 1).
    pub version: u32,
    /// The uses granted (no duplicates, in the order written).
    pub uses: Vec<UseKind>,
    /// The classes of licensee allowed (no duplicates, in the order written).
    pub user_classes: Vec<UserClass>,
    /// Where the data may be used.
    pub territory: Territory,
    /// What flows down to derived data and models.
    pub flow_down: FlowDown,
    /// The attribution duty.
    pub attribution: Attribution,
    /// How the collective is paid.
    pub compensation: Compensation,
    /// How long the licence lasts, in days (`None`: until terminated).
    pub term_days: Option<u32>,
    /// The termination notice, in days.
    pub notice_days: u32,
    /// What happens to delivered records at termination or revocation.
    pub on_termination: OnTermination,
    /// The reporting duty.
    pub reporting: Reporting,
    /// Whether delivered bundles carry a canary (evaluation data: never trained on). `None`
    /// is the lexicon field absent, kept apart from `Some(false)` so the record round-trips.
    pub canary: Option<bool>,
    /// The scope: only records of these collections (`None`: every record the members'
    /// consent covers). Set by an agreement offer to narrow a template.
    pub collections: Option<Vec<Nsid>>,
}

impl Contract {
    /// Whether the contract grants `use`.
    pub fn grants(&self, use_kind: UseKind) -> bool {
        self.uses.contains(&use_kind)
    }

    /// Whether bundles under it carry a canary and must never be trained on.
    pub fn is_evaluation_only(&self) -> bool {
        self.canary == Some(true)
    }

    /// Checks the invariants the lexicon cannot state: at least one use and one user class,
    /// none twice; a canary (evaluation-only) contract never grants training; attribution
    /// details only when attribution is required; positive version, term and interval.
    pub fn validate(&self) -> Result<(), LicenceError> {
        fn no_dupes<T: PartialEq + fmt::Display>(
            field: &'static str,
            items: &[T],
        ) -> Result<(), LicenceError> {
            if items.is_empty() {
                return Err(LicenceError::Invalid(format!("{field}: empty")));
            }
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    return Err(LicenceError::Invalid(format!("{field}: {item} twice")));
                }
            }
            Ok(())
        }
        no_dupes("uses", &self.uses)?;
        no_dupes("userClasses", &self.user_classes)?;
        if self.version == 0 {
            return Err(LicenceError::Invalid("version: 0".into()));
        }
        if self.term_days == Some(0) {
            return Err(LicenceError::Invalid("termDays: 0".into()));
        }
        if self.reporting.interval_days == Some(0) {
            return Err(LicenceError::Invalid("reporting.intervalDays: 0".into()));
        }
        if self.is_evaluation_only() && self.grants(UseKind::Train) {
            return Err(LicenceError::Invalid(
                "a canary (evaluation-only) licence cannot grant training".into(),
            ));
        }
        if !self.attribution.required
            && (self.attribution.form.is_some() || self.attribution.text.is_some())
        {
            return Err(LicenceError::Invalid(
                "attribution form or text without attribution required".into(),
            ));
        }
        if let Territory::Only(list) = &self.territory {
            no_dupes(
                "territories",
                &list.iter().map(Country::code).collect::<Vec<_>>(),
            )?;
        }
        let amounts: Vec<&Money> = match &self.compensation {
            Compensation::FixedFee { fee, .. } => vec![fee],
            Compensation::PerQuery { fee_per_thousand } => vec![fee_per_thousand],
            Compensation::RevenueShare { minimum, .. } => minimum.iter().collect(),
            Compensation::NoFee { .. } => vec![],
        };
        if let Some(m) = amounts.iter().find(|m| i64::try_from(m.amount).is_err()) {
            return Err(LicenceError::Invalid(format!(
                "amount {} too large",
                m.amount
            )));
        }
        if self.title.trim().is_empty() {
            return Err(LicenceError::Invalid("title: empty".into()));
        }
        if let Some(list) = &self.collections {
            no_dupes("collections", list)?;
        }
        Ok(())
    }
}

/// A licence template id: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, starting with a
/// letter or digit (the standard ids and any a charter defines; narrower than the lexicon's
/// plain string, because the id names files and IRIs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(String);

impl TemplateId {
    /// Parses an id.
    pub fn parse(s: &str) -> Result<Self, LicenceError> {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        ok.then(|| TemplateId(s.to_owned()))
            .ok_or_else(|| LicenceError::TemplateId(s.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_parse_and_refuse() {
        assert_eq!(Currency::parse("EUR").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        for bad in ["eur", "EU", "EURO", "XBT", "ZZZ", "", "€"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        let eur = Currency::parse("EUR").unwrap();
        let m = |amount| Money {
            amount,
            currency: eur,
        };
        assert_eq!(m(1999).decimal(), "19.99");
        assert_eq!(m(5).decimal(), "0.05");
        assert_eq!(m(0).decimal(), "0.00");
        assert_eq!(m(100).decimal_scaled(3), "0.00100");
        let jpy = Currency::parse("JPY").unwrap();
        let yen = Money {
            amount: 1500,
            currency: jpy,
        };
        assert_eq!(yen.decimal(), "1500");
    }

    #[test]
    fn basis_points() {
        assert_eq!(BasisPoints::new(250).unwrap().percent(), "2.5");
        assert_eq!(BasisPoints::new(300).unwrap().percent(), "3");
        assert_eq!(BasisPoints::new(1).unwrap().percent(), "0.01");
        assert_eq!(BasisPoints::new(10_000).unwrap().percent(), "100");
        assert!(BasisPoints::new(10_001).is_err());
    }

    #[test]
    fn countries() {
        assert_eq!(Country::parse("DE").unwrap().code(), "DE");
        for bad in ["de", "XX", "DEU", "", "ZZ"] {
            assert!(Country::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn template_ids() {
        assert!(TemplateId::parse("research-open").is_ok());
        for bad in ["", "-x", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(TemplateId::parse(bad).is_err(), "{bad}");
        }
    }
}
