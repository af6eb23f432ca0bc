//! Guild's agreement endpoints (`coop.guild.agreement.*`): a steward's offer to a builder, the
//! builder's accept (signed with the builder's own key and posted here: a builder has a key,
//! not a node), the stewards' countersignatures, and the public list of a collective's
//! agreements (contract transparency). The rules are `guild-gov`'s; the terms' plain-language
//! summary is `guild-license`'s.
//!
//! `getOffer`, `submitAccept` and `listAgreements` need no token (`validation::PUBLIC`):
//! `submitAccept` is authenticated by the op's signature, and `getOffer` asks for the token
//! when the charter keeps prices private (the offer document carries the price). They show
//! agreements only, nothing else of the collective.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cid::Cid;
use guild_core::syntax::{Datetime, Nsid};
use guild_gov::body::{Compensation, Money, OfferBody, OpBody, Template};
use guild_gov::{Agreement, AgreementStatus, OpKind, Reason, SignedOp, State as GovState};
use guild_license::Contract;
use guild_service::{CollectiveEngine, EngineError, NodeStore};

use crate::collective::{err, explain, from_now, net, now, ok, parse_cid, parse_did, which, write};
use crate::methods::agreement::{
    self as m, AtBytes, OFFER_DOCUMENT_VERSION, OfferDocument, countersign_agreement, get_offer,
    list_agreements, make_offer, submit_accept,
};
use crate::methods::collective::OpWritten;
use crate::server::{ApiState, XrpcError, check_auth};
use crate::validation::Xrpc;

type XrpcResult = Result<axum::response::Response, XrpcError>;

const DAY_MICROS: i64 = 86_400_000_000;

/// The terms as guild-license reads them (the lexicon shape, strictly).
fn contract(terms: &Template) -> Result<Contract, String> {
    let json = serde_json::to_value(terms).map_err(|e| e.to_string())?;
    Contract::from_record_json(&json).map_err(|e| e.to_string())
}

/// A charter template with the offer's parameters applied.
fn fix_terms(
    st: &GovState,
    input: &make_offer::Input,
    collections: &[Nsid],
) -> Result<Template, EngineError> {
    let charter = st
        .charter
        .as_ref()
        .ok_or_else(|| EngineError::Invalid("the collective's charter is not known yet".into()))?;
    let mut t = charter
        .templates
        .get(&input.template)
        .cloned()
        .ok_or_else(|| EngineError::Refused(Reason::UnknownTemplate(input.template.clone())))?;
    if let Some(price) = &input.price {
        guild_license::terms::Currency::parse(&price.currency)
            .map_err(|e| EngineError::Invalid(format!("price: {e}")))?;
        let money = Money {
            amount: price.amount,
            currency: price.currency.clone(),
        };
        match &mut t.compensation {
            Compensation::FixedFee { fee, .. } => *fee = money,
            Compensation::PerQuery { fee_per_thousand } => *fee_per_thousand = money,
            Compensation::RevenueShare { minimum, .. } => *minimum = Some(money),
            Compensation::NoFee { .. } | Compensation::Other(_) => {
                return Err(EngineError::Invalid(format!(
                    "template {} charges no fee of a kind a price can set",
                    t.id
                )));
            }
        }
    }
    if let Some(days) = input.term_days {
        t.term_days = Some(days);
    }
    if !collections.is_empty() {
        if let Some(n) = collections
            .iter()
            .find(|n| !charter.accepted_lexicons.contains(*n))
        {
            return Err(EngineError::Invalid(format!(
                "collections: the charter does not accept {n} records"
            )));
        }
        t.collections = Some(collections.to_vec());
    }
    contract(&t).map_err(|e| EngineError::Invalid(format!("the terms offered: {e}")))?;
    Ok(t)
}

/// The offer document of offer `offer` in `id`, from the op this node holds.
async fn document(
    c: &dyn CollectiveEngine,
    id: Cid,
    offer: Cid,
) -> Result<OfferDocument, XrpcError> {
    let not_found = || {
        err(
            StatusCode::BAD_REQUEST,
            "OfferNotFound",
            format!("this node holds no offer {offer}"),
        )
    };
    let bytes = c
        .op(id, offer)
        .await
        .map_err(explain)?
        .ok_or_else(not_found)?;
    let op = SignedOp::decode_trusted(&bytes).map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            e.to_string(),
        )
    })?;
    let OpBody::AgreementOffer(body) = op.body() else {
        return Err(not_found());
    };
    let summary = contract(&body.terms).map_or_else(
        |e| format!("(the terms cannot be summarised: {e})"),
        |c| guild_license::text::summary(&c),
    );
    Ok(OfferDocument {
        version: OFFER_DOCUMENT_VERSION,
        collective: id.to_string(),
        offer: offer.to_string(),
        op: AtBytes(bytes),
        summary,
        node: None,
    })
}

