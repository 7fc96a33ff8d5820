// Test helpers: a real `switchboard` node on a free port with a fresh SQLite database, HS256
// tokens signed in the test, and a TCP proxy the tests can refuse, blackhole or cut.
import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

// Nodes still running when the test process exits (a test that failed or timed out before
// its `after`) are killed with it rather than left behind.
const running = new Set();
process.on("exit", () => {
  for (const proc of running) proc.kill("SIGKILL");
});
export const BIN = process.env.SWITCHBOARD_BIN ?? resolve(here, "../../../target/debug/switchboard");
export const SECRET = "sdk-test-secret-0123456789abcdef";
export const API_KEY = "sdk-test-api-key-0123456789abcdef0123";

const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** An HS256 token for `sub`, valid `ttl` seconds. */
export function token(sub, { ttl = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: "HS256", typ: "JWT" });
  const body = b64url({ sub, iat: now, exp: now + ttl });
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** A user id no other test uses. */
export const user = (name) => `${name}-${randomUUID().slice(0, 8)}`;

export function freePort() {
  return new Promise((ok, fail) => {
    const server = net.createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `predicate()` holds, checking at each event loop turn for at most `ms`. */
export async function until(predicate, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Resolves with the next `event` of `client` (that passes `filter`), within `ms`. */
export function nextEvent(client, event, filter = () => true, ms = 10_000) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => {
      off();
      fail(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const off = client.on(event, (data) => {
      if (!filter(data)) return;
      clearTimeout(timer);
      off();
      ok(data);
    });
  });
}

/** One switchboard node. `start()` again after `stop()` reuses the port and the database. */
export class Node {
  constructor({ env = {} } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "sb-sdk-"));
    this.db = join(this.dir, "switchboard.db");
    this.env = env;
    this.proc = null;
    this.log = "";
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port ??= await freePort();
    const proc = spawn(BIN, [], {
      env: {
        ...process.env,
        SWITCHBOARD_BIND: `127.0.0.1:${this.port}`,
        SWITCHBOARD_DATABASE_URL: `sqlite://${this.db}`,
        SWITCHBOARD_JWT_SECRET: SECRET,
        SWITCHBOARD_API_KEY: API_KEY,
        SWITCHBOARD_SHUTDOWN_GRACE_SECS: "2",
        RUST_LOG: process.env.RUST_LOG ?? "warn",
        ...this.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc = proc;
    running.add(proc);
    proc.on("exit", () => running.delete(proc));
    proc.stdout.on("data", (d) => (this.log += d));
    proc.stderr.on("data", (d) => (this.log += d));
    this.exited = new Promise((ok) => proc.on("exit", (code, signal) => ok({ code, signal })));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`switchboard exited at start:\n${this.log}`);
      try {
        const res = await fetch(`${this.http}/readyz`);
        if (res.ok) return this;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`switchboard not ready in 30 s:\n${this.log}`);
      await sleep(50);
    }
  }

  /** Stops the process: SIGTERM drains (close 1012), SIGKILL drops every socket. */
  async stop(signal = "SIGTERM") {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill(signal);
    await this.exited;
    this.proc = null;
  }

  async destroy() {
    await this.stop("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The server API (`/api/v1/…`). */
  async api(method, path, body) {
    const res = await fetch(`${this.http}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  }
}

/**
 * A TCP proxy in front of a node. `refuse` closes new connections at once; `blackholeAfterNextWrite()`
 * forwards the client's next bytes to the server, then drops everything the server sends back
 * and cuts both sockets after `holdMs` (an ack lost in a network drop).
 */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.refuse = false;
    this.pairs = new Set();
    this.armed = null;
    this.connections = 0;
    this.server = net.createServer((client) => this.accept(client));
  }

  listen() {
    return new Promise((ok) => this.server.listen(0, "127.0.0.1", () => ok(this)));
  }

  get url() {
    return `ws://127.0.0.1:${this.server.address().port}/ws`;
  }

  accept(client) {
    if (this.refuse) {
      client.destroy();
      return;
    }
    this.connections += 1;
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    const pair = { client, upstream, blackhole: false };
    this.pairs.add(pair);
    const cut = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    pair.cut = cut;
    client.on("data", (chunk) => {
      upstream.write(chunk);
      if (this.armed) {
        const { holdMs, done } = this.armed;
        this.armed = null;
        pair.blackhole = true;
        setTimeout(() => {
          cut();
          done();
        }, holdMs);
      }
    });
    upstream.on("data", (chunk) => {
      if (!pair.blackhole) client.write(chunk);
    });
    client.on("error", cut);
    upstream.on("error", cut);
    client.on("close", cut);
    upstream.on("close", cut);
  }

  /** Returns a promise resolved once the cut happened. */
  blackholeAfterNextWrite(holdMs = 500) {
    return new Promise((done) => (this.armed = { holdMs, done }));
  }

  cutAll() {
    for (const pair of [...this.pairs]) pair.cut();
  }

  close() {
    this.cutAll();
    return new Promise((ok) => this.server.close(() => ok()));
  }
}
