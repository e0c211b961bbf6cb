// The console in a real browser (Debian's Chromium, driven by Playwright) against a
// real satellite: crates/satellite/tests/console_browser.rs starts `satellite run api`
// with the console, a loop, an accounting process and storage nodes, then runs this
// with where they are:
//
//   CONSOLE_URL   the console          MAIL_DIR   where its mail files go
//   UPLINK        the uplink CLI       ARTIFACTS  where screenshots go
//   TALLY_URLS    worker triggers to POST, in order, for a tally (loop, accounting)
//   TRIGGER_TOKEN their bearer token
//
// It signs up, confirms, logs in, makes a project, an API key with a caveat and
// grants in the page, uses them with the uplink CLI, lists the upload in the page,
// sees its usage after a tally, revokes the key and sees the upload refused, and
// tries what an attacker would: XSS in a name, requests without the CSRF token,
// another account's project, a forged and an ended session. Exits non-zero on the
// first failed check.

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through cargo test --test console_browser)`);
  return v;
};
const BASE = env("CONSOLE_URL");
const MAIL_DIR = env("MAIL_DIR");
const UPLINK = env("UPLINK");
const ARTIFACTS = env("ARTIFACTS");
const TALLY_URLS = env("TALLY_URLS").split(",");
const TRIGGER_TOKEN = env("TRIGGER_TOKEN");
const PASSWORD = "correct horse battery";
mkdirSync(ARTIFACTS, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "orbit-console-e2e-"));

let shot = 0;
async function screenshot(page, name) {
  shot++;
  await page.screenshot({ path: join(ARTIFACTS, `${String(shot).padStart(2, "0")}-${name}.png`), fullPage: true });
}

/** The newest mail to `to`, as written by the console's file sender. */
function lastMail(to) {
  const files = readdirSync(MAIL_DIR)
    .map((f) => join(MAIL_DIR, f))
    .filter((f) => readFileSync(f, "utf8").includes(`To: ${to}`))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
  assert.ok(files.length > 0, `no mail to ${to} in ${MAIL_DIR}`);
  return readFileSync(files[files.length - 1], "utf8");
}

function linkIn(mail) {
  const m = mail.match(/https?:\/\/\S+token=[0-9a-f]+/);
  assert.ok(m, `no link in the mail:\n${mail}`);
  return m[0];
}

/** Runs the uplink CLI with `access`; returns { ok, out }. */
function uplink(access, ...args) {
  const r = spawnSync(UPLINK, [...args, "--access", access], { encoding: "utf8", env: { ...process.env, ORBIT_ACCESS: "" } });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

async function tally() {
  for (const url of TALLY_URLS) {
    const r = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${TRIGGER_TOKEN}` } });
    assert.equal(r.status, 200, `${url}: ${await r.text()}`);
  }
}

/** Every input and text area on the page has a label a screen reader reads. */
async function labelled(page, where) {
  const bare = await page.$$eval("input, textarea, select", (els) =>
    els.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")).map((e) => e.outerHTML),
  );
  assert.deepEqual(bare, [], `unlabelled fields on ${where}`);
}