/// `coop.guild.agreement.makeOffer`.
pub(crate) async fn make_offer<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<make_offer::MakeOffer>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let builder = parse_did(&input.builder, "builder")?;
    let collections = input
        .collections
        .iter()
        .map(|n| Nsid::parse(n).map_err(|e| XrpcError::invalid(format!("collections: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let expires_at = input
        .expires_in_secs
        .map(|s| from_now(&state, s, 1_000_000));
    let note = input.note.clone();
    let op = c
        .write(
            id,
            OpKind::AgreementOffer,
            Box::new(move |st, _| {
                let terms = fix_terms(st, &input, &collections)?;
                Ok(OpBody::AgreementOffer(Box::new(OfferBody {
                    builder,
                    template: input.template.clone(),
                    terms,
                    expires_at,
                    note,
                })))
            }),
        )
        .await
        .map_err(explain)?;
    let offer = document(c, id, op).await?;
    ok(make_offer::Output {
        op: op.to_string(),
        collective: id.to_string(),
        offer,
    })
}

/// `coop.guild.agreement.getOffer` (no token, unless prices are private).
pub(crate) async fn get_offer<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    Xrpc(input): Xrpc<get_offer::GetOffer>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let offer = parse_cid(&input.offer, "offer")?;
    let status = c.status(id).await.map_err(explain)?;
    if prices_private(&status.state) {
        check_auth(&state, &headers)?;
    }
    if !status.state.agreements.contains_key(&offer) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "OfferNotFound",
            format!("this node holds no offer {offer}"),
        ));
    }
    ok(document(c, id, offer).await?)
}

/// `coop.guild.agreement.submitAccept` (no token: the op's signature authenticates it).
pub(crate) async fn submit_accept<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<submit_accept::SubmitAccept>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = parse_cid(&input.collective, "collective")?;
    // Refused before the engine is asked: anything not an accept (the engine checks the rest).
    let op = SignedOp::decode(&input.op.0)
        .map_err(|e| explain(EngineError::Refused(Reason::Invalid(e))))?;
    if op.kind() != OpKind::AgreementAccept {
        return Err(explain(EngineError::Refused(Reason::NotSubmittable(
            op.kind().nsid().to_owned(),
        ))));
    }
    let accepted = c.submit(id, input.op.0).await.map_err(explain)?;
    ok(OpWritten {
        op: accepted.to_string(),
        collective: id.to_string(),
    })
}

/// `coop.guild.feed.submitReceipt` (no token: the op's signature authenticates it).
pub(crate) async fn submit_receipt<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<crate::methods::feed::submit_receipt::SubmitReceipt>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = parse_cid(&input.collective, "collective")?;
    let op = SignedOp::decode(&input.op.0)
        .map_err(|e| explain(EngineError::Refused(Reason::Invalid(e))))?;
    if op.kind() != OpKind::BundleReceipt {
        return Err(explain(EngineError::Refused(Reason::NotSubmittable(
            op.kind().nsid().to_owned(),
        ))));
    }
    let taken = c.submit(id, input.op.0).await.map_err(explain)?;
    ok(OpWritten {
        op: taken.to_string(),
        collective: id.to_string(),
    })
}

/// `coop.guild.agreement.countersignAgreement`.
pub(crate) async fn countersign_agreement<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<countersign_agreement::CountersignAgreement>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let offer = parse_cid(&input.offer, "offer")?;
    write(
        c,
        id,
        OpKind::AgreementCountersign,
        Box::new(move |st, _| {
            let a = st
                .agreements
                .get(&offer)
                .ok_or(EngineError::Refused(Reason::UnknownRef("offer")))?;
            match a.status {
                AgreementStatus::Accepted(accept) => Ok(OpBody::AgreementCountersign(Box::new(
                    guild_gov::body::CountersignBody {
                        offer: offer.into(),
                        accept: accept.into(),
                    },
                ))),
                AgreementStatus::Offered => {
                    Err(EngineError::Refused(Reason::AgreementState("not accepted")))
                }
                AgreementStatus::InForce(_) => {
                    Err(EngineError::Refused(Reason::AgreementState("in force")))
                }
            }
        }),
    )
    .await
}

/// Whether the charter keeps prices private.
fn prices_private(st: &GovState) -> bool {
    st.charter
        .as_ref()
        .and_then(|c| c.body.private_prices)
        .unwrap_or(false)
}

/// The `createdAt` of op `op`, if held.
async fn created_at(
    c: &dyn CollectiveEngine,
    id: Cid,
    op: Cid,
) -> Result<Option<Datetime>, XrpcError> {
    let bytes = c.op(id, op).await.map_err(explain)?;
    Ok(bytes
        .and_then(|b| SignedOp::decode_trusted(&b).ok())
        .map(|o| o.created_at().clone()))
}

