//! The preference signals: the IETF AI-preferences `Content-Usage` value
//! (draft-ietf-aipref-vocab-07, the labels it defines: `train-ai`, `search`), Cloudflare's
//! Content Signals (`search`, `ai-input`, `ai-train`, as a robots.txt group) and Creative
//! Commons' CC signals (the AI-preferences value with an `exceptions` parameter). All three
//! are RFC 9651 dictionaries, serialized with `sfv`.
//!
//! A preference is stated about the content, to whoever obtains it, and travels with it:
//! aipref has no addressee (draft-ietf-aipref-attach-05 §4: the field is representation
//! metadata; vocab-07 §2.1: no assumption about who a preference is for), and when statements
//! disagree the most restrictive wins (vocab-07 §5.1). A Content Signals `yes` says "you may
//! collect content for this use" to every crawler, and a `no` is an Article 4 (EU 2019/790)
//! reservation. Every use a Guild licence grants is granted only by an agreement with the
//! collective, which is how aipref expects such grants to be made: "contractual agreements …
//! might override statements of preference" (vocab-07 §5.2). So `Content-Usage` and Content
//! Signals refuse every category, for every template, and the licence itself is in the
//! agreement (ODRL, RSL); a `y` would tell everyone, the licensee's downstream recipients
//! included, that the use is allowed without one. CC signals state the conditional
//! permission the format is made for ("n, except under this signal"). What none of them can
//! say is listed by [`super::unexpressed`].

use sfv::{DictSerializer, KeyRef, TokenRef};

use serde_json::json;

use super::{Format, Publication, unexpressed};
use crate::error::LicenceError;
use crate::terms::{Contract, UseKind};

fn sfv_err(format: &'static str) -> impl Fn(sfv::Error) -> LicenceError {
    move |e| LicenceError::Emit {
        format,
        message: e.to_string(),
    }
}

/// One dictionary member: key, token value, and an optional token parameter.
type Member<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

fn dict(format: &'static str, members: &[Member<'_>]) -> Result<String, LicenceError> {
    let err = sfv_err(format);
    let mut ser = DictSerializer::new();
    for (key, token, param) in members {
        let entry = ser.bare_item(
            KeyRef::from_str(key).map_err(&err)?,
            TokenRef::from_str(token).map_err(&err)?,
        );
        if let Some((name, value)) = param {
            entry.parameter(
                KeyRef::from_str(name).map_err(&err)?,
                TokenRef::from_str(value).map_err(&err)?,
            );
        }
    }
    ser.finish().ok_or_else(|| LicenceError::Emit {
        format,
        message: "empty dictionary".into(),
    })
}

/// The `Content-Usage` field value (draft-ietf-aipref-attach-05) a collective attaches to
/// works under any of its licences: `train-ai=n, search=n`. It does not depend on the
/// licence: every grant needs an agreement, which overrides the preference for the licensee
/// (see the module documentation).
pub fn content_usage() -> Result<String, LicenceError> {
    dict(
        "content-usage",
        &[("train-ai", "n", None), ("search", "n", None)],
    )
}

/// A robots.txt group carrying Cloudflare's `Content-Signal` line, which refuses every
/// category (an Article 4 reservation; the licence is granted only by agreement), preceded
/// by comment lines naming the licence, where its ODRL form is, and what the signals cannot
/// say.
pub fn content_signal(c: &Contract, p: &Publication) -> Result<String, LicenceError> {
    let value = dict(
        "content-signal",
        &[
            ("search", "no", None),
            ("ai-input", "no", None),
            ("ai-train", "no", None),
        ],
    )?;
    let mut out = format!(
        "# Guild licence {} version {}: {}.\n\
         # Its uses are granted only by an agreement with the collective: {}\n\
         # Not expressible as Content Signals:\n",
        c.id,
        c.version,
        c.title,
        p.odrl_url(c)
    );
    for gap in unexpressed(Format::ContentSignal, c) {
        out.push_str(&format!("#   - {gap}\n"));
    }
    out.push_str(&format!("User-Agent: *\nContent-Signal: {value}\n"));
    Ok(out)
}

/// The version of the CC signals proposal the tokens are from.
pub const CC_SIGNALS_VERSION: &str = "0.1";

/// The CC signal that fits, if any: all of them require credit; Direct Contribution is the
/// nearest to a licence fee.
fn cc_signal(c: &Contract) -> Option<&'static str> {
    match (c.attribution.required, c.compensation.is_paid()) {
        (false, _) => None,
        (true, false) => Some("cc-cr"),
        (true, true) => Some("cc-cr-dc"),
    }
}

/// CC signals as JSON (`docs/licence-formats.md`, "CC signals"): the template, the signal
/// and its content usage expression (the aipref categories the licence grants refused
/// except under the signal), or `signal: null` and why no signal fits; and what the form
/// cannot express.
pub fn cc_signals(c: &Contract) -> Result<String, LicenceError> {
    let categories = c.grants(UseKind::Train) || c.grants(UseKind::Index);
    let mut doc = serde_json::Map::new();
    doc.insert("template".into(), json!(c.id.as_str()));
    doc.insert("templateVersion".into(), json!(c.version));
    match cc_signal(c).filter(|_| categories) {
        Some(token) => {
            let member =
                |label, granted: bool| (label, "n", granted.then_some(("exceptions", token)));
            let expression = dict(
                "cc-signals",
                &[
                    member("train-ai", c.grants(UseKind::Train)),
                    member("search", c.grants(UseKind::Index)),
                ],
            )?;
            doc.insert("signal".into(), json!(token));
            doc.insert("signalVersion".into(), json!(CC_SIGNALS_VERSION));
            doc.insert("contentUsage".into(), json!(expression));
        }
        None => {
            let why = if !categories {
                let uses: Vec<&str> = c.uses.iter().map(|u| u.as_str()).collect();
                format!(
                    "none of the uses the licence grants ({}) is an aipref usage category, \
                     which a CC signal qualifies",
                    uses.join(", ")
                )
            } else {
                "every CC signal requires credit, and the licence requires no attribution"
                    .to_owned()
            };
            doc.insert("signal".into(), serde_json::Value::Null);
            doc.insert("unsupported".into(), json!(why));
        }
    }
    doc.insert(
        "unexpressed".into(),
        json!(unexpressed(Format::CcSignals, c)),
    );
    super::pretty_json("cc-signals", &serde_json::Value::Object(doc))
}
