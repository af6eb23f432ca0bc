//! The preference signals: the IETF AI-preferences `Content-Usage` value
//! (draft-ietf-aipref-vocab, the labels it defines: `train-ai`, `search`), Cloudflare's
//! Content Signals (`search`, `ai-input`, `ai-train`, as a robots.txt group) and Creative
//! Commons' CC signals (the AI-preferences value with an `exceptions` parameter). All three
//! are RFC 9651 dictionaries, serialized with `sfv`.
//!
//! A `y`/`yes` says that the licence grants the use: these values belong on responses to the
//! licensee. What none of them can say (that the grant is conditional on an agreement, user
//! classes, payment, term…) is listed by [`super::unexpressed`].

use sfv::{DictSerializer, KeyRef, TokenRef};

use super::{Format, unexpressed};
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

fn yn(b: bool) -> &'static str {
    if b { "y" } else { "n" }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The `Content-Usage` field value (draft-ietf-aipref-attach), e.g. `train-ai=y, search=n`.
pub fn content_usage(c: &Contract) -> Result<String, LicenceError> {
    dict(
        "content-usage",
        &[
            ("train-ai", yn(c.grants(UseKind::Train)), None),
            ("search", yn(c.grants(UseKind::Index)), None),
        ],
    )
}

/// A robots.txt group carrying Cloudflare's `Content-Signal` line, preceded by comment lines
/// naming the licence and what the signals cannot say.
pub fn content_signal(c: &Contract) -> Result<String, LicenceError> {
    let value = dict(
        "content-signal",
        &[
            ("search", yes_no(c.grants(UseKind::Index)), None),
            (
                "ai-input",
                yes_no(c.grants(UseKind::RetrieveAndDisplay)),
                None,
            ),
            ("ai-train", yes_no(c.grants(UseKind::Train)), None),
        ],
    )?;
    let mut out = format!(
        "# Guild licence {} version {}: {}.\n# Not expressible as Content Signals:\n",
        c.id, c.version, c.title
    );
    for gap in unexpressed(Format::ContentSignal, c) {
        out.push_str(&format!("#   - {gap}\n"));
    }
    out.push_str(&format!("User-Agent: *\nContent-Signal: {value}\n"));
    Ok(out)
}

/// The CC signal that fits, if any: all of them require credit; Direct Contribution is the
/// nearest to a licence fee.
fn cc_signal(c: &Contract) -> Option<(&'static str, &'static str)> {
    match (c.attribution.required, c.compensation.is_paid()) {
        (false, _) => None,
        (true, false) => Some(("cc-cr", "CC Credit 0.1")),
        (true, true) => Some(("cc-cr-dc", "CC Credit Direct Contribution 0.1")),
    }
}

/// CC signals as JSON: the signal, its content usage expression (uses the licence grants are
/// refused except under the signal), and what it cannot express.
pub fn cc_signals(c: &Contract) -> Result<String, LicenceError> {
    // The signal, if a category it applies to is granted.
    let signal = cc_signal(c).filter(|_| c.grants(UseKind::Train) || c.grants(UseKind::Index));
    let member = |label, granted: bool| match (granted, signal) {
        (true, Some((token, _))) => (label, "n", Some(("exceptions", token))),
        _ => (label, "n", None),
    };
    let expression = dict(
        "cc-signals",
        &[
            member("train-ai", c.grants(UseKind::Train)),
            member("search", c.grants(UseKind::Index)),
        ],
    )?;
    let mut gaps = unexpressed(Format::CcSignals, c);
    if cc_signal(c).is_none() && (c.grants(UseKind::Train) || c.grants(UseKind::Index)) {
        gaps.push("a grant without credit (every CC signal requires credit)".into());
    }
    let doc = serde_json::json!({
        "licence": c.id.as_str(),
        "version": c.version,
        "signal": signal.map(|(token, _)| token),
        "signalName": signal.map(|(_, name)| name),
        "contentUsage": expression,
        "unexpressed": gaps,
    });
    super::pretty_json("cc-signals", &doc)
}
