// The web demo in headless Chromium against a real node: two pages (alice and bob) sign in,
// chat both ways, see typing and read marks, hold a WebRTC call until both peer connections
// are connected, and one page misses messages while offline and shows each once, in order,
// after it comes back; then a group whose history a fresh page pages back, and a live
// session with a hand raised and accepted.
// Screenshots of each step go to target/demo-screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.SWITCHBOARD_BIN ?? join(root, "target/debug/switchboard");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = join(root, "target/demo-screenshots");
const WAIT = 15_000;

let node;
let dataDir;
let base;
let browser;
const pages = {};
const pageErrors = [];

/** Starts the binary on a free loopback port with a fresh SQLite file, the demo on and the
 * development secret; resolves with its base URL once it logs its address. */
function startNode() {
  dataDir = mkdtempSync(join(tmpdir(), "switchboard-demo-"));
  const env = { ...process.env, SWITCHBOARD_BIND: "127.0.0.1:0", SWITCHBOARD_DEMO: "true", RUST_LOG: "info", NO_COLOR: "1" };
  env.SWITCHBOARD_DATABASE_URL = `sqlite://${join(dataDir, "switchboard.db")}`;
  delete env.SWITCHBOARD_JWT_SECRET;
  delete env.SWITCHBOARD_REDIS_URL;
  node = spawn(BIN, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  process.on("exit", () => node.kill("SIGKILL"));
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("the node did not log its address within 60 s")), 60_000);
    let log = "";
    const read = (chunk) => {
      log += chunk;
      const found = /listening on [^\d]*([\d.]+:\d+)/.exec(log);
      if (found) {
        clearTimeout(timer);
        ok(`http://${found[1]}`);
      }
    };
    node.stdout.on("data", read);
    node.stderr.on("data", read);
    node.on("exit", (code) => fail(new Error(`the node exited (${code}):\n${log}`)));
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** Waits until the texts of `selector` on `page` are exactly `expected`. */
async function expectTexts(page, selector, expected, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let actual;
  for (;;) {
    actual = await page.locator(selector).allTextContents();
    if (JSON.stringify(actual) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) break;
    await page.waitForTimeout(50);
  }
  assert.deepEqual(actual, expected, `${selector} on ${page.user}'s page`);
}

const bodies = (page) => expectTexts.bind(null, page, "#message-list .msg:not(.pending) .body");

async function signIn(user) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 } });
  const page = await context.newPage();
  page.user = user;
  page.on("pageerror", (err) => pageErrors.push(`${user}: ${err.message}`));
  // A call's signaling errors are only logged by the page: they count as errors here.
  page.on("console", (msg) => {
    if (msg.text().startsWith("call signaling:")) pageErrors.push(`${user}: ${msg.text()}`);
  });
  return openAs(page, user);
}

async function openAs(page, user) {
  await page.goto(`${base}/demo/`);
  await page.fill("#signin-user", user);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: WAIT });
  await page.waitForSelector("#app:not([hidden])");
  pages[user] = page;
  return page;
}

async function send(page, text) {
  await page.fill("#composer-input", text);
  await page.press("#composer-input", "Enter");
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  base = await startNode();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
    ],
  });
});

