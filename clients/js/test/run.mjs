// Runs the tests under `node --test`, adding `--experimental-websocket` where the global
// WebSocket is not on by default (Node 20 and 21).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 10)) {
  console.error(`the client's tests need Node.js 20.10 or newer (a WebSocket), not ${process.versions.node}`);
  process.exit(1);
}
const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here)
  .filter((f) => f.endsWith(".test.mjs"))
  .sort()
  .map((f) => join(here, f));
const flags = typeof globalThis.WebSocket === "undefined" ? ["--experimental-websocket"] : [];
const { status } = spawnSync(process.execPath, [...flags, "--test", ...process.argv.slice(2), ...files], {
  stdio: "inherit",
});
process.exit(status ?? 1);
