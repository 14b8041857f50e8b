// Real-browser end-to-end test of the webhooker UI (run through run.sh, which starts the
// server). Drives Debian's chromium with playwright-core: log in, create a webhook, add an
// http target pointing at a loopback sink, send a webhook to the entrypoint URL read from
// the page, open the event log, expand the event, open its detail, check it was
// delivered, redeliver, look at the account page, log out. Fails on any console error,
// page error, failed request, HTTP error response or CSP violation, and on any serious or
// critical axe-core violation (or skipped heading level) on any page. Also: send a test event, watch a retrying
// delivery turn delivered without a reload, PRG after creating an API key, the mobile menu
// without JS. Screenshots of every page go to SCREENSHOT_DIR (desktop 1280 wide; detail,
// event log and menu at 390).

import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { chromium } from "playwright-core";

const BASE = required("WEBHOOKER_URL");
const PASSWORD = required("WEBHOOKER_PASSWORD");
const SHOTS = required("SCREENSHOT_DIR");
const EXECUTABLE = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_TIMEOUT = 10_000;
const TOTAL_TIMEOUT = 240_000;

function required(name) {
    const v = process.env[name];
    if (!v) {
        console.error(`browser e2e: ${name} is not set (run tests/browser/run.sh)`);
        process.exit(2);
    }
    return v;
}

function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
}

function check(cond, message) {
    if (!cond) {
        throw new Error(`check failed: ${message}`);
    }
}

/** Polls `fn` until it returns a truthy value or `limit` ms pass. */
async function waitFor(what, fn, limit = STEP_TIMEOUT) {
    const deadline = Date.now() + limit;
    for (;;) {
        const v = await fn();
        if (v) {
            return v;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out waiting for ${what}`);
        }
        await sleep(100);
    }
}

// ---------- accessibility: axe-core on every page ----------

const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
/** Pages checked so far (each URL once per viewport). */
const axeChecked = new Set();

/** Runs axe-core on the page; serious and critical violations fail the run, and so does a
 * skipped heading level (`heading-order`, a moderate rule: an h3 right under the h1 makes
 * the page's outline lie to screen-reader users who jump by heading). Evaluated
 * through the DevTools protocol, so the page's CSP (script-src 'self') does not block it. */
async function axeCheck(page, where) {
    const key = `${page.viewportSize()?.width}:${new URL(page.url()).pathname}`;
    axeChecked.add(key);
    await page.evaluate(AXE_SOURCE);
    const violations = await page.evaluate(async () => {
        const result = await window.axe.run(document, { resultTypes: ["violations"] });
        return result.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical" || v.id === "heading-order")
            .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")})`);
    });
    // Collected, and checked at the end of the run: one run lists every page's violations.
    for (const v of violations) {
        axeViolations.push(`${where} (${new URL(page.url()).pathname}): ${v}`);
    }
}
const axeViolations = [];

// ---------- loopback sink: the http target ----------

function startSink() {
    const received = [];
    /** Answers 503 to this many requests before answering 200 again. */
    const control = { failNext: 0 };
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            received.push({
                method: req.method,
                url: req.url,
                headers: req.headers,
                body: Buffer.concat(chunks).toString("utf8"),
            });
            if (control.failNext > 0) {
                control.failNext -= 1;
                res.writeHead(503, { "content-type": "text/plain" });
                res.end("try again");
                return;
            }
            res.writeHead(200, { "content-type": "application/json" });
            res.end(JSON.stringify({ ok: true, seen: received.length }));
        });
    });
    return new Promise((resolve, reject) => {
        server.on("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const { port } = server.address();
            resolve({ server, received, control, url: `http://127.0.0.1:${port}/hooks/incoming` });
        });
    });
}

async function waitForServer() {
    await waitFor(
        "webhooker to answer its health check",
        async () => {
            try {
                const r = await fetch(`${BASE}/.well-known/healthcheck`);
                return r.ok;
            } catch {
                return false;
            }
        },
        30_000,
    );
}

// ---------- the run ----------

const problems = [];
/** Problems expected during the current step (e.g. the 401 of a wrong password). */
let allowed = [];
function problem(text) {
    if (!allowed.some((re) => re.test(text))) {
        problems.push(text);
    }
}
async function expecting(patterns, fn) {
    allowed = patterns;
    try {
        return await fn();
    } finally {
        allowed = [];
    }
}
let shotNo = 0;

