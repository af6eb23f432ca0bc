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