fn price(c: &Compensation) -> list_agreements::Price {
    let money = |m: &Money| m::Money {
        amount: m.amount,
        currency: m.currency.clone(),
    };
    let mut p = list_agreements::Price {
        kind: String::new(),
        amount: None,
        period: None,
        share: None,
        base: None,
    };
    match c {
        Compensation::FixedFee { fee, period } => {
            p.kind = "fixed-fee".into();
            p.amount = Some(money(fee));
            p.period = Some(period.clone());
        }
        Compensation::PerQuery { fee_per_thousand } => {
            p.kind = "per-query".into();
            p.amount = Some(money(fee_per_thousand));
        }
        Compensation::RevenueShare {
            share,
            base,
            minimum,
        } => {
            p.kind = "revenue-share".into();
            p.share = Some(i64::from(*share));
            p.base = Some(base.clone());
            p.amount = minimum.as_ref().map(money);
        }
        Compensation::NoFee { .. } => p.kind = "no-fee".into(),
        Compensation::Other(_) => p.kind = "other".into(),
    }
    p
}

/// One agreement as the public list shows it.
async fn entry(
    c: &dyn CollectiveEngine,
    id: Cid,
    offer: Cid,
    a: &Agreement,
    private: bool,
    now_micros: i64,
) -> Result<list_agreements::Agreement, XrpcError> {
    let offered_at = created_at(c, id, offer).await?;
    let in_force_since = match a.status {
        AgreementStatus::InForce(op) => created_at(c, id, op).await?,
        _ => None,
    };
    let days = a.terms.term_days;
    let end = match (&in_force_since, days) {
        (Some(start), Some(d)) => Some(Datetime::from_unix_micros(
            start
                .to_unix_micros()
                .saturating_add(d.saturating_mul(DAY_MICROS)),
        )),
        _ => None,
    };
    let past = |t: Option<&Datetime>| t.is_some_and(|t| now_micros >= t.to_unix_micros());
    let status = match a.status {
        AgreementStatus::Offered if past(a.expires_at.as_ref()) => "expired",
        AgreementStatus::Offered => "offered",
        AgreementStatus::Accepted(_) => "accepted",
        AgreementStatus::InForce(_) if past(end.as_ref()) => "expired",
        AgreementStatus::InForce(_) => "in-force",
    };
    let summary = contract(&a.terms).map_or_else(
        |e| format!("(the terms cannot be summarised: {e})"),
        |t| {
            if private {
                guild_license::text::summary_without_price(&t)
            } else {
                guild_license::text::summary(&t)
            }
        },
    );
    Ok(list_agreements::Agreement {
        offer: offer.to_string(),
        template: a.template.clone(),
        template_version: a.terms.version,
        builder: a.builder.to_string(),
        status: status.into(),
        offered_at: offered_at.map_or_else(String::new, |d| d.as_str().to_owned()),
        expires_at: a.expires_at.as_ref().map(|d| d.as_str().to_owned()),
        in_force_since: in_force_since.as_ref().map(|d| d.as_str().to_owned()),
        term: list_agreements::Term {
            days,
            start: in_force_since.as_ref().map(|d| d.as_str().to_owned()),
            end: end.map(|d| d.as_str().to_owned()),
        },
        price: (!private).then(|| price(&a.terms.compensation)),
        collections: a
            .terms
            .collections
            .as_ref()
            .map(|l| l.iter().map(|n| n.as_str().to_owned()).collect()),
        countersigned_by: a.countersigned.iter().map(ToString::to_string).collect(),
        summary,
    })
}

/// `coop.guild.agreement.listAgreements` (no token: contract transparency).
pub(crate) async fn list_agreements<S: NodeStore>(
    State(state): State<Arc<ApiState<S>>>,
    Xrpc(input): Xrpc<list_agreements::ListAgreements>,
) -> XrpcResult {
    let c = net(&state)?;
    let id = which(c, input.collective.as_deref()).await?;
    let status = c.status(id).await.map_err(explain)?;
    let private = prices_private(&status.state);
    let now_micros = now(&state).to_unix_micros();
    let mut agreements = Vec::new();
    for (offer, a) in &status.state.agreements {
        agreements.push(entry(c, id, *offer, a, private, now_micros).await?);
    }
    agreements.sort_by(|x, y| (&x.offered_at, &x.offer).cmp(&(&y.offered_at, &y.offer)));
    ok(list_agreements::Output {
        collective: id.to_string(),
        prices_private: private,
        agreements,
    })
}

/// The agreement methods' routes.
pub(crate) fn routes<S: NodeStore>() -> Vec<crate::server::Route<S>> {
    use axum::routing::{get, post};

    use crate::methods::Method;
    fn typed<M: Method, S>(
        r: axum::routing::MethodRouter<Arc<ApiState<S>>>,
    ) -> crate::server::Route<S> {
        (M::NSID.to_owned(), M::KIND, r)
    }
    vec![
        typed::<make_offer::MakeOffer, S>(post(make_offer::<S>)),
        typed::<get_offer::GetOffer, S>(get(get_offer::<S>)),
        typed::<submit_accept::SubmitAccept, S>(post(submit_accept::<S>)),
        typed::<countersign_agreement::CountersignAgreement, S>(post(countersign_agreement::<S>)),
        typed::<list_agreements::ListAgreements, S>(get(list_agreements::<S>)),
    ]
}