async function shot(page, name) {
    await axeCheck(page, name);
    shotNo += 1;
    const file = path.join(SHOTS, `${String(shotNo).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`  screenshot ${path.relative(process.cwd(), file) || file}`);
}

/** No horizontal scrolling: nothing may stick out of the viewport. */
async function checkNoOverflow(page, where) {
    const { scroll, width, culprits } = await page.evaluate(() => {
        const width = document.documentElement.clientWidth;
        const culprits = [];
        for (const el of document.querySelectorAll("body *")) {
            const r = el.getBoundingClientRect();
            if (r.right > width + 1 && r.width > 0 && getComputedStyle(el).position !== "fixed") {
                // Only report elements that are not inside a scroll container.
                let p = el.parentElement;
                let clipped = false;
                while (p && p !== document.body) {
                    const ov = getComputedStyle(p).overflowX;
                    if (ov === "auto" || ov === "scroll" || ov === "hidden") {
                        clipped = true;
                        break;
                    }
                    p = p.parentElement;
                }
                if (!clipped) {
                    culprits.push(`${el.tagName.toLowerCase()}.${[...el.classList].join(".")}`);
                }
            }
        }
        return { scroll: document.documentElement.scrollWidth, width, culprits: culprits.slice(0, 5) };
    });
    check(scroll <= width + 1, `${where}: page is ${scroll}px wide in a ${width}px viewport (${culprits.join(", ")})`);
}

async function main() {
    await waitForServer();
    const sink = await startSink();
    const browser = await chromium.launch({
        executablePath: EXECUTABLE,
        headless: true,
        args: [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
        timeout: 30_000,
    });
    try {
        await run(browser, sink);
    } finally {
        await browser.close().catch(() => {});
        sink.server.close();
    }
}

async function run(browser, sink) {
    const context = await browser.newContext({
        viewport: { width: 1280, height: 900 },
        baseURL: BASE,
    });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
    // CSP violations are reported to the test through a binding (init scripts are not
    // subject to the page's CSP).
    await context.exposeBinding("__reportCsp", (_source, text) => {
        problem(`CSP violation: ${text}`);
    });
    await context.addInitScript(() => {
        document.addEventListener("securitypolicyviolation", (e) => {
            window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
        });
    });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.setDefaultNavigationTimeout(15_000);
    page.on("console", (msg) => {
        if (msg.type() === "error") {
            problem(`console error on ${page.url()}: ${msg.text()}`);
        }
    });
    page.on("pageerror", (err) => problem(`page error on ${page.url()}: ${err.message}`));
    page.on("requestfailed", (req) => {
        // Leaving a live page ends its event stream and any refresh it was fetching:
        // that is not a failure.
        const live = req.url().endsWith("/events/stream") || req.resourceType() === "fetch";
        if (live && req.failure()?.errorText === "net::ERR_ABORTED") {
            return;
        }
        problem(`request failed: ${req.method()} ${req.url()} (${req.failure()?.errorText})`);
    });
    page.on("response", (res) => {
        if (res.status() >= 400) {
            problem(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
        }
    });
    page.on("dialog", (d) => {
        problem(`unexpected dialog: ${d.message()}`);
        d.dismiss().catch(() => {});
    });
    const step = (name) => console.log(`- ${name}`);
    const noProblems = (where) => check(problems.length === 0, `${where}:\n  ${problems.join("\n  ")}`);

    // ---- login ----
    step("logged out: /webhooks redirects to the login page");
    await page.goto("/webhooks");
    await page.waitForURL(/\/login\?next=%2Fwebhooks$/);
    await shot(page, "login");
    await page.fill("#username", "admin");
    await page.fill("#password", "not the password");
    await expecting([/HTTP 401 for POST .*\/login$/, /status of 401 \(Unauthorized\)/], async () => {
        await page.click("button[type=submit]");
        await page.waitForSelector(".alert-error");
    });
    check((await page.inputValue("#username")) === "admin", "username kept after a failed login");
    await shot(page, "login-failed");
    await page.fill("#password", PASSWORD);
    await Promise.all([page.waitForURL(/\/webhooks$/), page.click("button[type=submit]")]);
    noProblems("login");

    // ---- empty list, new webhook ----
    step("empty webhook list, then create a webhook");
    await page.getByText("No webhooks yet").waitFor();
    await shot(page, "webhooks-empty");
    await Promise.all([page.waitForURL(/\/webhooks\/new$/), page.click("text=Create your first webhook")]);
    await shot(page, "webhook-new");
    await page.fill("#name", "GitHub pushes");
    await page.fill("#description", "Push events from the main repository, forwarded to the deploy hook.");
    await Promise.all([page.waitForURL(/\/webhooks\/[0-9a-f-]{36}$/), page.click("button:has-text('Create webhook')")]);
    const webhookUrl = page.url();
    await page.locator(".alert-success").waitFor();
    check((await page.locator(".alert-success").innerText()).includes("Created webhook"), "flash after create");
    await shot(page, "webhook-detail-new");

    // ---- entrypoint URL and copy button ----
    step("read the entrypoint URL; the copy button works");
    const urlInput = page.locator("[x-data=copyField] input").first();
    const entrypointUrl = await urlInput.inputValue();
    check(/^http:\/\/127\.0\.0\.1:\d+\/webhook\/[0-9a-f-]{36}$/.test(entrypointUrl), `entrypoint URL ${entrypointUrl}`);
    const copyButton = page.locator("[x-data=copyField] button").first();
    await copyButton.click();
    await waitFor("the copy button to say Copied", async () => (await copyButton.innerText()).trim() === "Copied");
    const clip = await page.evaluate(() => navigator.clipboard.readText().catch(() => ""));
    check(clip === "" || clip === entrypointUrl, `clipboard holds the URL (got ${clip})`);
    // Dismissing the flash (Alpine).
    await page.click(".alert-dismiss");
    await page.locator(".alert-success").waitFor({ state: "hidden" });

    // ---- kind-aware target form ----
    step("add-target form: only the chosen kind's fields are shown and submitted");
    const httpSet = page.locator("fieldset:has(#t-http-url)");
    const slackSet = page.locator("fieldset:has(#t-slack-url)");
    check(await httpSet.isVisible(), "http fields visible by default");
    check(!(await slackSet.isVisible()), "slack fields hidden by default");
    check(await slackSet.evaluate((el) => el.disabled), "hidden slack fieldset is disabled");
    await page.selectOption("#t-kind", "slack");
    await waitFor("slack fields", () => slackSet.isVisible());
    check(!(await httpSet.isVisible()), "http fields hidden for slack");
    check(await httpSet.evaluate((el) => el.disabled), "hidden http fieldset is disabled");
    await page.selectOption("#t-kind", "log");
    await page.getByText("each event is written to the server log").waitFor();
    await page.selectOption("#t-kind", "http");
    await waitFor("http fields", () => httpSet.isVisible());

    step("a refused target URL re-renders the form with the message and the values");
    await page.fill("#t-name", "Private network");
    await page.fill("#t-http-url", "http://10.1.2.3/hook");
    await page.fill("#t-retries", "5");
    await expecting([/HTTP 422 for POST/, /status of 422/], async () => {
        await Promise.all([page.waitForURL(/\/targets#add-target$/), page.click("button:has-text('Add target')")]);
        await page.locator("#add-target .alert-error").waitFor();
    });
    check((await page.locator("#add-target .alert-error").innerText()).includes("refused"), "SSRF message shown");
    check((await page.inputValue("#t-name")) === "Private network", "name kept");
    check((await page.inputValue("#t-retries")) === "5", "retries kept");
    check(await page.locator("#t-http-url").evaluate((el) => el.classList.contains("input-error")), "URL field marked");
    await page.locator("#add-target").screenshot({ path: path.join(SHOTS, `${String(++shotNo).padStart(2, "0")}-target-form-error.png`) });

    step("add an http target pointing at the sink");
    await page.fill("#t-name", "");
    await page.fill("#t-name", "Deploy hook");
    await page.fill("#t-http-url", sink.url);
    await page.fill("#t-retries", "3");
    await Promise.all([page.waitForURL(/\/webhooks\/[0-9a-f-]{36}(#.*)?$/), page.click("button:has-text('Add target')")]);
    await page.locator(".alert-success").waitFor();
    check((await page.locator(".alert-success").innerText()).includes("Added target"), "flash after adding a target");
    await page.getByText(sink.url).waitFor();

    step("the target's signing secret is masked until Show");
    const secretInput = page.locator("[data-signing=on] [x-data=secretField] input");
    check((await secretInput.getAttribute("type")) === "password", "signing secret masked");
    check((await secretInput.inputValue()).startsWith("whsec_"), "a whsec_ secret");
    await page.locator("[data-signing=on] [x-data=secretField] button:has-text('Show')").click();
    await waitFor("the secret to show", async () => (await secretInput.getAttribute("type")) === "text");
    // The clipboard is the proof (the target list may be swapped by a live update right after
    // the click, resetting the button's label).
    const secretValue = await secretInput.inputValue();
    await page.locator("[data-signing=on] [x-data=secretField] button:has-text('Copy')").click();
    await waitFor("the signing secret in the clipboard", async () =>
        (await page.evaluate(() => navigator.clipboard.readText().catch(() => ""))) === secretValue);

    step("edit the webhook");
    await Promise.all([page.waitForURL(/\/edit$/), page.click("a:has-text('Edit')")]);
    check((await page.inputValue("#name")) === "GitHub pushes", "edit form prefilled");
    await page.fill("#retention_days", "14");
    // Sender verification: only the chosen kind's fields are shown and enabled.
    await page.selectOption("#verification_kind", "github");
    await waitFor("the secret field", () => page.locator("#verification_secret").isVisible());
    check(await page.locator("#verification_secret").isEnabled(), "secret field enabled for github");
    check(!(await page.locator("#verification_token").isVisible()), "gitlab token hidden for github");
    check(await page.locator("#verification_token").isDisabled(), "hidden gitlab token is disabled");
    await page.selectOption("#verification_kind", "basic");
    await waitFor("the basic fields", () => page.locator("#verification_username").isVisible());
    check(await page.locator("#verification_secret").isDisabled(), "secret field disabled for basic");
    await page.selectOption("#verification_kind", "none");
    await shot(page, "webhook-edit");
    await Promise.all([page.waitForURL(/\/webhooks\/[0-9a-f-]{36}$/), page.click("button:has-text('Save changes')")]);
    await page.locator(".alert-success:has-text('Saved webhook')").waitFor();
    await page.locator(".stat:has-text('14 days')").waitFor();

    step("add and delete a second entrypoint (confirm dialog)");
    await page.fill("#ep-description", "Staging sender");
    await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Add entrypoint')")]);
    await page.getByText("Staging sender").waitFor();
    check((await page.locator("[x-data=copyField] input").count()) === 2, "two entrypoint URLs");
    page.removeAllListeners("dialog");
    let dialogs = 0;
    page.on("dialog", async (d) => {
        dialogs += 1;
        // The first confirm is cancelled (nothing happens), the second accepted.
        if (dialogs === 1) {
            await d.dismiss();
        } else {
            await d.accept();
        }
    });
    const deleteSecond = page.locator("li:has-text('Staging sender') button:has-text('Delete')");
    await deleteSecond.click();
    await sleep(300);
    check((await page.locator("[x-data=copyField] input").count()) === 2, "cancelled confirm keeps the entrypoint");
    await Promise.all([page.waitForLoadState("load"), deleteSecond.click()]);
    await page.locator(".alert-success").waitFor();
    check((await page.locator("[x-data=copyField] input").count()) === 1, "entrypoint deleted after confirm");
    check(dialogs === 2, "two confirm dialogs");
    page.removeAllListeners("dialog");
    page.on("dialog", (d) => {
        problem(`unexpected dialog: ${d.message()}`);
        d.dismiss().catch(() => {});
    });
    noProblems("webhook detail");

    // ---- send a webhook ----
    step("send a webhook to the entrypoint URL from node");
    const payload = { action: "push", ref: "refs/heads/main", commits: [{ id: "a1b2c3d", message: "Fix the <b>build</b>" }], repository: { full_name: "acme/shop" } };
    const res = await fetch(entrypointUrl, {
        method: "POST",
        headers: { "content-type": "application/json", "x-github-event": "push" },
        body: JSON.stringify(payload),
    });
    check(res.status === 200, `ingest answered ${res.status}`);
    const { event_id: eventId } = await res.json();
    check(/^[0-9a-f-]{36}$/.test(eventId), "ingest returned an event id");
    await waitFor("the sink to receive the event", () => sink.received.length >= 1);
    check(sink.received[0].headers["x-webhooker-event-id"] === eventId, "sink saw X-Webhooker-Event-Id");
    check(JSON.parse(sink.received[0].body).ref === "refs/heads/main", "sink got the body");

    await page.goto("/webhooks");
    await page.getByText("GitHub pushes").waitFor();
    await shot(page, "webhooks");
    await page.goto(webhookUrl);
    await page.locator(`a[href$="/events/${eventId}"]`).waitFor();
    await shot(page, "webhook-detail");

    // ---- event log ----
    step("event log: expand the event to its headers and body");
    await Promise.all([page.waitForURL(/\/events$/), page.click("a:has-text('Event log')")]);
    await waitFor("the delivered badge in the log", async () => {
        if ((await page.locator(".event .badge-success:has-text('delivered')").count()) > 0) {
            return true;
        }
        await page.reload();
        return false;
    });
    const panel = page.locator(`#event-${eventId}`);
    check(!(await panel.isVisible()), "event collapsed at first");
    await shot(page, "events");
    await page.click(`button[aria-controls="event-${eventId}"]`);
    await panel.waitFor({ state: "visible" });
    check((await page.getAttribute(`button[aria-controls="event-${eventId}"]`, "aria-expanded")) === "true", "aria-expanded");
    const panelText = await panel.innerText();
    check(panelText.includes("x-github-event"), "headers shown");
    check(panelText.includes('"ref": "refs/heads/main"'), "JSON body pretty-printed");
    check(panelText.includes("Fix the <b>build</b>"), "body text shown as text, not HTML");
    await sleep(250); // the chevron's rotation
    await shot(page, "events-expanded");
    // A live update (as when a delivery finishes) swaps the card; the event being read
    // stays open and its toggle keeps the focus.
    await page.focus(`button[aria-controls="event-${eventId}"]`);
    await page.evaluate(() => {
        document.querySelector("#live li.event").dataset.beforeSwap = "yes";
        window.Alpine.$data(document.getElementById("live")).refresh();
    });
    await waitFor("the live card to be swapped", async () => (await page.locator("#live li.event[data-before-swap]").count()) === 0);
    check(await panel.isVisible(), "an open event stays open across a live update");
    check(
        await page.evaluate((id) => document.activeElement && document.activeElement.getAttribute("aria-controls") === `event-${id}`, eventId),
        "the focused toggle keeps the focus across a live update",
    );

    // ---- event detail ----
    step("event detail: delivered, attempts, redeliver");
    await Promise.all([page.waitForURL(new RegExp(`/events/${eventId}$`)), page.click(`a[href$="/events/${eventId}"]:has-text('Details')`)]);
    await page.locator(".delivery .badge-success:has-text('delivered')").first().waitFor();
    await page.getByText("HTTP 200").first().waitFor();
    await shot(page, "event-detail");
    await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Redeliver to Deploy hook')")]);
    await page.locator(".alert-success:has-text('Redelivery queued')").waitFor();
    await waitFor("the sink to receive the redelivery", () => sink.received.length >= 2);
    check(sink.received[1].headers["x-webhooker-event-id"] === eventId, "redelivery carries the same event id");
    check(sink.received[1].headers["x-webhooker-delivery-id"] !== sink.received[0].headers["x-webhooker-delivery-id"], "redelivery is a new delivery");
    await waitFor("both deliveries delivered", async () => {
        await page.reload();
        return (await page.locator(".delivery .badge-success:has-text('delivered')").count()) === 2;
    });
    check((await page.locator("button:has-text('Redeliver to Deploy hook')").count()) === 1, "one redeliver button per target");
    // The latest attempt shows the request sent beside the response.
    const exchange = page.locator(".delivery .attempt details[open]").first();
    await exchange.waitFor();
    const exchangeText = await exchange.innerText();
    check(/request sent/i.test(exchangeText) && exchangeText.includes("x-webhooker-delivery-id"), `request sent shown: ${exchangeText}`);
    check(exchangeText.includes("HTTP 200") && /content-type/i.test(exchangeText), "response headers shown");
    check(await page.locator("#summary-title").isVisible(), "summary first");
    check((await page.locator(".delivery").first().boundingBox()).y < (await page.locator("#headers-title").boundingBox()).y, "deliveries before headers");
    await shot(page, "event-detail-redelivered");
    // A live update keeps an exchange the reader closed closed (the server renders the
    // latest attempt's open).
    const openId = await exchange.getAttribute("id");
    await page.click(`#${openId} > summary`);
    await page.evaluate(() => {
        document.querySelector("#live .delivery").dataset.beforeSwap = "yes";
        window.Alpine.$data(document.getElementById("live")).refresh();
    });
    await waitFor("the live card to be swapped", async () => (await page.locator("#live .delivery[data-before-swap]").count()) === 0);
    check(!(await page.locator(`#${openId}`).evaluate((d) => d.open)), "a closed exchange stays closed across a live update");
    await page.click(`#${openId} > summary`);

    step("event detail: times switch to UTC and back");
    const firstTime = page.locator("#live time").first();
    await page.click("button:has-text('Show times in UTC')");
    await waitFor("UTC times", async () => (await firstTime.innerText()).endsWith(" UTC"));
    await page.click("button:has-text('Show local times')");
    noProblems("event pages");

    // ---- try and watch ----
    step("send a test event from the webhook page; it is delivered before our eyes");
    await page.goto(webhookUrl);
    await Promise.all([page.waitForURL(/\/events\/[0-9a-f-]{36}$/), page.click("button:has-text('Send test event')")]);
    await page.locator(".badge:has-text('test event')").waitFor();
    await page.locator(".delivery .badge-success:has-text('delivered')").first().waitFor();
    await waitFor("the sink to receive the test event", () => sink.received.some((r) => r.headers["x-webhooker-test"] === "true"));
    await shot(page, "test-event");

    step("live: a retrying delivery turns delivered on the open event log, without a reload");
    await page.goto(`${webhookUrl}/events`);
    await page.evaluate(() => {
        window.__notReloaded = true;
    });
    sink.control.failNext = 2;
    const live = await fetch(entrypointUrl, { method: "POST", headers: { "content-type": "application/json" }, body: '{"live":true}' });
    const { event_id: liveId } = await live.json();
    const liveRow = page.locator(`li.event:has(button[aria-controls="event-${liveId}"])`);
    await liveRow.waitFor();
    await liveRow.locator(".badge-warning:has-text('retrying')").waitFor();
    await shot(page, "events-live-retrying");
    await liveRow.locator(".badge-success:has-text('delivered')").waitFor({ timeout: 20_000 });
    check(await page.evaluate(() => window.__notReloaded === true), "the log updated without a reload");

    step("live: the event page follows the retrying delivery too");
    sink.control.failNext = 2;
    const again = await fetch(entrypointUrl, { method: "POST", headers: { "content-type": "application/json" }, body: '{"live":2}' });
    const { event_id: againId } = await again.json();
    await page.goto(`${webhookUrl}/events/${againId}`);
    await page.evaluate(() => {
        window.__notReloaded = true;
    });
    check(await page.getByText("Updating live").isVisible(), "the delivery was still pending when the page loaded");
    await page.locator(".delivery .badge-success:has-text('delivered')").waitFor({ timeout: 20_000 });
    check(await page.evaluate(() => window.__notReloaded === true), "the event page updated without a reload");
    check((await page.locator(".attempt").count()) === 3, "every attempt listed");
    check(/\+\d/.test(await page.locator(".attempt").nth(1).innerText()), "the gap between attempts");
    noProblems("event pages");

    // ---- binary bodies and pagination ----
    step("binary body as a hex dump; 26 more events paginate");
    const binary = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0xff, 0xfe, 0x3c, 0x62, 0x3e]);
    const bin = await fetch(`${entrypointUrl}?kind=binary`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: binary });
    check(bin.status === 200, "binary ingest");
    const { event_id: binId } = await bin.json();
    await page.goto(`${webhookUrl}/events`);
    await page.click(`button[aria-controls="event-${binId}"]`);
    const binPanel = page.locator(`#event-${binId}`);
    await binPanel.waitFor({ state: "visible" });
    const binText = await binPanel.innerText();
    check(binText.includes("Binary · hex dump"), "binary body labelled");
    check(binText.includes("00000000  89 50 4e 47 0d 0a 1a 0a  00 00 00 0d 49 48 44 52"), "hex dump");
    await binPanel.locator("summary").click();
    check((await binPanel.innerText()).includes(binary.toString("base64")), "base64 on demand");
    await sleep(250);
    await shot(page, "events-binary");
    for (let i = 0; i < 25; i++) {
        const r = await fetch(entrypointUrl, { method: "POST", headers: { "content-type": "text/plain" }, body: `line ${i}\nsecond line` });
        check(r.status === 200, "bulk ingest");
    }
    await page.goto(`${webhookUrl}/events`);
    await page.getByText("Showing 1–25 of 30").waitFor();
    await Promise.all([page.waitForURL(/\?page=2$/), page.click("a[rel=next]")]);
    await page.getByText("Showing 26–30 of 30").waitFor();
    await page.locator(`button[aria-controls="event-${eventId}"]`).waitFor();
    await shot(page, "events-page-2");

    await operate(page, step, noProblems, webhookUrl, entrypointUrl);

    // ---- account ----
    step("account page: create an API key (shown once); a reload creates nothing");
    await Promise.all([page.waitForURL(/\/account$/), page.click("nav >> text=Account")]);
    await page.getByText("No API keys").waitFor();
    await shot(page, "account");
    await page.fill("#key-name", "CI deploy");
    const created = page.waitForResponse((r) => r.url().endsWith("/account/keys") && r.request().method() === "POST");
    await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Create key')")]);
    check((await created).status() === 303, "POST → 303");
    check(new URL(page.url()).pathname === "/account", "the address bar shows /account, not the POST's URL");
    const token = await page.locator("[x-data=copyField] input").inputValue();
    check(token.startsWith("whk_"), "API key shown");
    const api = await fetch(`${BASE}/api/v1/webhooks`, { headers: { authorization: `Bearer ${token}` } });
    check(api.status === 200, "the new key works on the API");
    await shot(page, "account-key-created");
    await page.reload();
    check((await page.locator("[x-data=copyField] input").count()) === 0, "the secret is gone after a reload");
    const basic = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString("base64")}`;
    const keys = await (await fetch(`${BASE}/api/v1/keys`, { headers: { authorization: basic } })).json();
    check(Array.isArray(keys) && keys.length === 1, `one key after the reload (got ${JSON.stringify(keys)})`);

    step("a GET of a form's address shows the styled page with the navigation");
    await expecting([/HTTP 405 for GET/, /status of 405/], async () => {
        await page.goto("/account/keys");
        await page.getByText("only takes a form submission").waitFor();
    });
    check(await page.locator("nav >> button:has-text('Log out')").first().isVisible(), "nav kept on the error page");
    await shot(page, "method-not-allowed");

    // ---- error page ----
    step("404 page");
    await expecting([/HTTP 404 for GET/, /status of 404 \(Not Found\)/], async () => {
        await page.goto("/webhooks/00000000-0000-0000-0000-000000000000");
        await page.getByText("Webhook not found").waitFor();
    });
    await shot(page, "not-found");
    noProblems("error page");

    // ---- mobile ----
    step("mobile (390 wide): webhook detail, event log, menu");
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto("/webhooks");
    await checkNoOverflow(page, "mobile webhook list");
    await shot(page, "mobile-webhooks");
    await page.goto(webhookUrl);
    await checkNoOverflow(page, "mobile webhook detail");
    await shot(page, "mobile-webhook-detail");
    await page.goto(`${webhookUrl}/events?page=2`);
    await page.click(`button[aria-controls="event-${eventId}"]`);
    await panel.waitFor({ state: "visible" });
    await sleep(250);
    await checkNoOverflow(page, "mobile event log");
    await shot(page, "mobile-events");
    await page.goto(`${webhookUrl}/events/${eventId}`);
    await checkNoOverflow(page, "mobile event detail");
    await shot(page, "mobile-event-detail");
    check(!(await page.locator("#mobile-menu").isVisible()), "mobile menu closed at first");
    await page.click("summary[aria-label='Menu']");
    await page.locator("#mobile-menu").waitFor({ state: "visible" });
    await page.screenshot({ path: path.join(SHOTS, `${String(++shotNo).padStart(2, "0")}-mobile-menu.png`) });
    await page.click("summary[aria-label='Menu']");
    await page.locator("#mobile-menu").waitFor({ state: "hidden" });
    await page.setViewportSize({ width: 1280, height: 900 });
    noProblems("mobile");

    step("without JS: the mobile menu opens, the skip link leads to the content");
    const noJs = await browser.newContext({ viewport: { width: 390, height: 844 }, baseURL: BASE, javaScriptEnabled: false, storageState: await context.storageState() });
    const plain = await noJs.newPage();
    await plain.goto("/webhooks");
    await plain.click("summary[aria-label='Menu']");
    await plain.locator("#mobile-menu a:has-text('Account')").waitFor({ state: "visible" });
    await Promise.all([plain.waitForURL(/\/account$/), plain.click("#mobile-menu a:has-text('Account')")]);
    await plain.keyboard.press("Tab");
    check(await plain.evaluate(() => document.activeElement?.classList.contains("skip-link")), "the skip link comes first");
    await noJs.close();

    // ---- logout ----
    step("log out: the session ends");
    await page.goto("/webhooks");
    await Promise.all([page.waitForURL(/\/login$/), page.click("nav >> button:has-text('Log out')")]);
    await page.getByText("You have been signed out").waitFor();
    await shot(page, "logged-out");
    await page.goto("/account");
    await page.waitForURL(/\/login\?next=%2Faccount$/);
    noProblems("logout");
    check(axeViolations.length === 0, `axe-core, serious, critical or heading order:\n  ${axeViolations.join("\n  ")}`);
    console.log(`  axe-core: no serious or critical violation and no skipped heading level on ${axeChecked.size} page views`);
}

// ---------- operating a webhook: find, replay, pause, health, edit ----------

/** A loopback sink whose answer the test sets (`sink.status`); records bodies in order. */
function startSwitchableSink() {
    const sink = { status: 500, bodies: [], server: null, url: "" };
    sink.server = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            sink.bodies.push(Buffer.concat(chunks).toString("utf8"));
            res.writeHead(sink.status, { "content-type": "text/plain" });
            res.end(sink.status === 200 ? "ok" : "down");
        });
    });
    return new Promise((resolve, reject) => {
        sink.server.on("error", reject);
        sink.server.listen(0, "127.0.0.1", () => {
            sink.url = `http://127.0.0.1:${sink.server.address().port}/flaky`;
            resolve(sink);
        });
    });
}

