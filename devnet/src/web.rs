//! The demo's web step: a member's dashboard through its one-time login link, and a
//! steward's public contracts page, fetched over HTTP from the running nodes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::Story;

fn http() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot make an HTTP client")
}

/// GETs `url` (with a cookie): its status and body.
fn get(
    c: &reqwest::blocking::Client,
    url: &str,
    cookie: Option<&str>,
) -> Result<(u16, String, Option<String>)> {
    let mut req = c.get(url);
    if let Some(k) = cookie {
        req = req.header(reqwest::header::COOKIE, k);
    }
    let resp = req.send().with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let set_cookie = resp
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = resp
        .text()
        .with_context(|| format!("GET {url}: the body"))?;
    Ok((status, body, set_cookie))
}

impl Story {
    /// A member opens the dashboard with `guild dashboard`'s link; a steward's contracts page
    /// lists the agreement.
    pub(super) fn web(&mut self) -> Result<()> {
        let t = Instant::now();
        let d = &self.d;
        let stewards = self.stewards();
        let member = (0..self.n).find(|i| !stewards.contains(i)).unwrap_or(0);
        let steward = stewards.first().copied().unwrap_or(0);
        let out = d.guild(member, &["dashboard", "--json"])?;
        let links: Value = serde_json::from_str(out.trim()).context("guild dashboard --json")?;
        let login = links["login"]
            .as_str()
            .ok_or_else(|| anyhow!("no login link in {out}"))?;
        let c = http()?;
        let (status, _, cookie) = get(&c, login, None)?;
        let cookie = match (status, cookie) {
            (303, Some(k)) => k,
            (s, _) => bail!(
                "check `dashboard`: the login link answered {s}, not 303 with a session cookie"
            ),
        };
        let base = login
            .split("/dashboard/login")
            .next()
            .ok_or_else(|| anyhow!("login link {login}"))?;
        let did = &d.nodes[member].did;
        let mut pages = Vec::new();
        for page in [
            "",
            "/works",
            "/consent",
            "/collective",
            "/bundles",
            "/statements",
        ] {
            let url = format!("{base}/dashboard{page}");
            let (s, body, _) = get(&c, &url, Some(&cookie))?;
            if s != 200 || !body.contains(did.as_str()) {
                bail!("check `dashboard`: {url} answered {s} (or without the member's DID)");
            }
            pages.push(body.len());
        }
        let (again, _, _) = get(&c, login, None)?;
        if again != 401 {
            bail!("check `dashboard`: the used login link answered {again}, not 401");
        }
        let (anon, _, _) = get(&c, &format!("{base}/dashboard"), None)?;
        if anon != 401 {
            bail!("check `dashboard`: the dashboard without a session answered {anon}, not 401");
        }
        // The contracts page of a steward, without any token.
        let api = d.nodes[steward]
            .api
            .clone()
            .ok_or_else(|| anyhow!("{} is not running", d.nodes[steward].name))?;
        let contracts = format!("{}/contracts", api.trim_end_matches('/'));
        let (s, body, _) = get(&c, &contracts, None)?;
        let list = d.nodes[steward].query("coop.guild.agreement.listAgreements", &[])?;
        let builders: Vec<&str> = list["agreements"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g["builder"].as_str()).collect())
            .unwrap_or_default();
        if s != 200 || builders.is_empty() || !builders.iter().all(|b| body.contains(b)) {
            bail!("check `contracts`: {contracts} answered {s} without every agreement's builder");
        }
        // The member puts a work in the commons; their node's public commons page lists it
        // with its licence, and robots.txt names the licence's RSL form.
        let work = r#"{"$type": "coop.guild.data.text", "title": "Notes on the tides (commons)", "body": "Observations anyone may use for research, on the Research-Open terms.", "language": "en", "tags": ["sea"], "createdAt": "2026-12-03T10:00:00.000Z"}"#;
        let published = d.guild(
            member,
            &[
                "record",
                "add",
                "--commons",
                "--licence",
                "research-open",
                "--collection",
                "coop.guild.data.text",
                "--json",
                work,
            ],
        )?;
        let commons = format!("{base}/commons");
        let (s, page, _) = get(&c, &commons, None)?;
        if s != 200
            || !page.contains("Notes on the tides (commons)")
            || !page.contains("Research, open")
        {
            bail!(
                "check `commons`: {commons} answered {s} without the published work and its licence"
            );
        }
        let (s, robots, _) = get(&c, &format!("{base}/robots.txt"), None)?;
        if s != 200 || !robots.contains("/commons/licences/research-open/v1/rsl.xml") {
            bail!("check `commons`: robots.txt answered {s} without the licence's RSL line");
        }
        let uri = published
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        // node-1's public address (TLS, its own certificate) lists the member's work on its
        // collective-wide commons page once its node has replicated the member's public repo,
        // and serves that repo to stock AT clients (`com.atproto.sync.listRepos`, getRecord).
        let public = super::feed::public_url(&d.nodes[0])?;
        let pem = std::fs::read(d.nodes[0].dir.join(super::feed::TLS_CERT))
            .context("node-1's certificate")?;
        let tls = reqwest::blocking::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&pem).context("node-1's certificate")?,
            )
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot make an HTTP client")?;
        let steward_commons = format!("{}/commons", public.trim_end_matches('/'));
        let replicated =
            d.wait_for("the member's commons work on node-1's commons page", |_| {
                let (s, page, _) = get(&tls, &steward_commons, None)?;
                Ok(s == 200
                    && page.contains("Notes on the tides (commons)")
                    && page.contains(did.as_str()))
            })?;
        let list_repos = format!(
            "{}/xrpc/com.atproto.sync.listRepos",
            public.trim_end_matches('/')
        );
        let (s, repos, _) = get(&tls, &list_repos, None)?;
        if s != 200 || !repos.contains(did.as_str()) {
            bail!("check `commons`: {list_repos} answered {s} without the member's public repo");
        }
        let rkey = uri.rsplit('/').next().unwrap_or_default();
        let record = format!(
            "{}/xrpc/com.atproto.repo.getRecord?repo={did}&collection=coop.guild.data.text&rkey={rkey}",
            public.trim_end_matches('/')
        );
        let (s, body, _) = get(&tls, &record, None)?;
        if s != 200 || !body.contains("Notes on the tides (commons)") {
            bail!("check `commons`: {record} answered {s} without the record");
        }
        // Anyone downloads node-1's commons snapshot and verifies it offline.
        let snapshot_url = format!(
            "{}/commons/commons-snapshot.car",
            public.trim_end_matches('/')
        );
        let resp = tls
            .get(&snapshot_url)
            .send()
            .with_context(|| format!("GET {snapshot_url}"))?;
        if resp.status().as_u16() != 200 {
            bail!(
                "check `snapshot`: {snapshot_url} answered {}",
                resp.status()
            );
        }
        let bytes = resp.bytes().context("the snapshot's bytes")?;
        let file = d.root.join("builder").join("commons-snapshot.car");
        std::fs::write(&file, &bytes)
            .with_context(|| format!("cannot write {}", file.display()))?;
        let verified = d.guild_bare(&["bundle", "verify", &file.to_string_lossy(), "--json"])?;
        let verified: Value =
            serde_json::from_str(verified.trim()).context("bundle verify --json: not JSON")?;
        let authors: Vec<&str> = verified["authors"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["did"].as_str()).collect())
            .unwrap_or_default();
        if verified["kind"] != "commons-snapshot" || !authors.contains(&did.as_str()) {
            bail!("check `snapshot`: the verified snapshot lacks the member's work: {verified}");
        }
        self.steps.done(
            t.elapsed(),
            &format!(
                "{}'s dashboard opened by its one-time link (6 pages, {} KB of HTML; the link refused a second time, the pages without a session); {}'s public contracts page lists {} agreement(s); the member put a work in the commons ({}, Research-Open): their public commons page lists it with its licence and robots.txt names its RSL form; node-1 replicated the member's public repo and lists the work on its collective-wide commons page at its public address ({} ms after the commit), where stock AT reads (listRepos, getRecord) serve it; its commons snapshot (records: {}; {} KB) downloaded and verified offline with `guild bundle verify`",
                d.nodes[member].name,
                pages.iter().sum::<usize>() / 1024,
                d.nodes[steward].name,
                builders.len(),
                super::licensing::short(&uri),
                replicated.as_millis(),
                verified["records"],
                bytes.len() / 1024
            ),
            None,
        );
        println!("      commons page of {}: {commons}", d.nodes[member].name);
        println!("      collective commons of node-1 (public address): {steward_commons}");
        println!(
            "      its snapshot: {snapshot_url} (verified copy: {})",
            file.display()
        );
        println!(
            "      dashboard of {}: `guild dashboard --data-dir {}` prints a one-time link like {base}/dashboard/login?code=…",
            d.nodes[member].name,
            d.nodes[member].dir.display()
        );
        println!(
            "      contracts page of {}: {contracts}",
            d.nodes[steward].name
        );
        Ok(())
    }
}
