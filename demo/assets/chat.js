// The chat pane: a room's messages by seq (history paged back on scroll), sending with a
// pending bubble until the ack, typing indicators, read marks ("Seen") and unread counts.

import { $, el, guarded, clock } from "./dom.js";

const PAGE = 30;
/** A typing indicator not renewed within this many ms is dropped. */
const TYPING_STALE_MS = 6000;
/** While the user types, `typing: true` is repeated at most this often. */
const TYPING_REPEAT_MS = 2500;
/** Quiet this long after a keystroke sends `typing: false`. */
const TYPING_IDLE_MS = 3000;

let app;
/** Room id → { bySeq: Map<seq, message>, pending: Map<key, body>, hasMore, loaded }. */
const rooms = new Map();
/** Room id → Map<user, seq>: other members' read marks seen in this session. */
const readMarks = new Map();
/** Room id → Map<user, expiry ms>. */
const typers = new Map();
let pendingKey = 0;
let typingSentAt = 0;
let typingIdle = null;

export function init(appRef) {
  app = appRef;
  const client = app.state.client;
  client.on("message.new", ({ message }) => received(message));
  client.on("typing", ({ room_id, user_id, typing }) => {
    if (user_id === app.state.me) return;
    const room = typers.get(room_id) ?? new Map();
    typers.set(room_id, room);
    if (typing) room.set(user_id, Date.now() + TYPING_STALE_MS);
    else room.delete(user_id);
    renderTyping();
  });
  client.on("room.read", ({ room_id, user_id, seq }) => {
    if (user_id === app.state.me) {
      const room = app.state.rooms.get(room_id);
      if (room) room.unread = Math.max(0, (room.last_seq ?? seq) - seq);
      app.renderRooms();
      return;
    }
    const marks = readMarks.get(room_id) ?? new Map();
    readMarks.set(room_id, marks);
    marks.set(user_id, Math.max(seq, marks.get(user_id) ?? 0));
    if (room_id === app.state.openRoom) renderMessages();
  });
  client.on("resynced", () => {
    if (app.state.openRoom) markRead(app.state.openRoom);
  });
  setInterval(renderTyping, 1000);
  $("composer").addEventListener("submit", guarded("side-error", submit));
  $("composer-input").addEventListener("input", typed);
  $("older").addEventListener("click", guarded("side-error", loadOlder));
  $("messages").addEventListener("scroll", () => {
    const data = rooms.get(app.state.openRoom);
    if ($("messages").scrollTop < 30 && data?.hasMore && !data.loadingOlder) void loadOlder().catch(console.error);
  });
}

function dataOf(roomId) {
  let data = rooms.get(roomId);
  if (!data) {
    data = { bySeq: new Map(), pending: new Map(), hasMore: false, loaded: false, loadingOlder: false };
    rooms.set(roomId, data);
  }
  return data;
}

/** Shows a room: its newest page of history, then live messages as they come. */
export async function open(roomId) {
  app.state.openRoom = roomId;
  $("chat").dataset.room = roomId;
  $("chat-empty").hidden = true;
  $("chat-main").hidden = false;
  app.renderRooms();
  renderHead();
  const data = dataOf(roomId);
  if (!data.loaded) {
    const { messages, hasMore } = await app.state.client.history(roomId, { limit: PAGE });
    for (const m of messages) data.bySeq.set(m.seq, m);
    data.hasMore = hasMore;
    data.loaded = true;
  }
  renderMessages({ toBottom: true });
  renderTyping();
  $("composer-input").focus();
  await markRead(roomId);
}

async function loadOlder() {
  const roomId = app.state.openRoom;
  const data = rooms.get(roomId);
  if (!data || !data.hasMore || data.loadingOlder) return;
  data.loadingOlder = true;
  try {
    const oldest = Math.min(...data.bySeq.keys());
    const { messages, hasMore } = await app.state.client.history(roomId, { beforeSeq: oldest, limit: PAGE });
    for (const m of messages) data.bySeq.set(m.seq, m);
    data.hasMore = hasMore;
    const box = $("messages");
    const fromBottom = box.scrollHeight - box.scrollTop;
    if (roomId === app.state.openRoom) renderMessages();
    box.scrollTop = box.scrollHeight - fromBottom;
  } finally {
    data.loadingOlder = false;
  }
}

function received(message) {
  // Kept even before the room's history is read: the page of history merges with it by seq.
  dataOf(message.room_id).bySeq.set(message.seq, message);
  const room = app.state.rooms.get(message.room_id);
  if (room) {
    room.last_message = message;
    room.last_seq = Math.max(room.last_seq ?? 0, message.seq);
    room.last_activity_at = message.created_at;
    if (message.room_id !== app.state.openRoom && message.sender_id !== app.state.me) room.unread = (room.unread ?? 0) + 1;
  }
  typers.get(message.room_id)?.delete(message.sender_id);
  app.renderRooms();
  if (message.room_id === app.state.openRoom) {
    renderMessages();
    renderTyping();
    void markRead(message.room_id);
  }
}