/** The webhook's events through the API (Basic auth). */
async function apiEvents(webhookUrl, query) {
    const id = webhookUrl.split("/").pop();
    const r = await fetch(`${BASE}/api/v1/webhooks/${id}/events?${query}`, {
        headers: { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString("base64")}` },
    });
    check(r.ok, `API events: ${r.status}`);
    return r.json();
}

/** Runs `click` expecting exactly one confirm dialog; accepts it and returns its text. */
async function confirming(page, click) {
    page.removeAllListeners("dialog");
    let text = null;
    page.on("dialog", async (d) => {
        text = d.message();
        await d.accept();
    });
    try {
        await Promise.all([page.waitForLoadState("load"), click()]);
        await waitFor("the confirm dialog", () => text !== null);
    } finally {
        page.removeAllListeners("dialog");
        page.on("dialog", (d) => {
            problem(`unexpected dialog: ${d.message()}`);
            d.dismiss().catch(() => {});
        });
    }
    return text;
}

/** Marks the page loaded now, for [newPage]. */
async function markPage(page) {
    await page.evaluate(() => {
        window.__markedPage = true;
    });
}

/** Waits until a page loaded after [markPage] is shown (a form's redirect): waiting for
 * "load" settles at once on the page still shown, and a later goto would abort the
 * redirect. */
async function newPage(page) {
    await waitFor("the page the form redirects to", () =>
        page
            .evaluate(() => document.readyState === "complete" && window.__markedPage !== true)
            .catch(() => false),
    );
}

/** Runs `click` expecting exactly one confirm dialog; dismisses it, checks that nothing
 * was posted (the form stays unsent) and returns the dialog's text. */
async function dismissing(page, click) {
    page.removeAllListeners("dialog");
    let text = null;
    const posts = [];
    const onRequest = (r) => {
        if (r.method() === "POST") {
            posts.push(r.url());
        }
    };
    page.on("request", onRequest);
    page.on("dialog", async (d) => {
        text = d.message();
        await d.dismiss();
    });
    try {
        await click();
        await waitFor("the confirm dialog", () => text !== null);
        // A submit the dismissal failed to stop would be on its way by now.
        await sleep(300);
    } finally {
        page.off("request", onRequest);
        page.removeAllListeners("dialog");
        page.on("dialog", (d) => {
            problem(`unexpected dialog: ${d.message()}`);
            d.dismiss().catch(() => {});
        });
    }
    check(posts.length === 0, `a dismissed confirmation posts nothing: ${posts.join(", ")}`);
    return text;
}

async function operate(page, step, noProblems, webhookUrl, entrypointUrl) {
    const flaky = await startSwitchableSink();
    try {
        step("operate: a failing target, found by the event log's filters");
        await page.goto(webhookUrl);
        await page.selectOption("#t-kind", "http");
        await page.fill("#t-name", "Flaky");
        await page.fill("#t-http-url", flaky.url);
        await page.fill("#t-retries", "0");
        await page.fill("#t-inflight", "2");
        await Promise.all([page.waitForURL(/\/webhooks\/[0-9a-f-]{36}(#.*)?$/), page.click("button:has-text('Add target')")]);
        await page.locator(".alert-success:has-text('Added target')").waitFor();
        const send = (headers, body) =>
            fetch(entrypointUrl, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) }).then((r) => {
                check(r.status === 200, `ingest ${r.status}`);
                return r.json();
            });
        await send({ "x-order-id": "ord-7731" }, { type: "order.created", n: 1 });
        await send({}, { type: "order.paid", n: 2 });
        await send({}, { type: "order.shipped", n: 3 });
        await waitFor("three failed deliveries", async () => (await apiEvents(webhookUrl, "status=failed")).matched === 3);

        await page.goto(`${webhookUrl}/events`);
        await page.selectOption("#f-status", "failed");
        await Promise.all([page.waitForURL(/status=failed/), page.click("button:has-text('Filter')")]);
        await page.locator("#filter-summary:has-text('3 matching events')").waitFor();
        check((await page.locator("#filter-summary").innerText()).includes("searched the last"), "scan depth shown");
        check((await page.locator(".event").count()) === 3, "three rows");
        check((await page.locator(".event .event-type:has-text('order.paid')").count()) === 1, "event type from the JSON body");
        // Each target's badge sits in the same column on every row.
        const columns = await page.locator(".event").evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll(".target-cell")].map((c) => Math.round(c.getBoundingClientRect().left))));
        check(columns.every((c) => c.length === 2 && c[0] === columns[0][0] && c[1] === columns[0][1]), `fixed badge columns ${JSON.stringify(columns)}`);
        await shot(page, "events-filter-failed");

        step("operate: search by a header value");
        await page.selectOption("#f-status", "");
        await page.fill("#f-q", "ORD-7731");
        await Promise.all([page.waitForURL(/q=ORD-7731/), page.click("button:has-text('Filter')")]);
        await page.locator("#filter-summary:has-text('1 matching event')").waitFor();
        await page.locator(".event .event-type:has-text('order.created')").waitFor();
        noProblems("event log filters");

        step("operate: redeliver the failed events in bulk, after a confirmation");
        flaky.status = 200;
        const flakyId = await page.locator("#f-target option:has-text('Flaky')").getAttribute("value");
        await page.goto(`${webhookUrl}/events?status=failed&target_id=${flakyId}`);
        await page.locator("#bulk-redeliver:has-text('Redeliver 3 failed')").waitFor();
        const before = flaky.bodies.length;
        const question = await confirming(page, () => page.click("#bulk-redeliver"));
        check(question.includes("3 new deliveries") && question.includes("Flaky (3)"), `confirmation names count and targets: ${question}`);
        await page.locator(".alert-success:has-text('Queued 3 deliveries')").waitFor();
        await waitFor("the three replays to arrive", () => flaky.bodies.length === before + 3);
        check(page.url().includes("status=failed"), "back on the same filter");
        await shot(page, "events-bulk-redelivered");

        step("operate: a row's Replay asks first; dismissed sends nothing, accepted redelivers");
        await page.goto(`${webhookUrl}/events?q=order.paid`);
        await page.locator("#filter-summary:has-text('1 matching event')").waitFor();
        const replay = page.locator("li.event button[aria-label^='Replay event']");
        check((await replay.count()) === 1, "one Replay button on the row");
        const atReplay = flaky.bodies.length;
        await markPage(page);
        const asked = await dismissing(page, () => replay.click());
        check(asked.includes("Redeliver this event to every active target") && asked.includes("Flaky"), `the row's confirmation names the targets: ${asked}`);
        check(flaky.bodies.length === atReplay, "nothing redelivered after dismissing");
        check(page.url().includes("q=order.paid"), "still on the event log");
        await confirming(page, () => replay.click());
        await newPage(page);
        await page.locator(".alert-success:has-text('Redelivery to 2 targets queued')").waitFor();
        await waitFor("the row's replay to reach Flaky", () => flaky.bodies.length === atReplay + 1);
        check(JSON.parse(flaky.bodies[atReplay]).type === "order.paid", "the replayed event is the row's");

        step("operate: the event page's Redeliver to all targets asks first too");
        const redeliverAll = page.locator("button:has-text('Redeliver to all targets')");
        const atAll = flaky.bodies.length;
        await markPage(page);
        const askedAll = await dismissing(page, () => redeliverAll.click());
        check(askedAll.includes("every active target"), `the event page's confirmation: ${askedAll}`);
        check(flaky.bodies.length === atAll, "nothing redelivered after dismissing");
        await confirming(page, () => redeliverAll.click());
        await newPage(page);
        await page.locator(".alert-success:has-text('Redelivery to 2 targets queued')").waitFor();
        await waitFor("the redelivery to reach Flaky", () => flaky.bodies.length === atAll + 1);
        check(JSON.parse(flaky.bodies[atAll]).type === "order.paid", "the redelivered event is this page's");
        noProblems("replay confirmations");

        step("operate: edit the target in place (max in flight 1)");
        await page.goto(webhookUrl);
        const row = page.locator("li[data-target-name='Flaky']");
        await row.locator("summary:has-text('Edit settings')").click();
        check((await row.locator("input[name=url]").inputValue()) === flaky.url, "edit form prefilled with the URL");
        check((await row.locator("input[name=max_in_flight]").inputValue()) === "2", "edit form prefilled with max in flight");
        await row.locator("input[name=max_in_flight]").fill("1");
        await Promise.all([page.waitForLoadState("load"), row.locator("button:has-text('Save target')").click()]);
        await page.locator(".alert-success:has-text('Saved target')").waitFor();
        await page.locator("li[data-target-name='Flaky'] dd:has-text('≤ 1')").waitFor();

        step("operate: pause the target; events wait; resume delivers them in order");
        await Promise.all([page.waitForLoadState("load"), page.locator("li[data-target-name='Flaky'] button:has-text('Pause')").click()]);
        await page.locator("li[data-target-name='Flaky'] [data-state=paused]").waitFor();
        const atPause = flaky.bodies.length;
        for (const n of [1, 2, 3]) {
            await send({}, { type: "paused.test", seq: n });
        }
        await sleep(1500);
        check(flaky.bodies.length === atPause, "nothing sent while paused");
        await page.reload();
        await page.locator("li[data-target-name='Flaky'] [data-count=waiting]:text-is('3')").waitFor();
        await shot(page, "target-paused");
        await page.goto(`${webhookUrl}/events?status=pending`);
        await page.locator("#filter-summary:has-text('3 matching events')").waitFor();
        await page.goto(webhookUrl);
        await Promise.all([page.waitForLoadState("load"), page.locator("li[data-target-name='Flaky'] button:has-text('Resume')").click()]);
        // waitForLoadState settles at once on the loaded page: wait for the page the form
        // redirects to, or the next goto aborts it.
        await page.locator("li[data-target-name='Flaky'] button:has-text('Pause')").waitFor();
        await waitFor("the backlog to arrive", () => flaky.bodies.length === atPause + 3);
        const seqs = flaky.bodies.slice(atPause).map((b) => JSON.parse(b).seq);
        check(JSON.stringify(seqs) === "[1,2,3]", `delivered oldest first: ${seqs}`);

        step("operate: health shows failures; the list marks the webhook");
        flaky.status = 404;
        await send({}, { type: "will.fail" });
        await waitFor("a failure", async () => (await apiEvents(webhookUrl, `status=failed&target_id=${flakyId}&q=will.fail`)).matched === 1);
        await page.goto(webhookUrl);
        const health = await page.locator("li[data-target-name='Flaky'] [data-health]").innerText();
        check(health.includes("HTTP 404"), `last result shown: ${health}`);
        await page.locator("li[data-target-name='Flaky'] [data-state=failing]").waitFor();
        await shot(page, "target-health");
        await page.goto("/webhooks");
        await page.locator("[data-health=failing]").first().waitFor();
        noProblems("operate");
    } finally {
        flaky.server.close();
    }
}

const watchdog = setTimeout(() => {
    console.error(`browser e2e: gave up after ${TOTAL_TIMEOUT / 1000} s`);
    console.log("browser e2e: 0 passed, 1 failed");
    process.exit(1);
}, TOTAL_TIMEOUT);

try {
    await main();
    if (problems.length > 0) {
        throw new Error(`problems seen:\n  ${problems.join("\n  ")}`);
    }
    clearTimeout(watchdog);
    console.log("browser e2e: 1 passed, 0 failed");
    process.exit(0);
} catch (err) {
    clearTimeout(watchdog);
    console.error(`browser e2e FAILED: ${err.stack || err}`);
    console.log("browser e2e: 0 passed, 1 failed");
    process.exit(1);
}
