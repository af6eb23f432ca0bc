//! The dashboard's and the contracts page's HTTP behaviour on a real node process: the
//! one-time login link, sessions, the forms' session token, and that a refused or unconfirmed
//! form changes nothing (the node's state, read through the CLI, is the witness).

mod common;

use common::{DataDir, ok};
use serde_json::Value;

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

fn consents(d: &DataDir, template: &str) -> Vec<bool> {
    let s: Value =
        serde_json::from_str(ok(&d.guild(&["collective", "status", "--json"])).trim()).unwrap();
    s["consents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["member"] == s["you"] && c["template"] == template)
        .map(|c| c["granted"] == true)
        .collect()
}

fn login_link(d: &DataDir) -> (String, String) {
    let v: Value = serde_json::from_str(ok(&d.guild(&["dashboard", "--json"])).trim()).unwrap();
    (
        v["login"].as_str().unwrap().to_owned(),
        v["contracts"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_dashboard_opens_once_per_link_and_its_forms_need_their_session() {
    let d = DataDir::init();
    let node = d.start();
    let id = ok(&d.guild(&["collective", "create", "--name", "Web Writers"]))
        .trim()
        .to_owned();
    let http = no_redirects();
    let base = node.url.trim_end_matches('/').to_owned();

    // No session: the page says how to get one.
    let r = http.get(format!("{base}/dashboard")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("guild dashboard"));

    // A forged or tampered link opens nothing.
    let (login, contracts) = login_link(&d);
    for bad in [
        format!("{base}/dashboard/login?code=1.2.3"),
        login.replace("code=1", "code=2"),
        format!("{login}x"),
    ] {
        let r = http.get(&bad).send().unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        assert!(r.headers().get("set-cookie").is_none());
    }

    // The link opens a session once.
    let r = http.get(&login).send().unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let again = http.get(&login).send().unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.text().unwrap().contains("used already"));

    let page = |path: &str| {
        let r = http
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    for path in [
        "/dashboard",
        "/dashboard/works",
        "/dashboard/consent",
        "/dashboard/collective",
        "/dashboard/bundles",
        "/dashboard/statements",
    ] {
        let (s, body) = page(path);
        assert_eq!(s, 200, "{path}: {body}");
        assert!(body.contains(&d.did), "{path} names the member");
    }
    // The members' pages: after a DID, the members that sort after it (none after this one,
    // the only member); a cursor that is not a DID is refused with a reason.
    let listed = format!("<td><code class=\"id\">{}", d.did);
    let (_, body) = page("/dashboard/collective");
    assert!(
        body.contains(&listed),
        "the first page lists the member: {body}"
    );
    let (s, body) = page(&format!("/dashboard/collective?after={}", d.did));
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Members (1)"), "{body}");
    assert!(!body.contains(&listed), "{body}");
    let (s, body) = page("/dashboard/collective?after=not-a-did");
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("after:"), "{body}");
    let (_, consent_page) = page("/dashboard/consent");
    let csrf = consent_page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the form's session token")
        .to_owned();

    let post = |fields: &[(&str, &str)]| {
        let r = http
            .post(format!("{base}/dashboard/consent"))
            .header("cookie", &cookie)
            .form(fields)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let t = "research-open";
    assert!(consents(&d, t).is_empty());
    // Without the session's token, with another's, with an unknown action: refused, nothing written.
    for fields in [
        vec![("action", "grant"), ("template", t), ("confirmed", "yes")],
        vec![
            ("csrf", "forged"),
            ("action", "grant"),
            ("template", t),
            ("confirmed", "yes"),
        ],
        vec![
            ("csrf", csrf.as_str()),
            ("action", "publish"),
            ("template", t),
            ("confirmed", "yes"),
        ],
    ] {
        let (s, _) = post(&fields);
        assert_eq!(s, 400, "{fields:?}");
    }
    // Without the confirmation: the confirmation page, nothing written.
    let (s, body) = post(&[("csrf", &csrf), ("action", "grant"), ("template", t)]);
    assert_eq!(s, 200);
    assert!(body.contains("Grant consent?"), "{body}");
    assert!(
        consents(&d, t).is_empty(),
        "written before the confirmation"
    );
    // Confirmed: the node holds the grant, then the revocation.
    let (s, body) = post(&[
        ("csrf", &csrf),
        ("action", "grant"),
        ("template", t),
        ("confirmed", "yes"),
    ]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Granted research-open"), "{body}");
    assert_eq!(consents(&d, t), vec![true]);
    let (s, body) = post(&[("csrf", &csrf), ("action", "revoke"), ("template", t)]);
    assert_eq!(s, 200);
    assert!(body.contains("A revocation takes effect"), "{body}");
    let (s, _) = post(&[
        ("csrf", &csrf),
        ("action", "revoke"),
        ("template", t),
        ("confirmed", "yes"),
    ]);
    assert_eq!(s, 200);
    assert_eq!(consents(&d, t), vec![false]);
    // A template the lexicon refuses: the node's own error, nothing written.
    let (s, body) = post(&[
        ("csrf", &csrf),
        ("action", "grant"),
        ("template", "No Such!"),
        ("confirmed", "yes"),
    ]);
    assert!(s >= 400, "{s} {body}");
    assert_eq!(consents(&d, t), vec![false]);

    // The contracts page needs no token.
    let r = http.get(&contracts).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains(&id));

    // A work added through the page lands in the collective's space; search finds it.
    let add = |fields: &[(&str, &str)]| {
        let r = http
            .post(format!("{base}/dashboard/works"))
            .header("cookie", &cookie)
            .form(fields)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let space_records = || {
        ok(&d.guild(&[
            "record",
            "list",
            "--space",
            &id,
            "--collection",
            "coop.guild.data.text",
        ]))
        .lines()
        .count()
    };
    let before_add = space_records();
    let (s, _) = add(&[("title", "Harbour song"), ("body", "Verses.")]);
    assert_eq!(s, 400, "a form without the session's token");
    assert_eq!(space_records(), before_add);
    let (s, body) = add(&[
        ("csrf", &csrf),
        ("title", "Harbour song"),
        ("body", "Verses about the harbour at dawn."),
        ("language", "en"),
        ("tags", "sea, song"),
    ]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Added at://"), "{body}");
    assert_eq!(space_records(), before_add + 1);
    let (s, found) = page("/dashboard/works?q=HARBOUR");
    assert_eq!(s, 200);
    assert!(
        found.contains("Harbour song") && found.contains("1 match(es)"),
        "{found}"
    );
    let (_, none) = page("/dashboard/works?q=no-such-words");
    assert!(none.contains("0 match(es)"), "{none}");

    // Live updates: the events stream says hello, then `change` after a write.
    {
        use std::io::BufRead as _;
        let sse = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        let resp = sse
            .get(format!("{base}/dashboard/events"))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut lines = std::io::BufReader::new(resp).lines();
        let mut next_event = || loop {
            let line = lines.next().expect("the stream ended").expect("read");
            if let Some(e) = line.strip_prefix("event: ") {
                return e.to_owned();
            }
        };
        assert_eq!(next_event(), "hello");
        ok(&d.guild(&[
            "record",
            "add",
            "--collection",
            "coop.guild.data.text",
            "--json",
            r#"{"$type": "coop.guild.data.text", "title": "Live", "body": "x", "createdAt": "2026-12-03T10:00:00.000Z"}"#,
        ]));
        assert_eq!(next_event(), "change");
    }

    // Sign out ends the session.
    let r = http
        .post(format!("{base}/dashboard/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(page("/dashboard").0, 401);
}

#[test]
fn a_member_publishes_to_the_commons_and_crawlers_read_its_licences() {
    let d = DataDir::init();
    let node = d.start();
    let http = no_redirects();
    let base = node.url.trim_end_matches('/').to_owned();
    let get = |path: &str| {
        let r = http.get(format!("{base}{path}")).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let count = |collection: &str| {
        let out = d.guild(&["record", "list", "--collection", collection]);
        if !out.status.success() && common::stderr(&out).contains("RepoNotFound") {
            return 0; // no public commit yet
        }
        ok(&out).lines().count()
    };
    let licences = || count("coop.guild.commons.licence");
    // An empty commons: a page that says so, robots.txt without a licence, no TDM rule.
    let (s, body) = get("/commons");
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("No record in the commons"), "{body}");
    let (_, robots) = get("/robots.txt");
    assert!(!robots.contains("License:"), "{robots}");
    assert_eq!(get("/.well-known/tdmrep.json").1.trim(), "[]");
    assert_eq!(get("/commons/commons-snapshot.car").0, 404);

    // Refused before anything is written: an unknown template, a user class that is none.
    let record = r#"{"$type": "coop.guild.data.text", "title": "Tide tables of 1911", "body": "Hand-copied tide tables from the harbour office.", "language": "en", "tags": ["sea"], "createdAt": "2026-12-03T10:00:00.000Z"}"#;
    for bad in [
        vec!["--licence", "all-rights-waived"],
        vec!["--licence", "research-open", "--restricted-to", "robots"],
    ] {
        let mut args = vec![
            "record",
            "add",
            "--commons",
            "--collection",
            "coop.guild.data.text",
            "--json",
            record,
        ];
        args.extend(bad);
        let out = d.guild(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
    }
    assert_eq!(licences(), 0);
    assert_eq!(count("coop.guild.data.text"), 0);

    // Published: the record and its licence in one commit.
    let out = ok(&d.guild(&[
        "record",
        "add",
        "--commons",
        "--licence",
        "research-open",
        "--restricted-to",
        "research",
        "--collection",
        "coop.guild.data.text",
        "--json",
        record,
    ]));
    let uri = out.split_whitespace().next().unwrap().to_owned();
    assert!(
        uri.starts_with(&format!("at://{}/coop.guild.data.text/", d.did)),
        "{out}"
    );
    assert_eq!(licences(), 1);
    // An existing public record put in the commons afterwards.
    let other = r#"{"$type": "coop.guild.data.text", "title": "Lighthouse log", "body": "Nightly entries.", "language": "fr", "createdAt": "2026-12-03T10:00:00.000Z"}"#;
    let plain = ok(&d.guild(&[
        "record",
        "add",
        "--collection",
        "coop.guild.data.text",
        "--json",
        other,
    ]));
    let lighthouse = plain
        .split_whitespace()
        .next()
        .and_then(|u| u.rsplit('/').next())
        .map(|k| format!("coop.guild.data.text/{k}"))
        .unwrap();
    ok(&d.guild(&["record", "commons", &lighthouse, "--licence", "eval-public"]));
    let e = d.guild(&[
        "record",
        "commons",
        "coop.guild.data.text/3aaaaaaaaaaaa",
        "--licence",
        "eval-public",
    ]);
    assert!(!e.status.success(), "a missing record put in the commons");
    assert_eq!(licences(), 2);

    let (s, body) = get("/commons");
    assert_eq!(s, 200);
    for want in [
        "Tide tables of 1911",
        "Lighthouse log",
        "Research, open",
        "only for: research",
        "com.atproto.sync.getRecord",
    ] {
        assert!(body.contains(want), "the commons page lacks {want:?}");
    }
    // Filters: licence, type, language, tag, text.
    for (query, has, lacks) in [
        ("?licence=eval-public", "Lighthouse log", "Tide tables"),
        ("?lang=en", "Tide tables", "Lighthouse log"),
        ("?tag=sea", "Tide tables", "Lighthouse log"),
        ("?q=NIGHTLY", "Lighthouse log", "Tide tables"),
        (
            "?type=coop.guild.data.file",
            "No record in the commons",
            "Tide tables",
        ),
    ] {
        let (s, body) = get(&format!("/commons{query}"));
        assert_eq!(s, 200);
        assert!(body.contains(has) && !body.contains(lacks), "{query}");
    }
    let (_, by) = get("/commons/by-licence/research-open");
    assert!(by.contains("Tide tables") && !by.contains("Lighthouse log"));

    // What crawlers read.
    let (_, robots) = get("/robots.txt");
    assert!(
        robots.contains("Content-Usage: train-ai=n, search=n"),
        "{robots}"
    );
    assert!(robots.contains("Disallow: /dashboard"), "{robots}");
    for t in ["research-open", "eval-public"] {
        let line = format!("License: {base}/commons/licences/{t}/v1/rsl.xml");
        assert!(robots.contains(&line), "{robots}");
        let (s, rsl) = get(&format!("/commons/licences/{t}/v1/rsl.xml"));
        assert_eq!(s, 200);
        assert!(rsl.contains("<rsl"), "{rsl}");
        let (s, odrl) = get(&format!("/commons/licences/{t}/v1/odrl.jsonld"));
        assert_eq!(s, 200);
        let odrl: Value = serde_json::from_str(&odrl).unwrap();
        assert!(odrl.get("@context").is_some());
    }
    assert_eq!(get("/commons/licences/research-open/v9/rsl.xml").0, 404);
    assert_eq!(get("/commons/licences/no-such/v1/rsl.xml").0, 404);
    assert_eq!(get("/commons/licences/research-open/v1/evil.txt").0, 404);
    let rules: Value = serde_json::from_str(&get("/.well-known/tdmrep.json").1).unwrap();
    let rules = rules.as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|r| r["tdm-reservation"] == 1));
    assert!(
        rules
            .iter()
            .any(|r| r["location"] == "/commons/by-licence/research-open*")
    );
    // The records themselves, as stock AT clients read them.
    let rkey = uri.rsplit('/').next().unwrap();
    let (s, rec) = get(&format!(
        "/xrpc/com.atproto.repo.getRecord?repo={}&collection=coop.guild.data.text&rkey={rkey}",
        d.did
    ));
    assert_eq!(s, 200, "{rec}");
    // The snapshot: downloaded, verified offline by `guild bundle verify`, its forms.
    let snap = http
        .get(format!("{base}/commons/commons-snapshot.car"))
        .send()
        .unwrap();
    assert_eq!(snap.status().as_u16(), 200);
    let snap = snap.bytes().unwrap().to_vec();
    let file = d.file("commons-snapshot.car");
    std::fs::write(&file, &snap).unwrap();
    let out = common::guild_plain(&["bundle", "verify", file.to_str().unwrap(), "--json"]);
    let report: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(report["kind"], "commons-snapshot");
    assert_eq!(report["records"], 2, "{report}");
    assert_eq!(report["authors"][0]["did"], d.did.as_str());
    let again = http
        .get(format!("{base}/commons/commons-snapshot.car"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        &again[..],
        &snap[..],
        "the same snapshot while the commons is unchanged"
    );
    let (s, croissant) = get("/commons/snapshot/croissant.json");
    assert_eq!(s, 200);
    let croissant: Value = serde_json::from_str(&croissant).unwrap();
    assert_eq!(croissant["distribution"][0]["sha256"], report["sha256"]);
    let (s, card) = get("/commons/snapshot/README.md");
    assert_eq!(s, 200);
    assert!(
        card.starts_with("---\n") && card.contains("guild bundle verify"),
        "{card}"
    );
    // A flipped byte: refused, with a reason.
    let mut bad = snap.clone();
    let n = bad.len();
    bad[n - 2] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    let out = common::guild_plain(&["bundle", "verify", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("FAILED verification"),
        "{}",
        common::stderr(&out)
    );

    // The public repos the node holds, as AT's listRepos gives them (here its own only).
    let (s, repos) = get("/xrpc/com.atproto.sync.listRepos");
    assert_eq!(s, 200, "{repos}");
    let repos: Value = serde_json::from_str(&repos).unwrap();
    let list = repos["repos"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{repos}");
    assert_eq!(list[0]["did"], d.did.as_str());
    let (_, latest) = get(&format!(
        "/xrpc/com.atproto.sync.getLatestCommit?did={}",
        d.did
    ));
    let latest: Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(list[0]["head"], latest["cid"]);
    assert!(repos.get("cursor").is_none());
    for bad in ["0", "1001", "x"] {
        let (s, body) = get(&format!("/xrpc/com.atproto.sync.listRepos?limit={bad}"));
        assert_eq!(s, 400, "{body}");
    }
    let (_, after) = get(&format!(
        "/xrpc/com.atproto.sync.listRepos?cursor={}",
        d.did
    ));
    assert!(after.contains("\"repos\":[]"), "{after}");
}