/** Nothing on the page is wider than a phone's screen. */
async function fitsWidth(page, where) {
  const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  assert.ok(scroll <= client + 1, `${where} scrolls sideways at phone width (${scroll} > ${client})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const failures = [];
try {
  const ctx = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 900 } });
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const page = await ctx.newPage();
  // No page may ever open a dialog: a script injected through a name would.
  page.on("dialog", (d) => {
    failures.push(`a dialog opened: ${d.message()}`);
    d.dismiss();
  });
  page.on("pageerror", (e) => failures.push(`script error: ${e.message}`));
  page.on("console", (m) => {
    // Refused requests are part of the checks; anything else logged as an error is not.
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) failures.push(`console error: ${m.text()}`);
  });

  // Sign up, confirm from the mail, log in (by keyboard alone).
  await page.goto("/");
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await labelled(page, "log in");
  await screenshot(page, "login");
  await page.getByRole("link", { name: "Create an account" }).click();
  const email = "ada@example.com";
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Password again").fill(PASSWORD);
  await labelled(page, "sign up");
  await screenshot(page, "signup");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "Check your mail" }).waitFor();
  await screenshot(page, "signup-sent");
  const confirm = linkIn(lastMail(email));
  assert.ok(confirm.startsWith(`${BASE}/confirm?token=`), confirm);
  await page.goto(confirm);
  await page.getByText(`${email} is confirmed.`).waitFor();
  await screenshot(page, "confirmed");

  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "wrong email or password" }).waitFor();
  await screenshot(page, "login-wrong-password");
  await page.getByLabel("Email").fill("");
  await page.getByLabel("Password").fill("");
  await page.getByLabel("Email").focus();
  await page.keyboard.type(email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Projects" }).waitFor();
  await labelled(page, "projects");

  // A name that is markup stays text; renaming and deleting an empty project work.
  const xss = `<img src=x onerror="__pwned=1"><script>__pwned=2</script>`;
  await page.getByLabel("Project name").fill(xss);
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { level: 1, name: xss }).waitFor();
  assert.equal(await page.evaluate(() => window.__pwned), undefined, "markup in a project name ran");
  assert.equal(await page.locator("main img, main script").count(), 0, "markup in a project name became elements");
  await screenshot(page, "project-xss-name");
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByLabel("Project name").fill("Scratch");
  await page.getByRole("button", { name: "Rename" }).click();
  await page.getByRole("heading", { level: 1, name: "Scratch" }).waitFor();
  await page.getByRole("button", { name: "Delete project" }).click();
  await page.getByRole("alert").filter({ hasText: "tick the box" }).waitFor();
  await page.getByLabel("Yes, delete Scratch").check();
  await screenshot(page, "project-settings");
  await page.getByRole("button", { name: "Delete project" }).click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "Scratch" }).count(), 0, "the deleted project is listed");

  await page.getByLabel("Project name").fill("Holiday photos");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { level: 1, name: "Holiday photos" }).waitFor();
  const projectId = new URL(page.url()).pathname.split("/")[2];
  assert.match(projectId, /^p[0-9a-f]{24}$/);

  // An API key only for the bucket "photos"; shown once, copied with the button.
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Key name").fill("laptop");
  await page.getByLabel("Only this bucket (optional)").fill("photos");
  await labelled(page, "API keys");
  await page.getByRole("button", { name: "Create key" }).click();
  const keyBox = page.getByLabel("API key", { exact: true });
  await keyBox.waitFor();
  const apiKey = await keyBox.inputValue();
  assert.match(apiKey, /^orbit1[0-9a-f]+$/);
  await page.getByRole("button", { name: "Copy api key" }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), apiKey, "the copy button copies the key");
  await page.getByRole("cell", { name: /bucket photos only/ }).waitFor();
  await screenshot(page, "api-keys");

  // A grant made in the page, from the key and a passphrase.
  await page.getByRole("button", { name: "Make an access grant with this key" }).click();
  await page.getByRole("heading", { name: "Access grants" }).waitFor();
  assert.equal(await page.getByLabel("API key").inputValue(), apiKey, "the new key is filled in");
  const passphrase = "the quick brown fox";
  await page.getByLabel("Passphrase", { exact: true }).fill(passphrase);
  await page.getByLabel("Passphrase again").fill(passphrase);
  await labelled(page, "access grants");
  await page.getByRole("button", { name: "Make access grant" }).click();
  const grantBox = page.getByLabel("Access grant", { exact: true });
  await grantBox.waitFor();
  const grant = await grantBox.inputValue();
  assert.match(grant, /^orbit-access1[0-9a-f]+$/);
  const commands = await page.getByLabel("Command line").inputValue();
  assert.ok(commands.includes(`export ORBIT_ACCESS=${grant}`), commands);
  await screenshot(page, "access-grant");
  // The passphrase went nowhere: no request the page made carried it.
  // (Checked below by listening to every request of the next grant.)

  // The grant works with the uplink CLI, and its caveat holds.
  const file = join(work, "cat.jpg");
  const data = Buffer.alloc(100_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
  writeFileSync(file, data);
  let r = uplink(grant, "mb", "orbit://photos");
  assert.ok(r.ok, r.out);
  r = uplink(grant, "cp", "--quiet", file, "orbit://photos/2026/cat.jpg");
  assert.ok(r.ok, r.out);
  r = uplink(grant, "cp", "--quiet", "orbit://photos/2026/cat.jpg", join(work, "back.jpg"));
  assert.ok(r.ok, r.out);
  assert.ok(readFileSync(join(work, "back.jpg")).equals(data), "the download differs from the upload");
  r = uplink(grant, "mb", "orbit://elsewhere");
  assert.ok(!r.ok && r.out.includes("allows only bucket"), `a key for photos made another bucket: ${r.out}`);

  // A grant narrowed in the page to keys under public/, read-only: its prefix is
  // encrypted in the page, and the satellite holds it to that.
  const sent = [];
  page.on("request", (req) => sent.push(`${req.url()} ${req.postData() ?? ""}`));
  await page.getByLabel("API key").fill(apiKey);
  await page.getByLabel("Passphrase", { exact: true }).fill(passphrase);
  await page.getByLabel("Passphrase again").fill(passphrase);
  await page.getByLabel("Only bucket").fill("photos");
  await page.getByLabel("Only keys starting with").fill("2026/");
  await page.getByLabel("Read-only").check();
  await page.getByRole("button", { name: "Make access grant" }).click();
  await page.getByRole("status").filter({ hasText: "Made." }).waitFor();
  const narrow = await page.getByLabel("Access grant", { exact: true }).inputValue();
  assert.notEqual(narrow, grant);
  assert.ok(!sent.some((s) => s.includes(passphrase)), `the passphrase left the page: ${sent.join("\n")}`);
  r = uplink(narrow, "ls", "orbit://photos/2026/");
  assert.ok(r.ok && r.out.includes("cat.jpg"), r.out);
  r = uplink(narrow, "cp", "--quiet", "orbit://photos/2026/cat.jpg", join(work, "again.jpg"));
  assert.ok(r.ok, r.out);
  r = uplink(narrow, "cp", "--quiet", file, "orbit://photos/2026/dog.jpg");
  assert.ok(!r.ok && r.out.includes("read-only"), `a read-only grant uploaded: ${r.out}`);
  r = uplink(narrow, "cp", "--quiet", "orbit://photos/2025/x.jpg", join(work, "x.jpg"));
  assert.ok(!r.ok && r.out.includes("keys starting with"), `a grant for 2026/ read 2025/: ${r.out}`);

  // The buckets page lists the upload, its name and size decrypted in the page.
  await page.getByRole("button", { name: "Browse buckets with it" }).click();
  await page.getByRole("heading", { name: "Buckets" }).waitFor();
  await page.getByRole("button", { name: "photos" }).click();
  const objects = page.getByRole("table", { name: "Objects in photos" });
  await objects.getByRole("cell", { name: "2026/cat.jpg" }).waitFor();
  await objects.getByRole("cell", { name: "100.0 KB" }).waitFor();
  await screenshot(page, "buckets");

  // Usage after a tally: the stored bytes and a bar per rolled-up day.
  await tally();
  await page.getByRole("link", { name: "Usage" }).click();
  await page.getByRole("heading", { name: "Usage" }).waitFor();
  await page.getByRole("button", { name: "Refresh" }).click();
  const stored = page.getByTestId("stored-bytes");
  await stored.waitFor();
  const storedText = await stored.textContent();
  assert.ok(storedText && storedText !== "0 B", `stored after a tally: ${storedText}`);
  const bars = await page.locator("figure.chart").first().locator("rect").count();
  assert.ok(bars >= 1, "the storage chart has no bar after a tally");
  await page.getByRole("heading", { name: /^Invoice for / }).waitFor();
  await screenshot(page, "usage");

  // Revoking the key ends the grants made from it.
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByRole("button", { name: "Revoke laptop" }).click();
  await page.getByRole("button", { name: "Revoke laptop now" }).click();
  await page.getByRole("cell", { name: /^revoked / }).waitFor();
  await screenshot(page, "api-key-revoked");
  r = uplink(grant, "cp", "--quiet", file, "orbit://photos/after-revoke.jpg");
  assert.ok(!r.ok && r.out.includes("revoked"), `a revoked key uploaded: ${r.out}`);
  r = uplink(narrow, "ls", "orbit://photos/2026/");
  assert.ok(!r.ok && r.out.includes("revoked"), `a grant narrowed from a revoked key listed: ${r.out}`);

  // State changes without the session's CSRF token change nothing.
  const before = await page.evaluate(async () => (await (await fetch("/api/v1/projects")).json()).projects.length);
  const forged = await page.evaluate(async () => {
    const r = await fetch("/api/v1/projects", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: "forged" }),
    });
    return r.status;
  });
  assert.equal(forged, 403, "a state change without the CSRF token");
  const asForm = await page.evaluate(async () => {
    const r = await fetch("/api/v1/projects", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "name=forged",
    });
    return r.status;
  });
  assert.ok(asForm === 403 || asForm === 415, `a form post: ${asForm}`);
  const after = await page.evaluate(async () => (await (await fetch("/api/v1/projects")).json()).projects.length);
  assert.equal(after, before, "a forged request made a project");

  // Account page: change the password; billing says this satellite takes no payments.
  await page.getByRole("link", { name: "Account" }).click();
  await page.getByLabel("Current password").fill(PASSWORD);
  const newPassword = "a new password, longer";
  await page.getByLabel("New password").fill(newPassword);
  await labelled(page, "account");
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("status").filter({ hasText: "Changed." }).waitFor();
  await page.getByText("This satellite does not take payments.").waitFor();
  await screenshot(page, "account");

  // Another account cannot see or touch Ada's project, in the page or by request.
  const eveCtx = await browser.newContext({ baseURL: BASE });
  const eve = await eveCtx.newPage();
  const eveEmail = "eve@example.com";
  await eve.goto("/signup");
  await eve.getByLabel("Email").fill(eveEmail);
  await eve.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await eve.getByLabel("Password again").fill(PASSWORD);
  await eve.getByRole("button", { name: "Create account" }).click();
  await eve.getByRole("heading", { name: "Check your mail" }).waitFor();
  await eve.goto(linkIn(lastMail(eveEmail)));
  await eve.getByText("is confirmed").waitFor();
  await eve.goto("/login");
  await eve.getByLabel("Email").fill(eveEmail);
  await eve.getByLabel("Password").fill(PASSWORD);
  await eve.getByRole("button", { name: "Log in" }).click();
  await eve.getByRole("heading", { name: "Projects" }).waitFor();
  await eve.goto(`/projects/${projectId}/keys`);
  await eve.getByRole("alert").waitFor();
  assert.equal(await eve.getByText("Holiday photos").count(), 0, "Eve sees Ada's project");
  await screenshot(eve, "other-account");
  const eveTries = await eve.evaluate(async (id) => {
    const me = await (await fetch("/api/v1/me")).json();
    const h = { "Content-Type": "application/json", "X-CSRF-Token": me.csrf };
    return Promise.all([
      fetch(`/api/v1/projects/${id}`).then((r) => r.status),
      fetch(`/api/v1/projects/${id}/keys`).then((r) => r.status),
      fetch(`/api/v1/projects/${id}/buckets`).then((r) => r.status),
      fetch(`/api/v1/projects/${id}/usage`).then((r) => r.status),
      fetch(`/api/v1/projects/${id}`, { method: "PATCH", headers: h, body: JSON.stringify({ name: "mine" }) }).then((r) => r.status),
      fetch(`/api/v1/projects/${id}`, { method: "DELETE", headers: h }).then((r) => r.status),
    ]);
  }, projectId);
  assert.deepEqual(eveTries, [404, 404, 404, 404, 404, 404], "Eve reached Ada's project");
  await page.goto("/");
  await page.getByRole("link", { name: "Holiday photos" }).waitFor();

  // Phone width: the pages fit, the same session.
  const phone = await browser.newContext({
    baseURL: BASE,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    storageState: await ctx.storageState(),
  });
  const p = await phone.newPage();
  for (const [path, heading, name] of [
    ["/", "Projects", "phone-projects"],
    [`/projects/${projectId}/usage`, "Usage", "phone-usage"],
    [`/projects/${projectId}/keys`, "API keys", "phone-keys"],
    [`/projects/${projectId}/access`, "Access grants", "phone-access"],
    ["/account", "Account", "phone-account"],
  ]) {
    await p.goto(path);
    await p.getByRole("heading", { name: heading, exact: true }).first().waitFor();
    await fitsWidth(p, path);
    await screenshot(p, name);
  }

  // A session that ended is no use, nor is a forged one: the page asks to log in.
  const cookie = (await ctx.cookies()).find((c) => c.name === "orbit_session");
  assert.ok(cookie && cookie.httpOnly && cookie.secure && cookie.sameSite === "Strict", JSON.stringify(cookie));
  assert.equal(await page.evaluate(() => document.cookie.includes("orbit_session")), false, "scripts can read the session");
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await ctx.addCookies([{ ...cookie }]);
  await page.goto("/account");
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await ctx.addCookies([{ ...cookie, value: `${cookie.value.split(".")[0]}.${"0".repeat(64)}` }]);
  await page.goto("/");
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  const ended = await page.evaluate(async () => (await fetch("/api/v1/projects")).status);
  assert.equal(ended, 401);
  await screenshot(page, "session-ended");
  // The phone's copy of the session ended with it.
  await p.goto("/");
  await p.getByRole("heading", { name: "Log in" }).waitFor();

  // The new password logs in; the old one does not.
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "wrong email or password" }).waitFor();
  await page.getByLabel("Password").fill(newPassword);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
} catch (e) {
  failures.push(e.stack ?? String(e));
  // What each page showed when it failed.
  for (const [i, c] of browser.contexts().entries()) {
    for (const [j, p] of c.pages().entries()) {
      await p.screenshot({ path: join(ARTIFACTS, `failed-${i}-${j}.png`), fullPage: true }).catch(() => {});
    }
  }
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n\n"));
  process.exit(1);
}
console.log(`console e2e: every check passed; ${shot} screenshots in ${ARTIFACTS}`);
