// The demo's entry point: sign-in, the connection, the conversation list with unread counts
// and presence, opening direct rooms and groups. Chat, calls and live sessions are in their
// own modules; every one of them talks to the server only through the SDK's `Switchboard`.

import { Switchboard } from "./vendor/switchboard/index.js";
import { $, el, guarded, showError } from "./dom.js";
import * as chat from "./chat.js";
import * as call from "./call.js";
import * as live from "./live.js";

/** What the page knows; the modules read it and call back through `app`. */
const state = {
  client: null,
  me: null,
  /** Room id → room object (the protocol's, `unread` kept current here). */
  rooms: new Map(),
  /** User id → online. */
  presence: new Map(),
  /** The room shown in the chat pane. */
  openRoom: null,
};

const app = {
  state,
  roomName,
  peerOf,
  renderRooms,
  refreshRooms,
  upsertRoom,
};

// ---------------------------------------------------------------- sign-in

/** Asks the node for a token (development secret and loopback only); null when it refuses. */
async function mint(user) {
  const res = await fetch("token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: user }),
  });
  if (res.status === 403) return null;
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error?.message ?? `token request failed (${res.status})`);
  return body.token;
}

async function signIn(event) {
  event.preventDefault();
  const user = $("signin-user").value.trim();
  const pasted = $("signin-token").value.trim();
  let token = pasted || (await mint(user));
  if (!token) {
    $("paste").hidden = false;
    throw new Error("paste a token to sign in");
  }
  const canMint = !pasted;
  await connect(token, canMint ? () => mint(user) : undefined);
}

async function connect(token, refreshToken) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const client = new Switchboard({ url, token, refreshToken, backoff: { baseMs: 300, maxMs: 4000 } });
  state.client = client;
  watchConnection(client);
  await client.connect();
  state.me = client.userId;
  $("me").textContent = state.me;
  document.title = `${state.me} · Switchboard demo`;
  document.body.dataset.user = state.me;
  $("signin").hidden = true;
  $("app").hidden = false;
  // The test (and a curious reader) reaches the client here.
  window.demo = { client, state };
  chat.init(app);
  call.init(app);
  live.init(app);
  client.on("room.created", ({ room }) => upsertRoom(room));
  client.on("presence", ({ user_id, online }) => {
    state.presence.set(user_id, online);
    renderRooms();
    chat.renderHead();
  });
  client.on("message.new", ({ message }) => {
    if (!state.rooms.has(message.room_id)) void refreshRooms();
  });
  await refreshRooms();
}

function watchConnection(client) {
  const show = (name, text) => {
    $("conn").dataset.state = name;
    $("conn").textContent = text;
  };
  client.on("connected", () => show("connected", "online"));
  client.on("reconnecting", ({ delayMs }) => show("reconnecting", `reconnecting in ${Math.ceil(delayMs / 1000)} s`));
  client.on("disconnected", ({ willReconnect }) => show(willReconnect ? "reconnecting" : "closed", "offline"));
  client.on("resynced", ({ messages }) => {
    document.body.dataset.resynced = String(Number(document.body.dataset.resynced ?? 0) + 1);
    if (messages > 0) console.info(`resynced ${messages} missed messages`);
  });
  client.on("error", (err) => showError("side-error", err));
}

// ---------------------------------------------------------------- rooms

/** The other member of a direct room. */
function peerOf(room) {
  return room.kind === "direct" ? (room.members.find((m) => m !== state.me) ?? state.me) : null;
}

function roomName(room) {
  return room.kind === "group" ? (room.name ?? "group") : peerOf(room);
}

function upsertRoom(room) {
  const known = state.rooms.get(room.id);
  state.rooms.set(room.id, known ? { ...known, ...room, unread: known.unread } : room);
  const peer = peerOf(room);
  if (peer && !state.presence.has(peer)) void queryPresence([peer]);
  renderRooms();
  return state.rooms.get(room.id);
}

let refreshing = null;

/** Reads the room list again (first load, and a message in a room not seen yet). */
function refreshRooms() {
  refreshing ??= (async () => {
    try {
      const rooms = await state.client.listRooms({ limit: 100 });
      for (const room of rooms) {
        const known = state.rooms.get(room.id);
        state.rooms.set(room.id, known ? { ...known, ...room, unread: known.unread } : room);
      }
      const peers = rooms.map(peerOf).filter((p) => p && p !== state.me);
      if (peers.length) await queryPresence(peers);
      renderRooms();
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function queryPresence(users) {
  for (const { user_id, online } of await state.client.queryPresence([...new Set(users)].slice(0, 100))) {
    state.presence.set(user_id, online);
  }
  renderRooms();
  chat.renderHead();
}

function renderRooms() {
  const rooms = [...state.rooms.values()].sort((a, b) =>
    String(b.last_activity_at ?? "").localeCompare(String(a.last_activity_at ?? "")),
  );
  $("rooms").replaceChildren(
    ...rooms.map((room) => {
      const peer = peerOf(room);
      return el(
        "li",
        {
          class: room.id === state.openRoom ? "active" : "",
          "data-room": room.id,
          "data-name": roomName(room),
          onclick: guarded("side-error", () => chat.open(room.id)),
        },
        el("span", {
          class: "dot",
          "data-kind": room.kind,
          "data-online": peer ? String(state.presence.get(peer) === true) : "",
          title: peer ? (state.presence.get(peer) ? "online" : "offline") : "group",
        }),
        el("span", { class: "name", text: roomName(room) }),
        el("span", { class: "unread", "data-count": String(room.unread ?? 0), text: String(room.unread ?? 0) }),
      );
    }),
  );
}

async function openDirect(event) {
  event.preventDefault();
  const user = $("direct-user").value.trim();
  const room = upsertRoom(await state.client.openDirect(user));
  $("direct-user").value = "";
  await chat.open(room.id);
}

async function createGroup(event) {
  event.preventDefault();
  const members = $("group-members").value.split(",").map((m) => m.trim()).filter(Boolean);
  const room = upsertRoom(await state.client.createGroup($("group-name").value.trim(), members));
  $("group-form").reset();
  $("group-box").open = false;
  await chat.open(room.id);
}

$("signin-form").addEventListener("submit", guarded("signin-error", signIn));
$("direct-form").addEventListener("submit", guarded("side-error", openDirect));
$("group-form").addEventListener("submit", guarded("side-error", createGroup));
const remembered = new URLSearchParams(location.search).get("user");
if (remembered) $("signin-user").value = remembered;
