// Drives the web UI in Debian's Chromium through playwright-core, as tests/web_ui.rs asks:
// the environment names the server, the users, what to expect and where screenshots go.
// Exits non-zero with what failed; prints one line per step passed.
"use strict";
const { chromium } = require("playwright-core");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("GANTRY_URL");
const SHOTS = env("SCREENSHOTS");
const ADMIN_PASSWORD = env("ADMIN_PASSWORD");
const DEV_USER = env("DEV_USER");
const DEV_PASSWORD = env("DEV_PASSWORD");
const VULNERABILITY = env("EXPECT_VULNERABILITY");

function check(condition, what) {
  if (!condition) throw new Error(`failed: ${what}`);
  console.log(`ok: ${what}`);
}

async function signIn(page, user, password) {
  await page.goto(`${BASE}/`);
  check(page.url().includes("/login"), `${user}: an anonymous visit goes to the sign-in form`);
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${BASE}/`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await admin.newPage();
    const dialogs = [];
    // Confirmations of what cannot be undone are accepted (and counted); any other dialog
    // is one a page must never open.
    const confirmations = [];
    page.on("dialog", async (dialog) => {
      if (dialog.type() === "confirm") {
        confirmations.push(dialog.message());
        await dialog.accept();
      } else {
        dialogs.push(dialog.message());
        await dialog.dismiss();
      }
    });
    const violations = [];
    page.on("console", (message) => {
      if (message.type() === "error") violations.push(message.text());
    });
    // Does what should be refused; its own 400 or 403 is then the one error the console may
    // report.
    const refused = async (act) => {
      const seen = violations.length;
      await Promise.all([page.waitForEvent("framenavigated"), act()]);
      await page.waitForLoadState("load");
      const reported = violations.splice(seen);
      check(reported.every((m) => /status of 40[03] /.test(m)), `the refusal is the only error reported (${reported.join("; ")})`);
    };

    await signIn(page, "admin", ADMIN_PASSWORD);
    const cookie = (await admin.cookies()).find((c) => c.name === "gantry_session");
    check(cookie && cookie.httpOnly && cookie.sameSite === "Lax", "the session cookie is HttpOnly and SameSite=Lax");
    await page.screenshot({ path: `${SHOTS}/projects.png`, fullPage: true });
    check(await page.getByRole("link", { name: "team-a" }).isVisible(), "the projects page lists team-a");
    const teamA = page.locator("tbody tr", { hasText: "team-a" });
    check((await teamA.locator("td.repositories").innerText()) === "1", "the projects page counts team-a's one repository");
    check(/^\d{4}-\d\d-\d\d /.test(await teamA.locator("td.pushed").innerText()), "the projects page shows team-a's last push");

    // Search, then into the project and the repository.
    await page.getByLabel("Search projects").fill("team-a");
    await page.getByRole("button", { name: "Search" }).click();
    check(await page.getByRole("link", { name: "team-b" }).count() === 0, "the search keeps team-a only");
    await page.getByRole("link", { name: "team-a" }).click();
    await page.getByRole("link", { name: "team-a/app" }).click();
    await page.screenshot({ path: `${SHOTS}/repository.png`, fullPage: true });
    const row = page.locator("tbody tr", { hasText: "v1" });
    check(await row.locator("td.vulnerabilities").innerText().then((t) => /critical|high|medium|low|unknown/.test(t)),
      "the repository page counts v1's vulnerabilities by severity");
    check(/unsigned|signed/.test(await row.locator("td.signed").innerText()), "the repository page shows v1's signature state");
    check((await row.locator("code.pull").innerText()).includes("team-a/app:v1"), "a pull command is shown");

    // The artifact: vulnerabilities, and the hostile label as text.
    await row.locator("a code").click();
    await page.waitForURL(/\/artifact\?/);
    await page.screenshot({ path: `${SHOTS}/artifact.png`, fullPage: true });
    check(await page.getByText(VULNERABILITY).count() > 0, `the artifact page lists ${VULNERABILITY}`);
    check(/^linux\/\w+/.test(await page.locator("dl.facts dd").nth(3).innerText()), "a single image's platform is shown, from its config");
    const label = page.locator("table.labels td", { hasText: "<img src=x onerror=alert(1)>" });
    check(await label.count() === 1, "the hostile label is shown as its text");
    check(await page.locator("table.labels img").count() === 0, "the hostile label made no element");
    check(dialogs.length === 0, "no dialog fired");
    const spdx = await page.locator("p.sbom a", { hasText: "SPDX" }).first().getAttribute("href");
    const document = await (await page.request.get(`${BASE}${spdx}`)).json();
    check(document.spdxVersion === "SPDX-2.3" && JSON.stringify(document).includes("openssl"),
      "the SBOM link shows the image's SPDX document");
    const download = await page.request.get(`${BASE}${spdx}&download=1`);
    check((download.headers()["content-disposition"] || "").startsWith("attachment"), "the SBOM downloads as a file");

    // The size analysis: layers and the largest files.
    await page.getByRole("link", { name: "Size analysis" }).first().click();
    await page.waitForURL(/\/artifact\/analysis\?/);
    await page.screenshot({ path: `${SHOTS}/analysis.png`, fullPage: true });
    check((await page.locator("table.largest").innerText()).includes("os-release"), "the size analysis lists the largest files");

    // Retention: a dry run shows exactly what would go, and nothing goes.
    await page.goto(`${BASE}/projects/team-a/retention`);
    await page.getByRole("button", { name: "Preview (dry run)" }).click();
    await page.screenshot({ path: `${SHOTS}/retention.png`, fullPage: true });
    const plan = await page.locator("table.plan").innerText();
    check(plan.includes("tag v1") && !plan.includes("tag v2"), "the dry run would delete v1 and keep v2");
    check((await page.locator("table.retention-rules").innerText()).includes("the 1 most recently pushed"),
      "the retention page states the policy's rules in words");
    check((await page.locator("table.retention-runs").innerText()).includes("dry run"), "the dry run is listed among the recent runs");

    // A CI token: created with its secret shown once, then revoked.
    await page.goto(`${BASE}/projects/team-a/tokens`);
    await page.getByLabel("Repository (optional", { exact: false }).fill("app");
    await page.getByRole("button", { name: "Create token" }).click();
    const secret = await page.locator("#secret").innerText();
    check(secret.startsWith("gantry_ci_"), "a new CI token's secret is shown");
    await page.screenshot({ path: `${SHOTS}/tokens.png`, fullPage: true });
    await page.goto(`${BASE}/projects/team-a/tokens`);
    check(await page.locator("#secret").count() === 0, "the secret is not shown again");
    check((await page.locator("main table").innerText()).includes("team-a/app"), "a repository named without its project is the project's");
    await page.getByRole("button", { name: "Revoke" }).first().click();
    await page.waitForURL(/\/tokens\?done=revoked$/);
    check(await page.getByText("revoked").count() > 0, "the token is revoked");
    check((await page.locator("p.notice").innerText()).startsWith("Revoked"), "the page says what the form did");

    // The project's audit log shows the token's creation; usage is charted; the
    // administrators' page lists users and jobs.
    await page.goto(`${BASE}/projects/team-a/audit`);
    check((await page.locator("table.audit").innerText()).includes("ci.create"), "the audit log lists the token's creation");
    await page.goto(`${BASE}/projects/team-a/usage`);
    await page.screenshot({ path: `${SHOTS}/usage.png`, fullPage: true });
    check(await page.locator("figure.chart svg path").count() >= 1, "usage is charted as SVG");
    await page.goto(`${BASE}/projects/team-a/settings`);
    await page.screenshot({ path: `${SHOTS}/settings.png`, fullPage: true });
    const settings = await page.locator("main").innerText();
    check(["Quota", "Tag rules", "Robot accounts", "Webhooks", "Replication and preheat rules"].every((s) => settings.includes(s)),
      "the settings page shows quota, policies, webhooks, robots and replication rules");
    // Settings change through their forms, each read back from the page the API's answer
    // renders: tag rules, a retention rule, the gate's wait, an allowlist entry; a key that is
    // no key is refused with the API's reason.
    const saved = async (button) => {
      await Promise.all([page.waitForEvent("framenavigated"), page.getByRole("button", { name: button, exact: true }).click()]);
      await page.waitForLoadState();
      if (!/\/settings\?done=[a-z-]+$/.test(page.url())) throw new Error(`${button}: ${await page.locator("main").innerText()}`);
      if (await page.locator("p.notice").count() !== 1) throw new Error(`${button}: the page does not say what the form did`);
    };
    await page.getByLabel("Immutable tags", { exact: false }).fill("v*");
    await page.getByLabel("Refuse the tag latest").check();
    await saved("Save tag rules");
    check(await page.getByLabel("Refuse the tag latest").isChecked()
      && (await page.getByLabel("Immutable tags", { exact: false }).inputValue()) === "v*",
      "the tag rules were saved through their form");
    const addRetention = page.locator("form", { hasText: "Add a retention rule" });
    await addRetention.getByLabel("Tags (globs, comma-separated; empty: all)").fill("v*");
    await addRetention.getByLabel("Keep").selectOption("newest_per_version_line");
    await addRetention.getByLabel("N", { exact: true }).fill("3");
    await saved("Add retention rule");
    const retentionRules = page.locator("table.retention-rules");
    check((await retentionRules.innerText()).includes("the newest 3 of each vMAJOR.MINOR line"),
      "a retention rule added through its form is listed in words");
    const ruleCount = await retentionRules.locator("tbody tr").count();
    await retentionRules.getByRole("button").last().click();
    await page.waitForURL(/\/settings\?done=saved$/);
    check(await page.locator("table.retention-rules tbody tr").count() === ruleCount - 1,
      "a retention rule is removed through its button");
    check(confirmations.some((m) => m.startsWith("Remove retention rule")), "removing a rule is confirmed first");
    await page.getByLabel("Longest wait (seconds)").fill("30");
    await saved("Save vulnerability policy");
    check((await page.getByLabel("Longest wait (seconds)").inputValue()) === "30", "the vulnerability policy was saved through its form");
    await page.getByLabel("Vulnerability ID or alias").fill("CVE-2099-0001");
    await page.getByLabel("Expires after (UTC date; empty: never)").fill("2099-12-31");
    await page.getByLabel("Reason").fill("<b>not exploitable</b>");
    await saved("Allow");
    const allowlist = page.locator("table.allowlist");
    check((await allowlist.innerText()).includes("CVE-2099-0001") && (await allowlist.innerText()).includes("2099-12-31")
      && (await allowlist.innerText()).includes("<b>not exploitable</b>"),
      "an allowlist entry added through its form is listed, its reason as text");
    await saved("Remove CVE-2099-0001");
    check(!(await page.locator("table.allowlist").innerText()).includes("CVE-2099-0001"), "an allowlist entry is removed through its button");
    await page.getByLabel("Trusted public keys", { exact: false }).fill("not a key");
    await refused(() => page.getByRole("button", { name: "Save signing policy" }).click());
    check((await page.locator("main").innerText()).toLowerCase().includes("key"), "a signing key that is no key is refused with the reason");
    await page.goto(`${BASE}/projects/team-a/settings`);
    check((await page.getByLabel("Trusted public keys", { exact: false }).inputValue()) === "", "the refused key was not stored");
    await page.screenshot({ path: `${SHOTS}/settings-policies.png`, fullPage: true });

    // A project made from the projects page, made private and given a quota in its settings.
    await page.goto(`${BASE}/`);
    await page.getByLabel("Project name").fill("team-c");
    await page.getByLabel("Public: anyone may pull, without signing in").check();
    await page.getByRole("button", { name: "Create project" }).click();
    await page.waitForURL(/\/projects\/team-c\?done=created$/);
    check((await page.locator("p.notice").innerText()) === "Created.", "a new project's page says it was created");
    await page.goto(`${BASE}/projects/team-c/settings`);
    check(await page.getByLabel("Public: anyone may pull, without signing in").isChecked(), "a project made through the form is public as asked");
    await page.getByLabel("Public: anyone may pull, without signing in").uncheck();
    await saved("Save visibility");
    check(!(await page.getByLabel("Public: anyone may pull, without signing in").isChecked()), "the project was made private through its settings");
    await page.getByLabel("Storage limit (GiB; empty: unlimited)").fill("2");
    await page.getByLabel("Artifact limit (empty: unlimited)").fill("40");
    await saved("Set quota");
    check(/of 2(\.0)? GiB stored.*limit: 40/.test(await page.locator("p.quota").innerText()), "the quota was set through its form");
    check((await page.getByLabel("Storage limit (GiB; empty: unlimited)").inputValue()) === "2"
      && (await page.getByLabel("Artifact limit (empty: unlimited)").inputValue()) === "40",
      "the quota form shows the limits in force, so changing one keeps the other");
    await page.goto(`${BASE}/projects/team-a/settings`);

    // A robot account (its secret shown once).
    await page.getByLabel("Name", { exact: true }).fill("ci-bot");
    await page.getByLabel("Expires after (days; empty: never)").fill("30");
    await page.getByRole("button", { name: "Create robot account" }).click();
    check((await page.locator("#secret").innerText()).length > 20, "a new robot account's secret is shown once");
    await page.goto(`${BASE}/projects/team-a/settings`);
    check((await page.locator("table.robots").innerText()).includes("ci-bot"), "the robot account is listed");
    check(/\d{4}-\d\d-\d\d/.test(await page.locator("table.robots tr", { hasText: "ci-bot" }).locator("td").nth(2).innerText()),
      "the robot account expires when its form said");
    // A webhook added through its form (its secret shown once), then paused and given other
    // events through its change form.
    const addWebhook = page.locator("form", { hasText: "Add a webhook" });
    await addWebhook.getByLabel("URL", { exact: true }).fill("http://127.0.0.1:9/hook");
    await addWebhook.getByRole("button", { name: "Add webhook" }).click();
    check((await page.locator("#secret").innerText()).length > 20, "a new webhook's secret is shown once");
    await page.goto(`${BASE}/projects/team-a/settings`);
    const hookRow = page.locator("table.webhooks tbody tr", { hasText: "127.0.0.1:9/hook" });
    await hookRow.locator("summary", { hasText: "Change" }).click();
    await hookRow.getByLabel("Events (comma-separated)").fill("artifact.pushed, artifact.scanned");
    await hookRow.getByLabel("Enabled", { exact: false }).uncheck();
    await saved(await hookRow.getByRole("button", { name: /^Save webhook/ }).innerText());
    const hookCells = page.locator("table.webhooks tbody tr", { hasText: "127.0.0.1:9/hook" }).locator("td");
    check((await hookCells.nth(2).innerText()) === "disabled" && (await hookCells.nth(1).innerText()).includes("artifact.scanned"),
      "a webhook is paused and given other events through its form");
    // A replication rule of the project made through its form: listed with its registry,
    // changed through its own form (the password kept), then removed.
    const newRule = page.locator("form.rule", { hasText: "New replication or preheat rule" });
    await newRule.getByLabel("Rule name").fill("to-edge");
    await newRule.getByLabel("Registry URL").fill("http://127.0.0.1:9");
    await newRule.getByLabel("Username (optional)").fill("edge");
    await newRule.getByLabel("Password", { exact: false }).fill("edge-secret");
    await newRule.getByLabel("Tags (globs, comma-separated; empty: all)").fill("v*");
    await saved("Add rule");
    check((await page.locator("table.rules").innerText()).includes("to-edge"), "a replication rule made through the form is listed");
    await page.locator("table.rules summary").first().click();
    const change = page.locator("form.rule", { hasText: "Change to-edge" });
    await change.getByLabel("Schedule (cron, UTC; optional)").fill("0 4 * * *");
    await saved("Save to-edge");
    check((await page.locator("table.rules").innerText()).includes("0 4 * * *"), "a replication rule changed through its form shows its new schedule");
    check((await page.locator("form.rule", { hasText: "Change to-edge" }).getByLabel("Tags (globs, comma-separated; empty: all)").inputValue()) === "v*",
      "what the change form did not touch is kept");
    await page.locator("table.rules").getByRole("button", { name: "Run now", exact: true }).click();
    await page.waitForURL(/\/settings\?done=run-started$/);
    await page.locator("table.rules").getByRole("link", { name: "to-edge" }).click();
    await page.waitForURL(/\/replication\/to-edge$/);
    check((await page.locator("table.runs tbody tr").first().innerText()).includes("manual"),
      "a rule's page lists its runs, the one just asked for first");
    await page.locator("table.runs tbody tr").first().getByRole("link").click();
    await page.waitForURL(/\/replication\/to-edge\?run=\d+$/);
    check((await page.locator("h2", { hasText: "Items of the run" }).count()) === 1, "a run's items are shown on its own");
    await page.screenshot({ path: `${SHOTS}/replication-rule.png`, fullPage: true });
    await page.goto(`${BASE}/projects/team-a/settings`);
    await page.locator("table.rules").getByRole("button", { name: "Remove", exact: true }).click();
    await page.waitForURL(/\/settings\?done=removed$/);
    check(!(await page.locator("table.rules").innerText()).includes("to-edge"), "a replication rule is removed through its button");

    // The administrators' page: users, jobs, the database; a system robot account made and
    // revoked; the system-wide allowlist edited.
    await page.goto(`${BASE}/admin`);
    check((await page.locator("table.users").innerText()).includes(DEV_USER), "the administrators' page lists the users");
    check(await page.locator("table.jobs tbody tr").count() >= 1, "the administrators' page lists jobs");
    check((await page.locator("table.vulndb").innerText()).includes("osv"), "the administrators' page shows the vulnerability database's source");
    await page.getByLabel("User name").fill("ops");
    await page.getByLabel("Initial password (at least 8 characters)").fill("ops-password-1");
    await page.getByRole("button", { name: "Create user" }).click();
    await page.waitForURL(/\/admin\?done=[a-z-]+$/);
    check((await page.locator("table.users").innerText()).includes("ops"), "a user made through the administrators' form is listed");
    const backOnAdmin = async (act, what) => {
      await Promise.all([page.waitForEvent("framenavigated"), act()]);
      await page.waitForLoadState();
      check(/\/admin\?done=[a-z-]+$/.test(page.url()), `${what} (${page.url()})`);
    };
    await page.getByLabel("New password for ops").fill("ops-password-2");
    await backOnAdmin(() => page.locator("table.users tr", { hasText: "ops" }).getByRole("button", { name: "Set password" }).click(),
      "an administrator sets another user's password");
    await backOnAdmin(() => page.getByRole("button", { name: "Delete ops" }).click(), "an administrator deletes a user");
    check(!(await page.locator("table.users").innerText()).includes("ops"), "a user is deleted from the administrators' page, after a confirmation");
    await page.getByLabel("Name", { exact: true }).fill("fleet-puller");
    await page.getByRole("button", { name: "Create robot account" }).click();
    check((await page.locator("#secret").innerText()).length > 20, "a new system robot account's secret is shown once");
    await page.goto(`${BASE}/admin`);
    await page.locator("table.robots tr", { hasText: "fleet-puller" }).getByRole("button").click();
    await page.waitForURL(/\/admin\?done=[a-z-]+$/);
    check((await page.locator("table.robots", { hasText: "fleet-puller" }).innerText()).includes("revoked"), "a system robot account is revoked through its button");
    await page.getByLabel("Vulnerability ID or alias").fill("GO-2099-0001");
    await page.getByRole("button", { name: "Allow", exact: true }).click();
    await page.waitForURL(/\/admin\?done=[a-z-]+$/);
    check((await page.locator("table.allowlist").innerText()).includes("GO-2099-0001"), "the system-wide allowlist is edited through its form");
    await page.screenshot({ path: `${SHOTS}/admin.png`, fullPage: true });
    await page.getByRole("link", { name: "Audit log of the registry" }).click();
    const registryAudit = await page.locator("table.audit").innerText();
    check(registryAudit.includes("user.delete") && registryAudit.includes("team-c"),
      "the registry's audit log lists what belongs to no project (a user deleted) and every project's entries");
    await page.goto(`${BASE}/admin`);
    await page.getByRole("button", { name: "Dry run" }).click();
    check((await page.locator(".gc-summary").innerText()).includes("would delete"), "a garbage collection dry run from the administrators' page shows its report");

    // Scan an artifact again; a maintainer's repository page offers deletion; a wrong second
    // password is refused with why.
    await page.goto(`${BASE}/repository?name=team-a%2Fapp`);
    check(await page.getByRole("button", { name: "Delete team-a/app" }).count() === 1, "an administrator is offered the repository's deletion");
    await page.locator("tbody tr", { hasText: "v2" }).locator("a code").click();
    await page.waitForURL(/\/artifact\?/);
    await page.getByRole("button", { name: "Scan again" }).click();
    await page.waitForURL(/\/artifact\?.*&done=scan-started$/);
    check((await page.locator("h2", { hasText: "Vulnerabilities" }).count()) === 1, "an artifact is scanned again from its page");
    // One tag removed, then one artifact deleted, from the artifact's page (each confirmed);
    // while the tag rules above hold v* immutable, the removal is refused with why.
    await page.goto(`${BASE}/repository?name=team-a%2Fapp`);
    const artifactRows = await page.locator("table.artifacts tbody tr").count();
    await page.locator("tbody tr", { hasText: "v1" }).locator("a code").click();
    await page.waitForURL(/\/artifact\?/);
    const v1Page = page.url();
    await refused(() => page.getByRole("button", { name: "Remove tag v1", exact: true }).click());
    check((await page.locator("main").innerText()).includes("immutable"), "removing an immutable tag is refused with the rule");
    await page.goto(`${BASE}/projects/team-a/settings`);
    await page.getByLabel("Immutable tags", { exact: false }).fill("");
    await saved("Save tag rules");
    await page.goto(v1Page);
    await page.getByRole("button", { name: "Remove tag v1", exact: true }).click();
    await page.waitForURL(/\/artifact\?.*&done=removed$/);
    check((await page.locator("dl.facts").first().innerText()).includes("none")
      && (await page.locator("p.notice").innerText()) === "Removed.",
      "a tag is removed from its artifact's page, and the page says so");
    check(confirmations.some((m) => m.startsWith("Remove the tag v1")), "removing a tag is confirmed first");
    await page.getByRole("button", { name: "Delete artifact", exact: true }).click();
    await page.waitForURL(/\/repository\?name=team-a%2Fapp&done=deleted$/);
    check(await page.locator("table.artifacts tbody tr").count() === artifactRows - 1,
      "an artifact is deleted from its page, and its repository lists one artifact less");
    const newPassword = async (current, password, repeat) => {
      await page.goto(`${BASE}/account`);
      await page.getByLabel("Your current password").fill(current);
      await page.getByLabel("New password (at least 8 characters)").fill(password);
      await page.getByLabel("The new password again").fill(repeat);
      await refused(() => page.getByRole("button", { name: "Change password" }).click());
      return page.locator("main").innerText();
    };
    check((await newPassword(ADMIN_PASSWORD, "a-new-password-1", "a-different-one-2")).includes("differ"),
      "two different new passwords are refused with why");
    check((await newPassword("not-the-password", "a-new-password-1", "a-new-password-1")).includes("current password was not confirmed"),
      "a password change without the current password is refused: an open session is not enough");

    // A form posted without the session's CSRF token is refused.
    const forged = await page.request.post(`${BASE}/projects/team-a/tokens`, {
      form: { pull: "on", ttl_minutes: "5" }, maxRedirects: 0,
    });
    check(forged.status() === 403, `a form without the CSRF token is refused (${forged.status()})`);

    // A form posted from another site is refused, the sign-in form's too; a path that is no
    // page still carries the Content-Security-Policy.
    const crossSite = await page.request.post(`${BASE}/login`, {
      headers: { Origin: "http://evil.example" },
      form: { username: "admin", password: ADMIN_PASSWORD, next: "/" }, maxRedirects: 0,
    });
    check(crossSite.status() === 403, `a sign-in posted from another site is refused (${crossSite.status()})`);
    const nowhere = await page.request.get(`${BASE}/projects/team-a/nowhere`);
    check((nowhere.headers()["content-security-policy"] || "").includes("default-src 'none'"),
      "a path that is no page carries the Content-Security-Policy");

    // Logout ends the session: the old cookie no longer opens a page.
    await page.goto(`${BASE}/`);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.waitForURL(/\/login/);
    const stale = await browser.newContext();
    await stale.addCookies([{ ...cookie }]);
    const stalePage = await stale.newPage();
    await stalePage.goto(`${BASE}/projects/team-a`);
    check(stalePage.url().includes("/login"), "after logout the old session cookie opens nothing");

    // A developer of team-a does not see team-b. Their sign-in link carries a `next` that
    // would leave the site once a browser drops its tab: it lands on this site.
    const developer = await browser.newContext();
    const devPage = await developer.newPage();
    await devPage.goto(`${BASE}/login?next=${encodeURIComponent("/\t/evil.example/x")}`);
    await devPage.getByLabel("Username").fill(DEV_USER);
    await devPage.getByLabel("Password").fill(DEV_PASSWORD);
    await devPage.getByRole("button", { name: "Log in" }).click();
    await devPage.waitForURL(`${BASE}/`);
    check(devPage.url() === `${BASE}/`, "sign-in never leaves the site");
    // A developer may mint a CI token for themselves (the API allows it) without listing the
    // project's tokens: the new secret is still shown to them.
    const devCsrf = await devPage.locator("input[name=csrf]").first().getAttribute("value");
    const devToken = await devPage.request.post(`${BASE}/projects/team-a/tokens`, { form: { csrf: devCsrf, pull: "on" } });
    check(devToken.status() === 200 && (await devToken.text()).includes("gantry_ci_"),
      `a developer's new CI token is shown to them (${devToken.status()})`);
    check(await devPage.getByRole("link", { name: "team-a" }).count() === 1, "the developer sees team-a");
    check(await devPage.getByRole("link", { name: "team-b" }).count() === 0, "the developer does not see team-b");
    await devPage.goto(`${BASE}/projects/team-a`);
    check(await devPage.getByRole("link", { name: "CI tokens" }).count() === 0, "a developer is not offered the CI tokens tab");
    check(await devPage.getByRole("link", { name: "Administration" }).count() === 0, "a developer is not offered administration");
    await devPage.goto(`${BASE}/projects/team-a/retention`);
    check(await devPage.getByRole("button", { name: "Preview (dry run)" }).count() === 0, "a developer is not offered a retention run");
    await devPage.goto(`${BASE}/projects/team-a/settings`);
    const devSettings = await devPage.locator("main").innerText();
    check(devSettings.includes("Quota") && !devSettings.includes("Robot accounts") && !devSettings.includes("Webhooks"),
      "a developer's settings page leaves out what the API refuses them");
    check(await devPage.getByRole("button", { name: /^(Save|Add|Allow|Remove)/ }).count() === 0
      && await devPage.getByLabel("Refuse the tag latest").isDisabled(),
      "a developer is shown the policies without a form to change them");
    const response = await devPage.goto(`${BASE}/projects/team-b`);
    check(response.status() === 403 || response.status() === 404, `team-b's page is refused to the developer (${response.status()})`);
    await devPage.goto(`${BASE}/repository?name=team-a%2Fapp`);
    check(await devPage.getByRole("button", { name: /^Delete/ }).count() === 0, "a developer is not offered the repository's deletion");
    await devPage.locator("tbody tr", { hasText: "v2" }).locator("a code").click();
    await devPage.waitForURL(/\/artifact\?/);
    check(await devPage.getByRole("button", { name: "Scan again" }).count() === 1, "a developer may ask for a scan");
    check(await devPage.getByRole("button", { name: "Delete artifact" }).count() === 0
      && await devPage.locator("button.remove-tag").count() === 0,
      "a developer is offered neither an artifact's deletion nor a tag's removal");
    // A user changes their own password: every session of theirs ends, this one too.
    await devPage.goto(`${BASE}/account`);
    await devPage.getByLabel("Your current password").fill(DEV_PASSWORD);
    await devPage.getByLabel("New password (at least 8 characters)").fill("dev-new-password-1");
    await devPage.getByLabel("The new password again").fill("dev-new-password-1");
    await devPage.getByRole("button", { name: "Change password" }).click();
    await devPage.waitForURL(/\/login/);
    await devPage.getByLabel("Username").fill(DEV_USER);
    await devPage.getByLabel("Password").fill("dev-new-password-1");
    await devPage.getByRole("button", { name: "Log in" }).click();
    await devPage.waitForURL(`${BASE}/`);
    check(devPage.url() === `${BASE}/`, "the new password signs the user in");
    check(violations.length === 0, `no script or style was refused or failed (${violations.join("; ")})`);
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