/** Moves our read mark to the room's newest message while it is on screen. */
async function markRead(roomId) {
  const room = app.state.rooms.get(roomId);
  if (document.visibilityState !== "visible" || !room) return;
  const data = rooms.get(roomId);
  const top = Math.max(room.last_seq ?? 0, ...(data ? data.bySeq.keys() : []));
  room.unread = 0;
  app.renderRooms();
  if (top > (room.last_read_seq ?? 0)) {
    room.last_read_seq = top;
    await app.state.client.markRead(roomId, top).catch(console.error);
  }
}

async function submit(event) {
  event.preventDefault();
  const roomId = app.state.openRoom;
  const input = $("composer-input");
  const body = input.value.trim();
  if (!roomId || !body) return;
  input.value = "";
  stopTyping(roomId);
  const data = dataOf(roomId);
  const key = ++pendingKey;
  data.pending.set(key, body);
  renderMessages({ toBottom: true });
  try {
    const message = await app.state.client.send(roomId, body);
    data.bySeq.set(message.seq, message);
    const room = app.state.rooms.get(roomId);
    if (room) {
      room.last_message = message;
      room.last_seq = Math.max(room.last_seq ?? 0, message.seq);
      room.last_read_seq = Math.max(room.last_read_seq ?? 0, message.seq);
      room.last_activity_at = message.created_at;
    }
  } finally {
    data.pending.delete(key);
    if (roomId === app.state.openRoom) renderMessages({ toBottom: true });
    app.renderRooms();
  }
}

function typed() {
  const roomId = app.state.openRoom;
  if (!roomId) return;
  if (Date.now() - typingSentAt > TYPING_REPEAT_MS) {
    typingSentAt = Date.now();
    void app.state.client.typing(roomId, true);
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(() => stopTyping(roomId), TYPING_IDLE_MS);
}

function stopTyping(roomId) {
  clearTimeout(typingIdle);
  if (typingSentAt === 0) return;
  typingSentAt = 0;
  void app.state.client.typing(roomId, false);
}

export function renderHead() {
  const room = app.state.rooms.get(app.state.openRoom);
  if (!room) return;
  const peer = app.peerOf(room);
  $("chat-title").textContent = app.roomName(room);
  $("chat-dot").dataset.kind = room.kind;
  $("chat-dot").dataset.online = peer ? String(app.state.presence.get(peer) === true) : "";
  $("chat-sub").textContent = peer
    ? app.state.presence.get(peer) ? "online" : "offline"
    : `${room.members.length} members: ${room.members.join(", ")}`;
}

function renderTyping() {
  const now = Date.now();
  const room = typers.get(app.state.openRoom);
  const names = room ? [...room].filter(([, until]) => until > now).map(([user]) => user) : [];
  const line = $("typing");
  line.dataset.typing = names.join(",");
  line.textContent = names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

function renderMessages({ toBottom = false } = {}) {
  const roomId = app.state.openRoom;
  const data = rooms.get(roomId);
  if (!data) return;
  const box = $("messages");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const me = app.state.me;
  const messages = [...data.bySeq.values()].sort((a, b) => a.seq - b.seq);
  const marks = [...(readMarks.get(roomId) ?? new Map())];
  const seenUpTo = Math.max(0, ...marks.map(([, seq]) => seq));
  const lastSeenMine = messages.filter((m) => m.sender_id === me && m.seq <= seenUpTo).at(-1)?.seq;
  const items = messages.map((m) => {
    const mine = m.sender_id === me;
    const seenBy = marks.filter(([, seq]) => seq >= m.seq).map(([user]) => user);
    return el(
      "li",
      { class: `msg${mine ? " mine" : ""}`, "data-seq": String(m.seq), "data-sender": m.sender_id, "data-seen": String(m.seq === lastSeenMine) },
      mine ? null : el("span", { class: "from", text: m.sender_id }),
      el("span", { class: "body", text: m.body }),
      el("span", { class: "meta" }, clock(m.created_at), el("span", { class: "seen", text: ` · Seen by ${seenBy.join(", ")}` })),
    );
  });
  for (const body of data.pending.values()) {
    items.push(el("li", { class: "msg mine pending" }, el("span", { class: "body", text: body }), el("span", { class: "meta", text: "sending…" })));
  }
  $("message-list").replaceChildren(...items);
  $("older").hidden = !data.hasMore;
  if (toBottom || nearBottom) box.scrollTop = box.scrollHeight;
}
