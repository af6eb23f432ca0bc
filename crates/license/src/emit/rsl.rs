//! RSL 1.0 XML (Really Simple Licensing, rslstandard.org/rsl): one `<content>` for the
//! works' location with one `<license>`; the terms RSL has no element for are stated in an
//! XML comment, and `<custom>` and `<terms>` link to the ODRL form and the full terms.

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::{Format, Publication, unexpressed};
use crate::error::LicenceError;
use crate::terms::{Compensation, Contract, FeePeriod, Territory, UseKind, UserClass};

/// The RSL 1.0 namespace (the document's default namespace).
pub const RSL_NAMESPACE: &str = "https://rslstandard.org/rsl";

/// RSL's `usage` tokens for Guild's uses (evaluation has none).
fn usage_token(u: UseKind) -> Option<&'static str> {
    match u {
        UseKind::Train => Some("ai-train"),
        UseKind::RetrieveAndDisplay => Some("ai-input"),
        UseKind::Index => Some("ai-index"),
        UseKind::Evaluate => None,
    }
}

/// RSL's `user` tokens (research maps to the narrower `education`, so that nothing more is
/// granted than the licence grants).
fn user_token(u: UserClass) -> &'static str {
    match u {
        UserClass::Commercial => "commercial",
        UserClass::Research => "education",
        UserClass::NonProfit => "non-commercial",
        UserClass::PublicSector => "government",
        UserClass::Personal => "personal",
    }
}

fn unique(tokens: impl Iterator<Item = &'static str>) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in tokens {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// An XML comment's text: `--` may not occur in it.
fn comment(text: &str) -> String {
    let mut s = format!(" {} ", text.replace("--", "- -"));
    while s.contains("--") {
        s = s.replace("--", "- -");
    }
    s
}

fn write(c: &Contract, p: &Publication) -> io::Result<Vec<u8>> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let granted: Vec<&str> = unique(c.uses.iter().filter_map(|u| usage_token(*u)));
    let refused: Vec<&str> = ["ai-train", "ai-input", "ai-index", "search"]
        .into_iter()
        .filter(|t| !granted.contains(t))
        .collect();
    let users = unique(c.user_classes.iter().map(|u| user_token(*u)));
    let gaps = unexpressed(Format::Rsl, c);
    let note = format!(
        "Guild licence {} version {}: {}. Not expressible in RSL 1.0, see the ODRL policy \
         and the terms linked below: {}.",
        c.id,
        c.version,
        c.title,
        gaps.join("; ")
    );
    w.create_element("rsl")
        .with_attribute(("xmlns", RSL_NAMESPACE))
        .write_inner_content(|w| {
            w.write_event(Event::Comment(BytesText::from_escaped(comment(&note))))?;
            w.create_element("content")
                .with_attribute(("url", p.location.as_str()))
                .write_inner_content(|w| {
                    w.create_element("license").write_inner_content(|w| {
                        if !granted.is_empty() {
                            w.create_element("permits")
                                .with_attribute(("type", "usage"))
                                .write_text_content(BytesText::new(&granted.join(" ")))?;
                        }
                        w.create_element("permits")
                            .with_attribute(("type", "user"))
                            .write_text_content(BytesText::new(&users.join(" ")))?;
                        if let Territory::Only(list) = &c.territory {
                            let codes: Vec<&str> = list.iter().map(|c| c.code()).collect();
                            w.create_element("permits")
                                .with_attribute(("type", "geo"))
                                .write_text_content(BytesText::new(&codes.join(" ")))?;
                        }
                        if !refused.is_empty() {
                            w.create_element("prohibits")
                                .with_attribute(("type", "usage"))
                                .write_text_content(BytesText::new(&refused.join(" ")))?;
                        }
                        let (kind, amount) = match &c.compensation {
                            Compensation::FixedFee { fee, period } => (
                                match period {
                                    FeePeriod::Once => "purchase",
                                    FeePeriod::Monthly | FeePeriod::Yearly => "subscription",
                                },
                                Some((fee.decimal(), fee.currency.code())),
                            ),
                            Compensation::PerQuery { fee_per_thousand } => (
                                "use",
                                Some((
                                    fee_per_thousand.decimal_scaled(3),
                                    fee_per_thousand.currency.code(),
                                )),
                            ),
                            Compensation::RevenueShare { .. } => (
                                if c.grants(UseKind::Train) {
                                    "training"
                                } else {
                                    "use"
                                },
                                None,
                            ),
                            Compensation::NoFee { .. } if c.attribution.required => {
                                ("attribution", None)
                            }
                            Compensation::NoFee { .. } => ("free", None),
                        };
                        w.create_element("payment")
                            .with_attribute(("type", kind))
                            .write_inner_content(|w| {
                                w.create_element("custom")
                                    .write_text_content(BytesText::new(&p.odrl_url(c)))?;
                                if let Some((value, currency)) = &amount {
                                    w.create_element("amount")
                                        .with_attribute(("currency", *currency))
                                        .write_text_content(BytesText::new(value))?;
                                }
                                Ok(())
                            })?;
                        Ok(())
                    })?;
                    w.create_element("terms")
                        .write_text_content(BytesText::new(&p.terms_url(c)))?;
                    Ok(())
                })?;
            Ok(())
        })?;
    let mut out = w.into_inner();
    out.push(b'\n');
    Ok(out)
}

/// The RSL form.
pub fn rsl(c: &Contract, p: &Publication) -> Result<String, LicenceError> {
    let err = |message: String| LicenceError::Emit {
        format: "rsl",
        message,
    };
    let bytes = write(c, p).map_err(|e| err(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| err(e.to_string()))
}