after(async () => {
  await browser?.close();
  node?.kill("SIGTERM");
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("the demo in two pages", { timeout: 110_000 }, async (t) => {
  await t.test("the node serves the demo's files with their types", async () => {
    const page = await fetch(`${base}/demo/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type"), /^text\/html/);
    const script = await fetch(`${base}/demo/vendor/switchboard/client.js`);
    assert.match(script.headers.get("content-type"), /^text\/javascript/);
    assert.equal((await fetch(`${base}/demo/nope.js`)).status, 404);
  });

  const alice = await signIn("alice");
  const bob = await signIn("bob");
  await shot(alice, "01-signed-in");

  await t.test("alice opens a room with bob and they chat both ways", async () => {
    await alice.fill("#direct-user", "bob");
    await alice.press("#direct-user", "Enter");
    await alice.waitForSelector('#chat-title:text("bob")');
    await send(alice, "Hi Bob!");
    await bodies(alice)(["Hi Bob!"]);
    // bob learns of the room from its first message: listed with one unread, alice online
    const item = bob.locator('#rooms li[data-name="alice"]');
    await item.locator('.unread[data-count="1"]').waitFor({ timeout: WAIT });
    assert.equal(await item.locator(".dot").getAttribute("data-online"), "true");
    await shot(bob, "02-unread");
    await item.click();
    await bodies(bob)(["Hi Bob!"]);
    await item.locator('.unread[data-count="0"]').waitFor({ state: "attached", timeout: WAIT });
    await alice.waitForSelector('#chat-dot[data-online="true"]', { timeout: WAIT });
  });

  await t.test("alice sees bob typing, then his message, and bob's read mark on hers", async () => {
    await alice.waitForSelector('.msg.mine[data-seq="1"][data-seen="true"]', { timeout: WAIT });
    await bob.locator("#composer-input").pressSequentially("Hello Alice", { delay: 30 });
    await alice.waitForSelector('#typing:text("bob is typing")', { timeout: WAIT });
    await shot(alice, "03-typing");
    await bob.press("#composer-input", "Enter");
    await bodies(alice)(["Hi Bob!", "Hello Alice"]);
    await bodies(bob)(["Hi Bob!", "Hello Alice"]);
    await alice.waitForFunction(() => document.getElementById("typing").textContent === "", null, { timeout: WAIT });
    await send(alice, "Shall we call?");
    await bodies(bob)(["Hi Bob!", "Hello Alice", "Shall we call?"]);
    await alice.waitForSelector('.msg.mine[data-seq="3"][data-seen="true"]', { timeout: WAIT });
    assert.equal(await alice.locator('.msg[data-seen="true"]').count(), 1, "one Seen mark, on the latest read");
    await shot(alice, "04-seen");
  });

  await t.test("alice rings bob, bob accepts, and both peer connections connect", async () => {
    await alice.click("#call-video");
    await bob.waitForSelector('#ring:not([hidden])', { timeout: WAIT });
    assert.equal(await bob.textContent("#ring-from"), "alice");
    await shot(bob, "05-ringing");
    await bob.click("#ring-accept");
    for (const page of [alice, bob]) {
      await page.waitForSelector('#call[data-pc-state="connected"]', { timeout: 30_000 });
      await page.waitForFunction(
        () => (document.getElementById("remote-video").srcObject?.getTracks().length ?? 0) > 0,
        null,
        { timeout: WAIT },
      );
    }
    await alice.waitForFunction(() => document.getElementById("remote-video").readyState >= 2, null, { timeout: WAIT });
    for (const page of [alice, bob]) assert.equal(await page.textContent("#side-error"), "", `no error on ${page.user}'s page`);
    await shot(alice, "06-call-alice");
    await shot(bob, "06-call-bob");
    await alice.click("#call-hangup");
    await bob.waitForSelector('#call[data-state="ended"]', { timeout: WAIT });
    for (const page of [alice, bob]) await page.waitForSelector("#call", { state: "hidden", timeout: WAIT });
  });

  await t.test("bob goes offline, misses messages, and shows each once and in order when back", async () => {
    await bob.context().setOffline(true);
    // Offline emulation may leave an open socket alone: drop it too, as a lost network would.
    await bob.evaluate(() => window.demo.client.ws?.close());
    await bob.waitForSelector('#conn:not([data-state="connected"])', { timeout: WAIT });
    await alice.waitForSelector('#chat-dot[data-online="false"]', { timeout: WAIT });
    const missed = ["one", "two", "three", "four", "five"].map((n) => `missed ${n}`);
    for (const text of missed) {
      await send(alice, text);
    }
    const before = ["Hi Bob!", "Hello Alice", "Shall we call?"];
    await bodies(alice)([...before, ...missed]);
    await send(bob, "written offline");
    await bob.waitForSelector(".msg.pending", { timeout: WAIT });
    await shot(bob, "07-offline");
    await bob.waitForTimeout(1000);
    await bob.context().setOffline(false);
    await bob.waitForSelector('#conn[data-state="connected"]', { timeout: 20_000 });
    await bodies(bob)([...before, ...missed, "written offline"], 20_000);
    await bodies(alice)([...before, ...missed, "written offline"]);
    await alice.waitForSelector('#chat-dot[data-online="true"]', { timeout: WAIT });
    await shot(bob, "08-back-online");
    // nothing arrives twice later either
    await bob.waitForTimeout(500);
    await bodies(bob)([...before, ...missed, "written offline"], 0);
  });

  await t.test("alice creates a group with bob, who scrolls back its history", async () => {
    await alice.click("#group-box summary");
    await alice.fill("#group-name", "Launch team");
    await alice.fill("#group-members", "bob");
    await alice.click("#group-form button[type=submit]");
    await alice.waitForSelector('#chat-title:text("Launch team")');
    await send(alice, "Welcome to the team");
    await bodies(alice)(["Welcome to the team"]);
    const notes = Array.from({ length: 35 }, (_, i) => `note ${i + 1}`);
    await alice.evaluate(async (texts) => {
      const { client, state } = window.demo;
      for (const text of texts) await client.send(state.openRoom, text);
    }, notes);
    await bob.locator('#rooms li[data-name="Launch team"] .unread[data-count="36"]').waitFor({ timeout: WAIT });
    // a fresh page knows only what history tells it
    await openAs(bob, "bob");
    await bob.locator('#rooms li[data-name="Launch team"] .unread[data-count="36"]').waitFor({ timeout: WAIT });
    await bob.click('#rooms li[data-name="Launch team"]');
    await bodies(bob)(notes.slice(5)); // the newest page: 30 messages
    await bob.click("#older");
    await bodies(bob)(["Welcome to the team", ...notes]);
    await bob.waitForSelector("#older", { state: "hidden" });
  });

  await t.test("a live session: comments, a raised hand the host accepts", async () => {
    await alice.fill("#live-title", "Launch day");
    await alice.press("#live-title", "Enter");
    await alice.waitForSelector('#live[data-role="host"]:not([hidden])');
    await alice.fill("#live-invite-user", "bob");
    await alice.press("#live-invite-user", "Enter");
    await bob.click("#live-invites li button", { timeout: WAIT });
    await bob.waitForSelector('#live[data-role="viewer"]:not([hidden])');
    await alice.waitForSelector('#live-viewers:text("1 viewer")', { timeout: WAIT });
    await bob.fill("#live-comment", "Congrats!");
    await bob.press("#live-comment", "Enter");
    await expectTexts(alice, "#live-comments li", ["bobCongrats!"]);
    await bob.click("#live-raise");
    await alice.click('#live-hands li[data-user="bob"] button', { timeout: WAIT });
    await bob.waitForSelector('#live-stage:text("You are on stage")', { timeout: WAIT });
    await alice.waitForSelector('#live-stage:text("bob is on stage")', { timeout: WAIT });
    await shot(alice, "09-live-host");
    await shot(bob, "09-live-viewer");
  });

  assert.deepEqual(pageErrors, [], "no uncaught errors or call signaling errors in the pages");
});
