//! `guild agreement`: licence agreements with model builders. Stewards offer, list, show and
//! countersign through their running node; a builder accepts with only a key
//! ([`accept_op`] builds and signs the accept, [`submit_accept`] posts it to a steward's node
//! without a token).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use guild_api::Client;
use guild_api::methods::agreement::{
    AtBytes, Money, OfferDocument, countersign_agreement, get_offer, list_agreements, make_offer,
    submit_accept,
};
use guild_api::methods::collective::OpWritten;
use guild_core::syntax::{Datetime, parse_cid_str};
use guild_core::{Cid, Keypair};
use guild_gov::body::{AcceptBody, Evaluation, LabelledText, OfferBody, OpBody};
use guild_gov::{Op, OpKind, SignedOp};

use crate::client_cmd::{connect, explain};
use crate::collective_cmd::parse_duration;
use crate::files::read_key_file;

/// `guild agreement …`
#[derive(Debug, Subcommand)]
pub enum AgreementCmd {
    /// Offer a licence to a builder (stewards only). Prints the offer's id.
    Offer {
        /// The builder's DID.
        #[arg(long, value_name = "DID")]
        builder: String,
        /// The charter template's id.
        #[arg(long, value_name = "ID")]
        template: String,
        /// The price in minor units (cents): a fixed fee, a fee per thousand queries, or a
        /// revenue share's minimum. Needs --currency.
        #[arg(long, requires = "currency")]
        price: Option<i64>,
        /// The price's ISO 4217 currency.
        #[arg(long, requires = "price")]
        currency: Option<String>,
        /// The term in days (default: the template's).
        #[arg(long)]
        term_days: Option<i64>,
        /// Only records of these collections (comma-separated NSIDs).
        #[arg(long, value_delimiter = ',', value_name = "NSID,…")]
        collections: Vec<String>,
        /// When the offer lapses: seconds, or a number with s, m, h or d.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// A note to the builder.
        #[arg(long)]
        note: Option<String>,
        /// Write the offer document (for the builder) to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
    /// A collective's agreements (public: with --node, no token is needed).
    List {
        /// The collective (default: the only one the node holds).
        #[arg(long)]
        collective: Option<String>,
        /// Ask this node (its URL) instead of your own.
        #[arg(long, value_name = "URL")]
        node: Option<String>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// An agreement's terms, summary, status and signatures.
    Show {
        /// An offer document file, or an offer's id.
        offer: String,
        /// Ask this node (its URL) instead of your own.
        #[arg(long, value_name = "URL")]
        node: Option<String>,
        /// The collective (default: the only one the node holds).
        #[arg(long)]
        collective: Option<String>,
    },
    /// Accept an offer as the builder, with only your key: checks the offer's signature,
    /// prints its summary, signs the accept and posts it to the collective's node. Prints the
    /// accept's id.
    Accept {
        /// Your key file (`guild key generate --out FILE`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// An offer document file, or an offer's id (then fetched from --node).
        offer: String,
        /// The node to fetch the offer from and post the accept to (default: the offer
        /// document's).
        #[arg(long, value_name = "URL")]
        node: Option<String>,
        /// How the collective can reach you (an email address or URL).
        #[arg(long)]
        contact: Option<String>,
        #[command(flatten)]
        evaluation: EvaluationArgs,
    },
    /// Countersign an accepted offer (stewards only); at the charter's quorum it is in force.
    Countersign {
        /// The offer's id.
        offer: String,
        /// The collective (default: the only one this node holds).
        #[arg(long)]
        collective: Option<String>,
    },
}

/// Runs a `guild agreement` command.
pub fn run(data_dir: &Path, cmd: AgreementCmd) -> Result<ExitCode> {
    match cmd {
        AgreementCmd::Offer {
            builder,
            template,
            price,
            currency,
            term_days,
            collections,
            expires_in,
            note,
            out,
            collective,
        } => {
            let (client, _) = connect(data_dir)?;
            let input = make_offer::Input {
                collective,
                builder,
                template,
                price: price.zip(currency).map(|(amount, currency)| Money {
                    amount,
                    currency: currency.to_ascii_uppercase(),
                }),
                term_days,
                collections,
                expires_in_secs: expires_in.as_deref().map(parse_duration).transpose()?,
                note,
            };
            let made = client
                .call::<make_offer::MakeOffer>(&input)
                .map_err(explain)?;
            let mut doc = made.offer;
            doc.node.get_or_insert_with(|| client.base().to_owned());
            if let Some(path) = out {
                write_document(&path, &doc)?;
                eprintln!("offer document written to {}", path.display());
            }
            println!("{}", made.op);
            eprintln!("{}", doc.summary);
        }
        AgreementCmd::List {
            collective,
            node,
            json,
        } => {
            let client = public_or_own(data_dir, node)?;
            let out = client
                .call::<list_agreements::ListAgreements>(&list_agreements::Params { collective })
                .map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                print_list(&out);
            }
        }
        AgreementCmd::Show {
            offer,
            node,
            collective,
        } => {
            let client = public_or_own(data_dir, node)?;
            let doc = load_offer(&client, &offer, collective.clone())?;
            let (op, body) = verify_offer(&doc)?;
            let list = client
                .call::<list_agreements::ListAgreements>(&list_agreements::Params {
                    collective: Some(doc.collective.clone()),
                })
                .map_err(explain)?;
            let entry = list.agreements.iter().find(|a| a.offer == doc.offer);
            println!("agreement  {}", doc.offer);
            println!("collective {}", doc.collective);
            println!("builder    {}", body.builder);
            println!("offered by {} at {}", op.author(), op.created_at());
            if let Some(e) = entry {
                println!("status     {}", e.status);
                if let Some(since) = &e.in_force_since {
                    println!("in force   since {since}");
                }
                println!(
                    "countersigned by {}",
                    if e.countersigned_by.is_empty() {
                        "nobody yet".to_owned()
                    } else {
                        e.countersigned_by.join(", ")
                    }
                );
            }
            if let Some(note) = &body.note {
                println!("note       {note}");
            }
            println!("\n{}\n", doc.summary);
            match terms_text(&body) {
                Ok(t) => println!("{t}"),
                Err(e) => println!("(the full terms cannot be read: {e})"),
            }
        }
        AgreementCmd::Accept {
            key,
            offer,
            node,
            contact,
            evaluation,
        } => {
            let evaluation = evaluation.read()?;
            let key = read_key_file(&key)?;
            let fetch_from = node.clone().unwrap_or_default();
            let doc = if Path::new(&offer).is_file() {
                read_document(Path::new(&offer))?
            } else {
                if node.is_none() {
                    bail!("{offer} is not a file: to fetch the offer by its id, give --node URL");
                }
                let client = Client::new(fetch_from, None)?;
                load_offer(&client, &offer, None)?
            };
            let (_, body) = verify_offer(&doc)?;
            eprintln!("{}\n", doc.summary);
            if let Some(note) = &body.note {
                eprintln!("note from the collective: {note}\n");
            }
            let url = node
                .or_else(|| doc.node.clone())
                .context("the offer document names no node: give --node URL")?;
            let bytes = accept_op(&key, &doc, contact, evaluation, &now())?;
            let out = submit_accept(&url, &doc.collective, bytes)?;
            println!("{}", out.op);
            eprintln!("accepted; the collective's stewards countersign next");
        }
        AgreementCmd::Countersign { offer, collective } => {
            let (client, _) = connect(data_dir)?;
            let out = client
                .call::<countersign_agreement::CountersignAgreement>(
                    &countersign_agreement::Input { collective, offer },
                )
                .map_err(explain)?;
            println!("{}", out.op);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A client for `node` without a token, or for the local node with its token.
fn public_or_own(data_dir: &Path, node: Option<String>) -> Result<Client> {
    match node {
        Some(url) => Ok(Client::new(url, None)?),
        None => Ok(connect(data_dir)?.0),
    }
}

/// Now, by this machine's clock.
fn now() -> Datetime {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Datetime::from_unix_micros(micros)
}

/// An offer document from a file, or fetched by the offer's id.
fn load_offer(client: &Client, offer: &str, collective: Option<String>) -> Result<OfferDocument> {
    if Path::new(offer).is_file() {
        return read_document(Path::new(offer));
    }
    parse_cid_str(offer).with_context(|| format!("{offer:?} is neither a file nor an offer id"))?;
    client
        .call::<get_offer::GetOffer>(&get_offer::Params {
            collective,
            offer: offer.to_owned(),
        })
        .map_err(explain)
}

/// Reads an offer document file.
pub fn read_document(path: &Path) -> Result<OfferDocument> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the offer document {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not an offer document", path.display()))
}

fn write_document(path: &Path, doc: &OfferDocument) -> Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Checks an offer document: the op decodes strictly (its lexicon and its author's
/// signature), is an offer, and is the document's offer in the document's collective.
pub fn verify_offer(doc: &OfferDocument) -> Result<(SignedOp, OfferBody)> {
    if doc.version != 1 {
        bail!(
            "offer document version {} is not one this guild reads",
            doc.version
        );
    }
    let op = SignedOp::decode(&doc.op.0).context("the offer op does not verify")?;
    let OpBody::AgreementOffer(body) = op.body().clone() else {
        bail!(
            "the document's op is a {} op, not an offer",
            op.kind().nsid()
        );
    };
    if op.id().to_string() != doc.offer {
        bail!(
            "the document's offer id {} is not its op's ({})",
            doc.offer,
            op.id()
        );
    }
    if op.collective().map(ToString::to_string).as_deref() != Some(doc.collective.as_str()) {
        bail!("the offer op belongs to another collective than the document says");
    }
    Ok((op, *body))
}

/// The builder's accept of the offer in `doc`, signed with `key` at `at` (or at the offer's
/// date if `at` is earlier, as an op may not predate its parent): checks the offer (see
/// [`verify_offer`]), that it is made to `key`'s DID and has not lapsed by `at`. Returns the
/// signed op's bytes.
pub fn accept_op(
    key: &Keypair,
    doc: &OfferDocument,
    contact: Option<String>,
    evaluation: Option<Evaluation>,
    at: &Datetime,
) -> Result<Vec<u8>> {
    let (offer, body) = verify_offer(doc)?;
    if body.builder.as_str() != key.did() {
        bail!(
            "the offer is made to {}, not to this key's {}",
            body.builder,
            key.did()
        );
    }
    if let Some(expiry) = &body.expires_at
        && at.to_unix_micros() >= expiry.to_unix_micros()
    {
        bail!("the offer expired at {expiry}");
    }
    let collective: Cid = *offer
        .collective()
        .context("the offer op names no collective")?;
    let at =
        Datetime::from_unix_micros(at.to_unix_micros().max(offer.created_at().to_unix_micros()));
    let accept = OpBody::AgreementAccept(Box::new(AcceptBody {
        offer: (*offer.id()).into(),
        contact,
        evaluation,
    }));
    let op = Op::write(&accept, Some(&collective), key, &[*offer.id()], &at)
        .context("cannot sign the accept")?;
    debug_assert_eq!(op.kind(), OpKind::AgreementAccept);
    Ok(op.bytes().to_vec())
}

/// Posts a signed accept to the node at `url` (no token).
pub fn submit_accept(url: &str, collective: &str, op: Vec<u8>) -> Result<OpWritten> {
    let client = Client::new(url, None)?;
    client
        .call::<submit_accept::SubmitAccept>(&submit_accept::Input {
            collective: collective.to_owned(),
            op: AtBytes(op),
        })
        .map_err(explain)
}

/// The full terms, as text.
fn terms_text(body: &OfferBody) -> Result<String> {
    let json = serde_json::to_value(&body.terms)?;
    let contract = guild_license::Contract::from_record_json(&json)?;
    Ok(guild_license::text::terms(&contract))
}

fn print_list(out: &list_agreements::Output) {
    if out.agreements.is_empty() {
        println!("no agreements yet");
        return;
    }
    println!(
        "{:<12} {:<34} {:<10} {:<20} {:<28} SIGNED",
        "OFFER", "TEMPLATE", "STATUS", "PRICE", "BUILDER"
    );
    for a in &out.agreements {
        let price = match &a.price {
            None => "private".to_owned(),
            Some(p) => match &p.amount {
                Some(m) => format!("{} {} {}", p.kind, m.amount, m.currency),
                None => p.kind.clone(),
            },
        };
        let short = |s: &str| s.get(s.len().saturating_sub(10)..).unwrap_or(s).to_owned();
        println!(
            "…{:<11} {:<34} {:<10} {:<20} …{:<27} {}",
            short(&a.offer),
            format!("{} v{}", a.template, a.template_version),
            a.status,
            price,
            short(&a.builder),
            a.countersigned_by.len()
        );
    }
}

/// The builder's evaluation set, given with the accept (`guild agreement accept --eval …`).
#[derive(Debug, clap::Args)]
pub struct EvaluationArgs {
    /// Your labelled evaluation set (your target task), a JSONL file of
    /// `{"label": string|integer, "text": string}` lines: the stewards estimate each member's
    /// contribution to every bundle by it (exact group KNN-Shapley). It travels in the signed
    /// accept, so the collective's members can read it; at most 1000 lines, and the accept
    /// must stay under the 64 KiB op limit.
    #[arg(long = "eval", value_name = "FILE.jsonl")]
    eval: Option<PathBuf>,
    /// Open data you already have in this domain (the commons), same shape: contributions
    /// are also estimated over it.
    #[arg(long = "eval-baseline", value_name = "FILE.jsonl", requires = "eval")]
    eval_baseline: Option<PathBuf>,
    /// K of the KNN classifier.
    #[arg(long = "eval-k", default_value_t = 5, requires = "eval")]
    eval_k: u64,
    /// The distance between featurized texts.
    #[arg(long = "eval-metric", default_value = "cosine", value_parser = ["cosine", "l2"], requires = "eval")]
    eval_metric: String,
    /// The record field a record's label is read from (a string, or an array of strings
    /// whose first element among the evaluation labels is taken).
    #[arg(long = "label-field", default_value = "tags", requires = "eval")]
    label_field: String,
}

impl EvaluationArgs {
    /// The evaluation set, if one was given.
    pub fn read(&self) -> Result<Option<Evaluation>> {
        let Some(path) = &self.eval else {
            return Ok(None);
        };
        Ok(Some(Evaluation {
            k: self.eval_k,
            metric: Some(self.eval_metric.clone()),
            label_field: Some(self.label_field.clone()),
            points: read_labelled(path)?,
            baseline: match &self.eval_baseline {
                Some(p) => read_labelled(p)?,
                None => Vec::new(),
            },
        }))
    }
}

/// Reads `{"label", "text"}` lines; errors name the file and line.
pub fn read_labelled(path: &Path) -> Result<Vec<LabelledText>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        #[serde(default)]
        id: Option<serde_json::Value>,
        label: serde_json::Value,
        text: String,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let _ = l.id;
        let label = match l.label {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => bail!(
                "{}:{}: \"label\" must be a string or an integer",
                path.display(),
                n + 1
            ),
        };
        out.push(LabelledText {
            label,
            text: l.text,
        });
    }
    if out.is_empty() {
        bail!("{}: no evaluation points", path.display());
    }
    Ok(out)
}
