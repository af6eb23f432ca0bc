// Drives a real Guild node's pages in headless Chromium (playwright-core, Debian's chromium)
// and checks each with axe-core. Run by tests/tests/web.rs; prints one JSON object per line.
//
// Environment:
//   GUILD_LOGIN      a one-time dashboard login link (`guild dashboard --json`)
//   GUILD_CONTRACTS  the public contracts page of a steward's node
//   GUILD_TEMPLATE   the template whose consent the test flips through the consent page
//   GUILD_SHOTS      where to write the screenshots (<page>-<width>.png)
//   GUILD_CHROMIUM   the browser (default /usr/bin/chromium)
//   GUILD_EARNER_LOGIN
//                    a one-time login link of a member with payout lines (a steward): its
//                    statements page must draw both charts, with no axe violation
//   GUILD_STEWARD_COMMONS, GUILD_COMMONS_TITLE
//                    a steward's commons page, and the title of a work the member just put
//                    in the commons: the page must list it, with its licence, once the
//                    steward's node has replicated the member's public repo
import { createRequire } from "node:module";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axePath = require.resolve("axe-core/axe.min.js");
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const login = env("GUILD_LOGIN");
const contracts = env("GUILD_CONTRACTS");
const template = env("GUILD_TEMPLATE");
const shots = env("GUILD_SHOTS");
mkdirSync(shots, { recursive: true });
const base = login.split("/dashboard/login")[0];
const out = (o) => console.log(JSON.stringify(o));

const browser = await chromium.launch({
  executablePath: process.env.GUILD_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const first = await page.goto(login);
  if (!page.url().endsWith("/dashboard")) throw new Error(`the login link led to ${page.url()} (${first.status()})`);

  const pages = [
    ["overview", `${base}/dashboard`],
    ["works", `${base}/dashboard/works`],
    ["consent", `${base}/dashboard/consent`],
    ["collective", `${base}/dashboard/collective`],
    ["bundles", `${base}/dashboard/bundles`],
    ["statements", `${base}/dashboard/statements`],
    ["contracts", contracts],
    ["commons", `${base}/commons`],
  ];
  for (const [width, height] of [[1280, 900], [390, 844]]) {
    await page.setViewportSize({ width, height });
    for (const [name, url] of pages) {
      const t = Date.now();
      const resp = await page.goto(url, { waitUntil: "load" });
      const ms = Date.now() - t;
      await page.addScriptTag({ path: axePath });
      const result = await page.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ["violations"] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
      });
      const count = (i) => result.filter((v) => v.impact === i).length;
      // No horizontal scrolling of the page itself (tables scroll in their own box).
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await page.screenshot({ path: `${shots}/${name}-${width}.png`, fullPage: true });
      out({
        page: name, width, status: resp.status(), ms, overflow,
        axe: { critical: count("critical"), serious: count("serious"), moderate: count("moderate"), minor: count("minor") },
        violations: result,
      });
    }
  }

  // Flip one template's consent through the page: its button, the confirmation, the result.
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${base}/dashboard/consent`);
  const state = () => page.locator(`strong.state[data-template="${template}"]`).innerText();
  const before = await state();
  const section = page.locator("section.template", { has: page.locator(`strong.state[data-template="${template}"]`) });
  await section.locator("button[type=submit]").click();
  await page.waitForLoadState("load");
  const confirmTitle = await page.locator("h1").innerText();
  await page.screenshot({ path: `${shots}/consent-confirm-1280.png`, fullPage: true });
  await page.locator("form button[type=submit]", { hasText: /^Yes, / }).click();
  await page.waitForLoadState("load");
  const done = await page.locator("p.done").innerText();
  const after = await state();
  out({ consent: template, before, confirm: confirmTitle, done, after });

  // Import a folder of three text files through the works page, with its progress bar.
  const folder = mkdtempSync(join(tmpdir(), "guild-import-"));
  const stamp = Date.now();
  for (const i of [1, 2, 3]) {
    writeFileSync(`${folder}/imported-${stamp}-${i}.txt`, `Imported work ${i}, from a folder.`);
  }
  const posts = [];
  page.on("response", (r) => { if (r.request().method() === "POST") posts.push(r.status()); });
  await page.goto(`${base}/dashboard/works`);
  await page.setInputFiles("#folder", folder);
  const chosen = await page.locator("#folder").evaluate((e) => e.files.length);
  await page.locator("#import button[type=submit]").click();
  let status = "";
  for (let t = 0; t < 300 && !status.includes("3 of 3 imported"); t++) {
    status = await page.locator("#import-status").innerText().catch((e) => `(${e.message})`);
    await page.waitForTimeout(100);
  }
  const progress = await page.locator("#import-progress").evaluate((p) => [p.value, p.max]).catch(() => null);
  if (!status.includes("3 of 3 imported")) {
    out({ imported: 0, chosen, status, posts, progress, url: page.url() });
    throw new Error(`the import did not finish: ${status}`);
  }
  await page.screenshot({ path: `${shots}/works-import-1280.png`, fullPage: true });
  await page.goto(`${base}/dashboard/works?q=imported-${stamp}`);
  const listed = await page.locator("ul.records li").count();
  out({ imported: 3, progress, listed });
  rmSync(folder, { recursive: true, force: true });

  // The member's new commons work on a steward's commons page (the collective's commons).
  const stewardCommons = process.env.GUILD_STEWARD_COMMONS;
  const title = process.env.GUILD_COMMONS_TITLE;
  if (stewardCommons && title) {
    const item = page.locator("ul.records li", { hasText: title });
    let found = 0;
    for (let t = 0; t < 150 && found === 0; t++) {
      await page.goto(`${stewardCommons}?q=${encodeURIComponent(title)}`, { waitUntil: "load" });
      found = await item.count();
      if (found === 0) await page.waitForTimeout(200);
    }
    const licence = found ? await item.first().locator("strong").first().innerText() : "";
    const provenance = found ? await item.first().locator("details dl").textContent() : "";
    await page.screenshot({ path: `${shots}/steward-commons-1280.png`, fullPage: true });
    out({ stewardCommons: found, licence, provenance });
    // Download the commons snapshot through the page's link, as a visitor would.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.locator("p.snapshot a", { hasText: "snapshot (CAR)" }).click(),
    ]);
    const saved = join(shots, "..", "commons-snapshot.car");
    await download.saveAs(saved);
    out({ snapshot: saved, name: download.suggestedFilename() });
  }

  // A member with earnings: the statements page's two server-side charts.
  const earner = process.env.GUILD_EARNER_LOGIN;
  if (earner) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const p2 = await ctx.newPage();
    await p2.goto(earner);
    const statementsUrl = `${earner.split("/dashboard/login")[0]}/dashboard/statements`;
    for (const [width, height] of [[1280, 900], [390, 844]]) {
      await p2.setViewportSize({ width, height });
      const resp = await p2.goto(statementsUrl, { waitUntil: "load" });
      await p2.addScriptTag({ path: axePath });
      const result = await p2.evaluate(async () => {
        const r = await window.axe.run(document, { resultTypes: ["violations"] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
      });
      const serious = result.filter((v) => v.impact === "serious" || v.impact === "critical").length;
      const charts = await p2.locator("figure svg[role=img]").count();
      const bars = await p2.locator("figure svg[role=img] rect").count();
      const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await p2.screenshot({ path: `${shots}/statements-earner-${width}.png`, fullPage: true });
      out({ earner: width, status: resp.status(), charts, bars, serious, overflow, violations: result });
    }
    await ctx.close();
  }
} finally {
  await browser.close();
}
