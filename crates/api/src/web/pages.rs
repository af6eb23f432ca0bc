//! The pages' HTML (maud): pure functions from the XRPC methods' typed outputs to markup.

use axum::response::Html;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::Frame;
use crate::methods::agreement::list_agreements;
use crate::methods::bundle::list_bundles;
use crate::methods::collective::{get_status, list_collectives};
use crate::methods::node::{get_peers, get_status as node_status};
use crate::methods::payout::list_statements;

/// The stylesheet, embedded.
pub(crate) const CSS: &str = include_str!("guild.css");

/// A whole page as an HTML response body.
pub(crate) fn html(m: Markup) -> Html<String> {
    Html(m.into_string())
}

fn layout(title: &str, frame: Option<&Frame>, active: &str, body: Markup) -> Markup {
    let q = frame
        .and_then(|f| f.collective.as_deref())
        .map(|c| format!("?collective={c}"))
        .unwrap_or_default();
    let tabs = [
        ("/dashboard", "Overview"),
        ("/dashboard/works", "Works"),
        ("/dashboard/consent", "Consent"),
        ("/dashboard/collective", "Collective"),
        ("/dashboard/bundles", "Bundles"),
        ("/dashboard/statements", "Statements"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Guild" }
                link rel="stylesheet" href="/assets/guild.css";
                link rel="icon" href="data:,";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    p.brand { "Guild" }
                    @if let Some(f) = frame {
                        nav aria-label="Dashboard" {
                            ul {
                                @for (href, name) in tabs {
                                    li {
                                        @if name == active {
                                            a href=(format!("{href}{q}")) aria-current="page" { (name) }
                                        } @else {
                                            a href=(format!("{href}{q}")) { (name) }
                                        }
                                    }
                                }
                                li { a href="/contracts" { "Contracts" } }
                                li { a href="/commons" { "Commons" } }
                            }
                        }
                        p.who { "Signed in as " code { (f.did) } }
                    } @else {
                        nav aria-label="Public" { ul { li { a href="/commons" { "Commons" } } li { a href="/contracts" { "Contracts" } } } }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
                footer {
                    p { "Served by this Guild node. Every figure here comes from the node's XRPC methods, as the " code { "guild" } " command line shows them." }
                    @if let Some(f) = frame {
                        form method="post" action="/dashboard/logout" {
                            input type="hidden" name="csrf" value=(f.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                @if frame.is_some() {
                    (PreEscaped(LIVE_SCRIPT.replace("{q}", &q)))
                }
            }
        }
    }
}

/// Imports a folder's text files one by one through the works form (the same
/// `createRecord` as adding one), with a progress bar.
const IMPORT_SCRIPT: &str = r#"<script>
(function () {
  var form = document.getElementById("import");
  if (!form || !window.fetch) return;
  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var files = Array.from(document.getElementById("folder").files || [])
      .filter(function (f) { return /\.(txt|md)$/i.test(f.name); });
    var bar = document.getElementById("import-progress");
    var status = document.getElementById("import-status");
    form.setAttribute("data-busy", "1");
    bar.max = Math.max(files.length, 1);
    bar.value = 0;
    var done = 0, failed = 0;
    for (var f of files) {
      var body = new URLSearchParams({
        csrf: form.dataset.csrf, collective: form.dataset.collective,
        title: f.name.replace(/\.(txt|md)$/i, ""), body: await f.text()
      });
      var r = await fetch("/dashboard/works", { method: "POST", body: body, credentials: "same-origin" });
      if (r.ok) { done++; } else { failed++; }
      bar.value = done + failed;
      status.textContent = done + " of " + files.length + " imported" + (failed ? ", " + failed + " refused" : "");
    }
    if (files.length === 0) status.textContent = "No .txt or .md file in that folder.";
    // (left busy: the live reload would wipe the result; the list updates on the next visit)
  });
})();
</script>"#;

/// Reloads the page when the node reports a change (server-sent events); the page works
/// without it.
const LIVE_SCRIPT: &str = r#"<script>
(function () {
  if (!window.EventSource) return;
  var es = new EventSource("/dashboard/events{q}");
  // Something typed or chosen in a form, or an import running: tell, do not reload.
  function dirty() {
    if (document.querySelector("form[data-busy]")) return true;
    return Array.prototype.some.call(document.querySelectorAll("input, textarea"), function (e) {
      if (e.type === "file") return e.files && e.files.length > 0;
      if (e.type === "hidden" || e.type === "submit") return false;
      return e.value !== e.defaultValue;
    });
  }
  es.addEventListener("change", function () {
    var s = document.getElementById("live");
    if (dirty()) {
      if (s) s.innerHTML = 'The collective changed: <a href="">reload</a> to see it.';
      return;
    }
    if (s) s.textContent = "The collective changed: reloading…";
    window.location.reload();
  });
})();
</script>"#;

pub(crate) fn login_needed() -> Markup {
    layout(
        "Sign in",
        None,
        "",
        html! {
            p { "The dashboard opens with a one-time link. On this machine, run:" }
            pre { code { "guild dashboard" } }
            p { "and open the link it prints (it works once, for ten minutes)." }
        },
    )
}

pub(crate) fn error(title: &str, message: &str) -> Markup {
    layout(
        title,
        None,
        "",
        html! {
            p.error role="alert" { (message) }
            p { a href="/dashboard" { "Back to the dashboard" } }
        },
    )
}

fn summary_of(template: &str) -> String {
    match guild_license::standard_template(template) {
        Some(c) => guild_license::text::summary(&c),
        None => "A template defined in this collective's charter.".to_owned(),
    }
}

fn title_of(template: &str) -> String {
    guild_license::standard_template(template)
        .map(|c| c.title)
        .unwrap_or_else(|| template.to_owned())
}

fn price(p: &Option<list_agreements::Price>) -> String {
    match p {
        None => "not public".to_owned(),
        Some(p) => {
            let amount = p.amount.as_ref().map(|m| money(m.amount, &m.currency));
            match (p.kind.as_str(), amount, p.share) {
                (_, _, Some(bp)) => format!("revenue share {}.{:02} %", bp / 100, bp % 100),
                (k, Some(a), _) => match &p.period {
                    Some(per) => format!("{k} {a} per {per}"),
                    None => format!("{k} {a}"),
                },
                (k, None, None) => k.to_owned(),
            }
        }
    }
}

fn money(minor: i64, currency: &str) -> String {
    match (
        u64::try_from(minor),
        guild_license::terms::Currency::parse(currency),
    ) {
        (Ok(amount), Ok(currency)) => guild_license::terms::Money { amount, currency }.to_string(),
        _ => format!("{minor} (minor units) {currency}"),
    }
}

pub(crate) fn contracts(list: &list_agreements::Output) -> Markup {
    let (current, past): (Vec<_>, Vec<_>) = list
        .agreements
        .iter()
        .partition(|a| matches!(a.status.as_str(), "in-force" | "offered" | "accepted"));
    let table = |rows: &[&list_agreements::Agreement]| {
        html! {
            @if rows.is_empty() {
                p { "None." }
            } @else {
                div.scroll tabindex="0" {
                    table {
                        thead { tr { th scope="col" { "Template" } th scope="col" { "Builder" } th scope="col" { "Status" } th scope="col" { "Term" } th scope="col" { "Price" } } }
                        tbody {
                            @for a in rows {
                                tr {
                                    td { strong { (title_of(&a.template)) } br; small { code { (a.template) } " v" (a.template_version) } }
                                    td { code.id { (a.builder) } }
                                    td { (a.status) @if let Some(s) = &a.in_force_since { br; small { "since " (s) } } }
                                    td {
                                        @if let Some(d) = a.term.days { (d) " days" }
                                        @if let Some(s) = &a.term.start { br; small { (s) } }
                                        @if let Some(e) = &a.term.end { small { " to " (e) } }
                                    }
                                    td { (price(&a.price)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let mut templates: Vec<&str> = list
        .agreements
        .iter()
        .map(|a| a.template.as_str())
        .collect();
    templates.sort();
    templates.dedup();
    layout(
        "Contracts",
        None,
        "",
        html! {
            p { "The agreements of collective " code.id { (list.collective) } ": who may use its members' works, for what, on which terms. "
                @if list.prices_private { "This collective's charter keeps prices private." } }
            h2 { "In force and offered" }
            (table(&current))
            h2 { "Past" }
            (table(&past))
            h2 { "The templates, in plain words" }
            @if templates.is_empty() { p { "No agreement yet." } }
            dl {
                @for t in &templates {
                    dt { (title_of(t)) " " small { code { (t) } } }
                    dd { (summary_of(t)) }
                }
            }
        },
    )
}

pub(crate) fn overview(
    frame: &Frame,
    node: &node_status::Output,
    peers: &get_peers::Output,
    list: &list_collectives::Output,
    status: Option<&get_status::Output>,
) -> Markup {
    layout(
        "Overview",
        Some(frame),
        "Overview",
        html! {
            p #live aria-live="polite" {}
            section {
                h2 { "This node" }
                dl.facts {
                    dt { "Member" } dd { code.id { (node.did) } }
                    dt { "Version" } dd { (node.version) }
                    dt { "Up for" } dd { (node.uptime_secs) " s" }
                    dt { "Lexicons" } dd { (node.lexicons) }
                    dt { "Peers connected" } dd { (peers.peers.len()) }
                }
            }
            section {
                h2 { "Collectives" }
                @if list.collectives.is_empty() { p { "This node is in no collective yet." } }
                ul {
                    @for c in &list.collectives {
                        li {
                            a href=(format!("/dashboard/collective?collective={}", c.collective)) {
                                (c.name.clone().unwrap_or_else(|| c.collective.clone()))
                            }
                            " · " (c.members) " members" @if !c.member { " (not a member)" }
                        }
                    }
                }
            }
            @if let Some(s) = status {
                section {
                    h2 { "Sync" }
                    dl.facts {
                        dt { "Your role" } dd { (s.role.clone().unwrap_or_else(|| "not a member".into())) }
                        dt { "Governance ops" } dd { (s.sync.ops) }
                        dt { "Heads" } dd { (s.sync.heads.len()) }
                        dt { "Waiting for parents" } dd { (s.sync.pending) }
                        dt { "Wanted from peers" } dd { (s.sync.wanted) }
                    }
                }
            }
            section {
                h2 { "Your repositories" }
                div.scroll tabindex="0" { table {
                    thead { tr { th scope="col" { "Space" } th scope="col" { "Records" } th scope="col" { "Revision" } } }
                    tbody {
                        @for r in node.repos.iter().filter(|r| r.did == node.did) {
                            tr { td { code.id { (r.space) } } td.num { (r.records) } td { code { (r.rev) } } }
                        }
                    }
                } }
            }
        },
    )
}

/// What the works page shows.
pub(crate) struct WorksView<'a> {
    pub collection: &'a str,
    pub listing: Option<&'a Value>,
    /// The search, lower case ("" for none).
    pub q: &'a str,
    /// What was just done.
    pub done: Option<&'a str>,
}

pub(crate) fn works(frame: &Frame, v: &WorksView<'_>) -> Markup {
    let empty = Vec::new();
    let records = v
        .listing
        .and_then(|l| l["records"].as_array())
        .unwrap_or(&empty);
    let cursor = v.listing.and_then(|l| l["cursor"].as_str());
    let collection = v.collection;
    let collective = frame.collective.clone().unwrap_or_default();
    layout(
        "Works",
        Some(frame),
        "Works",
        html! {
            @if let Some(d) = v.done { p.done role="status" { (d) } }
            p #live aria-live="polite" {}
            p { "Your records of " code { (collection) } " in the collective's space. A folder at once: "
                code { "guild import DIR --space " (collective) } " (it shows a progress bar)." }
            form method="get" action="/dashboard/works" role="search" {
                input type="hidden" name="collective" value=(collective);
                label for="q" { "Search your works" } " "
                input #q type="search" name="q" value=(v.q);
                " "
                button type="submit" { "Search" }
            }
            @if !v.q.is_empty() {
                p { (records.len()) " match(es) for “" (v.q) "” among "
                    (v.listing.and_then(|l| l["scanned"].as_u64()).unwrap_or(0)) " records read." }
            }
            @if records.is_empty() { p { "No record here yet." } }
            ul.records {
                @for r in records {
                    li {
                        @let val = &r["value"];
                        strong { (val["title"].as_str().or(val["name"].as_str()).unwrap_or("(untitled)")) }
                        @if let Some(t) = val["body"].as_str().or(val["text"].as_str()) {
                            p { (t.chars().take(240).collect::<String>()) @if t.chars().count() > 240 { "…" } }
                        }
                        small { code { (r["uri"].as_str().unwrap_or("")) } }
                    }
                }
            }
            @if let (Some(c), true) = (cursor, v.q.is_empty()) {
                p { a href=(format!("/dashboard/works?collective={collective}&collection={collection}&cursor={c}")) { "More" } }
            }
            @if frame.collective.is_some() {
                section.template {
                    h2 { "Import a folder" }
                    p { "Each " code { ".txt" } " or " code { ".md" } " file becomes one work (its name the title). Without JavaScript, use "
                        code { "guild import DIR --space " (collective) } "." }
                    form #import data-csrf=(frame.csrf) data-collective=(collective) {
                        label for="folder" { "Folder" } " "
                        input #folder type="file" webkitdirectory multiple accept=".txt,.md,text/plain,text/markdown";
                        " "
                        button type="submit" { "Import" }
                        p { progress #import-progress max="1" value="0" aria-label="Import progress" {} " " span #import-status role="status" {} }
                    }
                    (PreEscaped(IMPORT_SCRIPT))
                }
                section.template {
                    h2 { "Add a work" }
                    form method="post" action="/dashboard/works" {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        input type="hidden" name="collective" value=(collective);
                        p { label for="title" { "Title" } br; input #title type="text" name="title" required size="40"; }
                        p { label for="body" { "Text" } br; textarea #body name="body" required rows="6" cols="60" {} }
                        p { label for="language" { "Language (e.g. en)" } br; input #language type="text" name="language" size="8"; }
                        p { label for="tags" { "Tags, separated by commas" } br; input #tags type="text" name="tags" size="40"; }
                        button type="submit" { "Add" }
                    }
                }
            }
        },
    )
}

/// How many members a page lists (the count is always in full).
pub(crate) const MEMBERS_LISTED: u64 = 500;

/// The query of the collective page listing the members after `after` (none: the first page).
fn members_page(collective: &str, after: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("collective", collective);
    if !after.is_empty() {
        q.append_pair("after", after);
    }
    q.finish()
}

/// The member's current consent per template: granted, and the op. (The pages ask for the
/// member's consents alone, `consentsOf`; the filter keeps this true of any status.)
fn my_consents(s: &get_status::Output) -> Vec<&get_status::Consent> {
    s.consents.iter().filter(|c| c.member == s.you).collect()
}

fn revocation_words(template: &str) -> String {
    let notice = guild_license::standard_template(template)
        .map(|c| {
            format!(
                " The template's terms give builders {} days' notice for what they already hold.",
                c.notice_days
            )
        })
        .unwrap_or_default();
    format!(
        "A revocation takes effect as soon as the stewards' nodes hold it: your records are left \
         out of every bundle proposed after it. Bundles already sealed keep them; the builders \
         who received those are sent a revocation notice on their feed listing your records.{notice}"
    )
}

pub(crate) fn consent(
    frame: &Frame,
    status: Option<&get_status::Output>,
    done: Option<&str>,
) -> Markup {
    let Some(s) = status else {
        return layout(
            "Consent",
            Some(frame),
            "Consent",
            html! { p { "This node is in no collective yet." } },
        );
    };
    let mine = my_consents(s);
    let templates: Vec<String> = s.templates.clone().unwrap_or_else(|| {
        guild_license::STANDARD_IDS
            .iter()
            .map(|t| (*t).to_owned())
            .collect()
    });
    layout(
        "Consent",
        Some(frame),
        "Consent",
        html! {
            @if let Some(d) = done { p.done role="status" { (d) } }
            p #live aria-live="polite" {}
            p { "For each licence template of the collective: what it lets a builder do, and whether your works may be licensed under it." }
            @for t in &templates {
                @let granted = mine.iter().any(|c| &c.template == t && c.granted);
                section.template {
                    h2 { (title_of(t)) " " small { code { (t) } } }
                    p { (summary_of(t)) }
                    p { "Your consent: " strong.state data-template=(t) { @if granted { "granted" } @else { "not granted" } } }
                    form method="post" action="/dashboard/consent" {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        input type="hidden" name="collective" value=(s.collective);
                        input type="hidden" name="template" value=(t);
                        @if granted {
                            input type="hidden" name="action" value="revoke";
                            button type="submit" { "Revoke " (title_of(t)) "…" }
                        } @else {
                            input type="hidden" name="action" value="grant";
                            button type="submit" { "Grant " (title_of(t)) "…" }
                        }
                    }
                }
            }
        },
    )
}

pub(crate) fn consent_confirm(
    frame: &Frame,
    status: Option<&get_status::Output>,
    action: &str,
    template: &str,
) -> Markup {
    let collective = status.map(|s| s.collective.clone()).unwrap_or_default();
    let verb = if action == "grant" { "Grant" } else { "Revoke" };
    layout(
        &format!("{verb} consent?"),
        Some(frame),
        "Consent",
        html! {
            h2 { (title_of(template)) " " small { code { (template) } } }
            p { (summary_of(template)) }
            @if action == "grant" {
                p { "Granting lets the stewards include your records in bundles licensed under this template, from the next bundle they propose." }
            } @else {
                p { (revocation_words(template)) }
            }
            form method="post" action="/dashboard/consent" {
                input type="hidden" name="csrf" value=(frame.csrf);
                input type="hidden" name="collective" value=(collective);
                input type="hidden" name="template" value=(template);
                input type="hidden" name="action" value=(action);
                input type="hidden" name="confirmed" value="yes";
                button type="submit" { "Yes, " (verb.to_lowercase()) }
                " "
                a href="/dashboard/consent" { "Cancel" }
            }
        },
    )
}

pub(crate) fn collective(
    frame: &Frame,
    status: Option<&get_status::Output>,
    agreements: Option<&list_agreements::Output>,
) -> Markup {
    let Some(s) = status else {
        return layout(
            "Collective",
            Some(frame),
            "Collective",
            html! { p { "This node is in no collective yet." } },
        );
    };
    layout(
        s.name.as_deref().unwrap_or("Collective"),
        Some(frame),
        "Collective",
        html! {
            p { "Collective " code.id { (s.collective) } ". Quorum: " (s.quorum) " steward approvals." }
            p #live aria-live="polite" {}
            section {
                h2 { "Members (" (s.member_count) ")" }
                div.scroll tabindex="0" { table {
                    thead { tr { th scope="col" { "Member" } th scope="col" { "Role" } th scope="col" { "Since" } } }
                    tbody { @for m in &s.members { tr { td { code.id { (m.did) } } td { (m.role) } td { (m.since) } } } }
                } }
                @if (s.members.len() as u64) < s.member_count {
                    p { (s.members.len()) " of " (s.member_count) " members are listed"
                        @if let Some(first) = s.members.first() { " (from " code.id { (first.did) } ")" }
                        ". "
                        @if let Some(cursor) = &s.members_cursor {
                            a href={ "/dashboard/collective?" (members_page(&s.collective, cursor)) } rel="next" { "Next " (MEMBERS_LISTED) " members" }
                            " · "
                        }
                        a href={ "/dashboard/collective?" (members_page(&s.collective, "")) } { "First page" }
                        " · " code { "guild collective status" } " lists them all." }
                }
                @if s.departed_count > 0 {
                    p { (s.departed_count) " departed." }
                }
            }
            section {
                h2 { "Stewards" }
                ul { @for st in &s.stewards { li { code.id { (st) } } } }
            }
            section {
                h2 { "Elections" }
                @if s.elections.is_empty() { p { "None yet." } }
                @for e in &s.elections {
                    article.election {
                        h3 { (e.kind) ", " (e.seats) " seat(s) " small { code { (e.id) } } }
                        p { (e.voters) " voted; closes after " (e.closes_after) "; " (e.seals) " seal(s)." }
                        @if let Some(c) = &e.certified {
                            p { "Certified: " (c.outcome) " from " (c.ballots) " ballots." }
                            @if !c.elected.is_empty() { p { "Elected: " @for d in &c.elected { code.id { (d) } " " } } }
                            table {
                                thead { tr { th scope="col" { "Candidate" } th scope="col" { "Approvals" } } }
                                tbody { @for t in &c.tally { tr { td { code.id { (t.choice) } } td.num { (t.approvals) } } } }
                            }
                        } @else {
                            p { "Candidates: " @for d in &e.candidates { code.id { (d) } " " } }
                        }
                    }
                }
            }
            section {
                h2 { "Agreements" }
                @match agreements {
                    Some(a) if !a.agreements.is_empty() => {
                        div.scroll tabindex="0" { table {
                            thead { tr { th scope="col" { "Template" } th scope="col" { "Builder" } th scope="col" { "Status" } th scope="col" { "Price" } } }
                            tbody { @for g in &a.agreements { tr {
                                td { (title_of(&g.template)) } td { code.id { (g.builder) } } td { (g.status) } td { (price(&g.price)) }
                            } } }
                        } }
                        p { "Their full terms: " a href=(format!("/contracts?collective={}", s.collective)) { "the public contracts page" } "." }
                    }
                    _ => { p { "No agreement yet." } }
                }
            }
        },
    )
}

pub(crate) fn bundles(frame: &Frame, list: Option<&list_bundles::Output>) -> Markup {
    let rows: &[list_bundles::BundleView] = list.map(|l| l.bundles.as_slice()).unwrap_or(&[]);
    layout(
        "Bundles",
        Some(frame),
        "Bundles",
        html! {
            p { "The bundles the stewards assembled from members' consented records, for which builder's agreement, and which of your records each holds. "
                "Your part is recomputed by your own node from your repository and the collective's log: the same selection the stewards ran, for you alone. "
                code { "guild bundle show" } " gives a bundle file's credits and contribution estimates." }
            p #live aria-live="polite" {}
            @if rows.is_empty() { p { "No bundle yet." } }
            @else {
                div.scroll tabindex="0" { table {
                    thead { tr { th scope="col" { "Proposal" } th scope="col" { "Template, builder" } th scope="col" { "Status" } th scope="col" { "Your records" } th scope="col" { "Records" } th scope="col" { "Members" } th scope="col" { "Approvals" } th scope="col" { "Receipt" } } }
                    tbody { @for b in rows { tr {
                        td { code.id { (b.proposal) } br; small { (b.proposed_at) } }
                        td { (title_of(&b.template)) br; small { (b.kind) } @if let Some(by) = &b.builder { br; small { "for " code.id { (by) } } } }
                        td { (b.status) @if let Some(n) = &b.note { br; small { (n) } } }
                        td.num { @match &b.mine { Some(m) => { (m.records) @if let Some(e) = &m.estimate { br; small { "estimate " (e.value) " (" (e.method) ")" } } }, None => { "–" } } }
                        td.num { (b.records.map(|r| r.to_string()).unwrap_or_else(|| "–".into())) }
                        td.num { (b.authors.map(|r| r.to_string()).unwrap_or_else(|| "–".into())) }
                        td.num { (b.approvals.len()) " / " (b.quorum) }
                        td { @match &b.receipt { Some(r) => { "acknowledged" br; small { code.id { (r) } } }, None => { @if b.status == "sealed" { "not yet" } @else { "–" } } } }
                    } } }
                } }
                @for b in rows.iter().filter(|b| b.mine.as_ref().is_some_and(|m| m.records > 0)) {
                    @if let Some(m) = &b.mine {
                        details {
                            summary { "Your " (m.records) " record" @if m.records != 1 { "s" } " in " (title_of(&b.template)) " bundle " code.id { (b.proposal.chars().take(16).collect::<String>()) "…" } }
                            ul.paths { @for p in &m.paths { li { code.id { (p) } } } }
                            @if (m.paths.len() as u64) < m.records { p { small { "… and " (m.records - m.paths.len() as u64) " more." } } }
                        }
                    }
                }
            }
        },
    )
}

/// A server-side SVG chart (plotters), or a note that it could not be drawn.
fn chart(points: &[(String, f64)], unit: &str, label: &str) -> Markup {
    match super::charts::bars(points, unit, label) {
        Ok(svg) => PreEscaped(svg),
        Err(e) => html! { p { small { "(chart not drawn: " (e.0) ")" } } },
    }
}

pub(crate) fn statements(frame: &Frame, list: Option<&list_statements::Output>) -> Markup {
    let views: &[list_statements::StatementView] =
        list.map(|l| l.statements.as_slice()).unwrap_or(&[]);
    let mine: Vec<(
        &list_statements::StatementView,
        Option<&guild_gov::body::PayoutLine>,
    )> = views
        .iter()
        .map(|v| {
            (
                v,
                v.statement
                    .lines
                    .iter()
                    .find(|l| l.member.as_str() == frame.did),
            )
        })
        .collect();
    let currency = views
        .first()
        .map(|v| v.statement.total.currency.clone())
        .unwrap_or_default();
    // Amounts in major units of the first statement's currency (statements in another
    // currency are left out of the chart, not the table).
    let scale = guild_license::terms::Currency::parse(&currency).map_or(1.0, |c| {
        10f64.powi(i32::try_from(c.exponent()).unwrap_or(0))
    });
    let points: Vec<(String, f64)> = mine
        .iter()
        .filter(|(v, _)| v.statement.total.currency == currency)
        .map(|(v, l)| {
            (
                v.statement.period.id.clone(),
                l.map_or(0.0, |l| l.amount as f64 / scale),
            )
        })
        .collect();
    // The member's share of each statement's weights, in percent: their contribution over
    // time, as the stewards' estimates and member-days weighed it.
    let shares: Vec<(String, f64)> = mine
        .iter()
        .map(|(v, l)| {
            let total: u128 = v.statement.lines.iter().map(|x| u128::from(x.weight)).sum();
            let mine = l.map_or(0, |l| u128::from(l.weight));
            let share = if total == 0 {
                0.0
            } else {
                mine as f64 * 100.0 / total as f64
            };
            (v.statement.period.id.clone(), share)
        })
        .collect();
    layout(
        "Statements",
        Some(frame),
        "Statements",
        html! {
            p { "What each builder's payment for a period gives you, by the method the statement names. "
                code { "guild report --period P" } " writes one as Markdown and JSON." }
            p #live aria-live="polite" {}
            @if views.is_empty() { p { "No statement yet." } }
            @else {
                @if points.iter().chain(&shares).all(|p| p.1 <= 0.0) {
                    p { "No amount for you in these statements yet: your records were in none of the bundles they pay for." }
                } @else {
                    figure { (chart(&points, &currency, &format!("Your amount per statement, in {currency}"))) figcaption { "Your amount per statement, in " (currency) "." } }
                    figure { (chart(&shares, "% of the weights", "Your share of each statement's weights, in percent")) figcaption { "Your contribution: your share of each statement's weights (the stewards' estimates times your member-days), in percent." } }
                }
                div.scroll tabindex="0" { table {
                    thead { tr { th scope="col" { "Period" } th scope="col" { "Builder" } th scope="col" { "Total" } th scope="col" { "Method" } th scope="col" { "Your weight" } th scope="col" { "Member-days" } th scope="col" { "Your amount" } th scope="col" { "Published by" } } }
                    tbody { @for (v, l) in &mine { tr {
                        td { (v.statement.period.id) }
                        td { code.id { (v.builder.clone().unwrap_or_default()) } }
                        td.num { (money(v.statement.total.amount, &v.statement.total.currency)) }
                        td { (v.statement.method) @if let Some(b) = &v.statement.basis { br; small { (b) } } }
                        td.num { (l.map(|l| l.weight.to_string()).unwrap_or_else(|| "–".into())) }
                        td.num { (l.map(|l| l.member_days.to_string()).unwrap_or_else(|| "–".into())) }
                        td.num { (l.map(|l| money(i64::try_from(l.amount).unwrap_or(i64::MAX), &v.statement.total.currency)).unwrap_or_else(|| "–".into())) }
                        td.num { (v.published_by.len()) " steward(s)" }
                    } } }
                } }
            }
        },
    )
}

/// What the commons page shows.
pub(crate) struct CommonsView<'a> {
    pub did: &'a str,
    pub origin: &'a str,
    pub items: &'a [&'a super::CommonsItem],
    pub templates: &'a [String],
    pub kinds: &'a [String],
    pub query: &'a super::CommonsQuery,
    /// How many public repos the commons is drawn from.
    pub authors: usize,
    /// The only one's DID, when there is one (else the node's own, when it has none).
    pub sole_author: Option<&'a str>,
    /// How many records the whole commons holds (unfiltered).
    pub total: usize,
    /// Whether a next page exists.
    pub more: bool,
}

fn licence_links(origin: &str, template: &str) -> Markup {
    // Forms exist for the standard templates only.
    let Some(version) = guild_license::standard_template(template).map(|c| c.version) else {
        return html! { "(a template without published forms)" };
    };
    let base = format!("{origin}/commons/licences/{template}/v{version}");
    html! {
        a href=(format!("{base}/terms.txt")) { "full terms" } " · "
        a href=(format!("{base}/odrl.jsonld")) { "ODRL" } " · "
        a href=(format!("{base}/rsl.xml")) { "RSL" }
    }
}

pub(crate) fn commons(v: &CommonsView<'_>) -> Markup {
    let q = v.query;
    let sel = |current: &Option<String>, value: &str| current.as_deref() == Some(value);
    let page = q.page.unwrap_or(0);
    let next = {
        let mut params: Vec<(&str, String)> = Vec::new();
        for (k, val) in [
            ("type", &q.kind),
            ("licence", &q.licence),
            ("lang", &q.lang),
            ("tag", &q.tag),
            ("q", &q.q),
        ] {
            if let Some(x) = val.as_ref().filter(|x| !x.is_empty()) {
                params.push((k, x.clone()));
            }
        }
        params.push(("page", (page + 1).to_string()));
        serde_urlencoded::to_string(&params).unwrap_or_default()
    };
    layout(
        "Commons",
        None,
        "",
        html! {
            p { "Works put in the open by "
                @if let Some(a) = v.sole_author { code.id { (a) } }
                @else { (v.authors) " members of the collective (listed by the node of " code.id { (v.did) } ")" }
                ", each under the licence it names: anyone may use them on its terms "
                "(a use-restricted licence names who may). Every record is served as AT Protocol serves it "
                "(" code { "com.atproto.repo.getRecord" } "), with a proof of inclusion in the signed repository." }
            @if v.total > 0 {
                p.snapshot { "The whole commons as one file anyone may download and check offline ("
                    code { "guild bundle verify" } "): "
                    a href="/commons/commons-snapshot.car" { "snapshot (CAR)" } ", "
                    a href="/commons/snapshot/croissant.json" { "Croissant metadata" } ", "
                    a href="/commons/snapshot/README.md" { "dataset card" } "." }
            }
            form.filters method="get" action="/commons" role="search" {
                label for="q" { "Search" } " "
                input #q type="search" name="q" value=(q.q.clone().unwrap_or_default());
                " "
                label for="licence" { "Licence" } " "
                select #licence name="licence" {
                    option value="" { "any" }
                    @for t in v.templates {
                        @if sel(&q.licence, t) { option value=(t) selected { (title_of(t)) } }
                        @else { option value=(t) { (title_of(t)) } }
                    }
                }
                " "
                label for="type" { "Type" } " "
                select #type name="type" {
                    option value="" { "any" }
                    @for k in v.kinds {
                        @if sel(&q.kind, k) { option value=(k) selected { (k) } }
                        @else { option value=(k) { (k) } }
                    }
                }
                " "
                label for="lang" { "Language" } " "
                input #lang type="text" name="lang" size="5" value=(q.lang.clone().unwrap_or_default());
                " "
                label for="tag" { "Tag" } " "
                input #tag type="text" name="tag" size="10" value=(q.tag.clone().unwrap_or_default());
                " "
                button type="submit" { "Filter" }
            }
            @if v.items.is_empty() { p { "No record in the commons matches." } }
            ul.records {
                @for item in v.items {
                    li {
                        @let val = &item.value;
                        h2 { (val["title"].as_str().or(val["name"].as_str()).unwrap_or("(untitled)")) }
                        @if let Some(t) = val["body"].as_str().or(val["text"].as_str()) {
                            p { (t.chars().take(400).collect::<String>()) @if t.chars().count() > 400 { "…" } }
                        }
                        p {
                            strong { "Licence: " (title_of(&item.template)) }
                            @if !item.restricted_to.is_empty() { " (only for: " (item.restricted_to.join(", ")) ")" }
                            br; small { (summary_of(&item.template)) }
                            br; small { (licence_links(v.origin, &item.template)) }
                        }
                        details {
                            summary { "Provenance" }
                            dl.facts {
                                dt { "Author" } dd { code.id { (item.did) } }
                                dt { "Record" } dd { code.id { (item.uri) } }
                                dt { "CID" } dd { code.id { (item.cid) } }
                                dt { "Repository commit" } dd { code.id { (item.commit) } }
                                dt { "In the commons since" } dd { (item.licensed_at) }
                                dt { "Type" } dd { code { (item.collection) } }
                                @if let Some(l) = val["language"].as_str() { dt { "Language" } dd { (l) } }
                                dt { "Proof" } dd {
                                    a href=(format!("/xrpc/com.atproto.sync.getRecord?did={}&collection={}&rkey={}", item.did, item.collection, item.rkey)) { "download (CAR: commit, MST path, record)" }
                                }
                            }
                        }
                    }
                }
            }
            @if v.more { p { a href=(format!("/commons?{next}")) { "Next page" } } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status of a collective with `count` members of which `members` are listed.
    fn status(members: &[&str], count: u64, cursor: Option<&str>) -> get_status::Output {
        let members: Vec<serde_json::Value> = members
            .iter()
            .map(|d| serde_json::json!({"did": d, "role": "member", "since": "bafyop"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "collective": "bafycollective",
            "name": "Poets",
            "you": "did:key:zme",
            "member": true,
            "role": "member",
            "members": members,
            "memberCount": count,
            "membersCursor": cursor,
            "departed": [],
            "departedCount": 0,
            "stewards": [],
            "quorum": 1,
            "templates": null,
            "openInvites": 0,
            "consents": [],
            "consentCount": 0,
            "elections": [],
            "agreements": [],
            "peers": [],
            "sync": {"ops": 1, "heads": [], "pending": 0, "wanted": 0}
        }))
        .expect("a status")
    }

    fn frame() -> Frame {
        Frame {
            did: "did:key:zme".into(),
            collective: Some("bafycollective".into()),
            csrf: "token".into(),
        }
    }

    #[test]
    fn the_collective_page_links_the_next_page_of_members() {
        let s = status(
            &["did:web:a.example%3A8080", "did:web:b.example"],
            1200,
            Some("did:web:b.example"),
        );
        let page = collective(&frame(), Some(&s), None).into_string();
        assert!(page.contains("2 of 1200 members are listed"), "{page}");
        // The cursor, percent-encoded, with the collective.
        assert!(
            page.contains(
                "href=\"/dashboard/collective?collective=bafycollective&amp;after=did%3Aweb%3Ab.example\" rel=\"next\""
            ),
            "{page}"
        );
        // (The layout's own tab links the collective page too: the link's text tells them apart.)
        assert!(
            page.contains(
                "href=\"/dashboard/collective?collective=bafycollective\">First page</a>"
            ),
            "{page}"
        );
        // The last page: no "next" link, still the way back to the first.
        let last = status(&["did:web:c.example"], 1200, None);
        let page = collective(&frame(), Some(&last), None).into_string();
        assert!(!page.contains("rel=\"next\""), "{page}");
        assert!(page.contains("First page"));
        // Every member listed: no paging at all.
        let all = status(&["did:web:a.example"], 1, None);
        let page = collective(&frame(), Some(&all), None).into_string();
        assert!(!page.contains("First page") && !page.contains("rel=\"next\""));
    }
}
