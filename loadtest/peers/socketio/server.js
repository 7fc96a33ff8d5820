// The Socket.IO peer: a Socket.IO 4 server doing the chat mix's work the way a typical
// Node back end would, so the same generator (`--framing socketio`) drives it and Switchboard.
// Same event names, data and ack shape as Switchboard (docs/protocol.md §12): JWT in the
// connect packet, rooms and members in PostgreSQL, every message stored with a per-room
// gapless seq (one statement per message: lock the room row, number it, insert; idempotent by
// client_id) before its ack and push; typing relayed only. Across nodes, the
// @socket.io/redis-adapter (each user joins room `u:<user>`; a push goes to its members'
// rooms). Membership is cached per room after the first lookup, as Switchboard does.
//
// Env: PORT (8095), DATABASE_URL (required), REDIS_URL (optional: cluster mode on one Redis,
// `createAdapter`), REDIS_CLUSTER_NODES (optional, instead: seed nodes `redis://h:p,...` of a
// Redis Cluster: node-redis's cluster client and `createShardedAdapter`, sharded pub/sub),
// JWT_SECRET (Switchboard's dev secret), DB_POOL (16), BUS_METRICS=1 (count what the
// adapter's Redis clients carry and serve it on GET /metrics: bus-metrics.js).
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");
const { Pool } = require("pg");
const jwt = require("jsonwebtoken");

const PORT = Number(process.env.PORT || 8095);
const SECRET = process.env.JWT_SECRET || "switchboard-dev-secret-never-use-in-production";
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.DB_POOL || 16) });

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sio_rooms (
  id text PRIMARY KEY, kind text NOT NULL, name text, last_seq bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS sio_members (
  room_id text NOT NULL REFERENCES sio_rooms(id), user_id text NOT NULL, PRIMARY KEY (room_id, user_id));
CREATE TABLE IF NOT EXISTS sio_messages (
  id bigserial PRIMARY KEY, room_id text NOT NULL REFERENCES sio_rooms(id), seq bigint NOT NULL,
  sender_id text NOT NULL, client_id text, kind text NOT NULL, body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (room_id, seq), UNIQUE (room_id, sender_id, client_id));`;

// Number and store one message in one statement (one transaction): the room row's lock
// serializes a room's writers, so seq is gapless; a repeated client_id returns the stored one.
const SEND = `
WITH dup AS (SELECT seq, created_at FROM sio_messages WHERE room_id = $1 AND sender_id = $2 AND client_id = $3),
r AS (UPDATE sio_rooms SET last_seq = last_seq + 1 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM dup) RETURNING last_seq),
ins AS (INSERT INTO sio_messages (room_id, seq, sender_id, client_id, kind, body)
        SELECT $1, last_seq, $2, $3, $4, $5 FROM r RETURNING seq, created_at)
SELECT seq, created_at FROM ins UNION ALL SELECT seq, created_at FROM dup`;

const members = new Map(); // room id → array of user ids

async function roomMembers(roomId) {
  let m = members.get(roomId);
  if (!m) {
    const { rows } = await pool.query("SELECT user_id FROM sio_members WHERE room_id = $1", [roomId]);
    if (rows.length === 0) return null;
    m = rows.map((r) => r.user_id);
    members.set(roomId, m);
  }
  return m;
}

async function createRoom(id, kind, name, users) {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("INSERT INTO sio_rooms (id, kind, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [id, kind, name]);
    await client.query(
      "INSERT INTO sio_members (room_id, user_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
      [id, users],
    );
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK");
    throw e;
  } finally {
    client.release();
  }
  members.set(id, users);
  return { id, kind, name, members: users, last_seq: 0 };
}

const fail = (code, message) => ({ ok: false, error: { code, message } });
const userRooms = (users) => users.map((u) => "u:" + u);

function handlers(io, socket) {
  const user = socket.data.user;
  // Wrap a handler: replies through the ack when one is wanted, `error` events otherwise.
  const on = (event, fn) =>
    socket.on(event, async (data, ack) => {
      let reply;
      try {
        reply = await fn(data || {});
      } catch (e) {
        reply = fail("internal", String(e.message || e));
      }
      if (typeof ack === "function") ack(reply);
      else if (!reply.ok) socket.emit("error", reply.error);
    });

  on("room.direct", async ({ user_id: peer }) => {
    if (typeof peer !== "string" || peer === user) return fail("bad_request", "user_id");
    const pair = [user, peer].sort();
    const room = await createRoom("d:" + pair.join(":"), "direct", null, pair);
    return { ok: true, data: { room } };
  });

  on("room.group.create", async ({ name, members: others }) => {
    if (!Array.isArray(others) || others.length === 0) return fail("bad_request", "members");
    const users = [user, ...new Set(others.filter((m) => m !== user))];
    const room = await createRoom(crypto.randomUUID(), "group", name || null, users);
    socket.to(userRooms(users)).emit("room.created", { room });
    return { ok: true, data: { room } };
  });

  on("message.send", async ({ room_id: roomId, kind = "text", body, client_id: clientId }) => {
    if (typeof body !== "string" || body.trim() === "") return fail("bad_request", "body");
    const m = await roomMembers(roomId);
    if (!m) return fail("not_found", "no such room");
    if (!m.includes(user)) return fail("forbidden", "not a member");
    const { rows } = await pool.query(SEND, [roomId, user, clientId ?? null, kind, body]);
    const message = {
      room_id: roomId, seq: Number(rows[0].seq), sender_id: user, kind, body,
      client_id: clientId ?? null, created_at: rows[0].created_at,
    };
    socket.to(userRooms(m)).emit("message.new", { message });
    return { ok: true, data: { message } };
  });

  on("typing", async ({ room_id: roomId, typing }) => {
    const m = await roomMembers(roomId);
    if (!m) return fail("not_found", "no such room");
    if (!m.includes(user)) return fail("forbidden", "not a member");
    socket.to(userRooms(m)).emit("typing", { room_id: roomId, user_id: user, typing: !!typing });
    return { ok: true };
  });

  on("message.history", async ({ room_id: roomId, after_seq: after = 0, limit = 50 }) => {
    const m = await roomMembers(roomId);
    if (!m || !m.includes(user)) return fail("forbidden", "not a member");
    const n = Math.min(Math.max(limit, 1), 100);
    const { rows } = await pool.query(
      "SELECT room_id, seq, sender_id, kind, body, client_id, created_at FROM sio_messages " +
        "WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
      [roomId, after, n + 1],
    );
    const messages = rows.slice(0, n).map((r) => ({ ...r, seq: Number(r.seq) }));
    return { ok: true, data: { messages, has_more: rows.length > n } };
  });
}

// The stock adapter on one Redis, or the sharded one (SSUBSCRIBE/SPUBLISH, Redis 7) on a
// Redis Cluster; with bus metrics, its clients counted before the adapter gets them.
async function redisAdapter(busMetrics) {
  const { createClient, createCluster } = require("redis");
  const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
  const seeds = (process.env.REDIS_CLUSTER_NODES || "").split(",").filter(Boolean);
  const pub = seeds.length > 0
    ? createCluster({ rootNodes: seeds.map((url) => ({ url })) })
    : createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  if (busMetrics) {
    busMetrics.countPublisher(pub);
    busMetrics.countSubscriber(sub);
  }
  return seeds.length > 0 ? createShardedAdapter(pub, sub) : createAdapter(pub, sub);
}

async function main() {
  await pool.query(SCHEMA);
  const busMetrics = process.env.BUS_METRICS === "1" ? require("./bus-metrics") : null;
  const server = busMetrics ? http.createServer(busMetrics.serve) : http.createServer();
  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    pingInterval: 15000,
    pingTimeout: 30000,
  });
  if (process.env.REDIS_URL || process.env.REDIS_CLUSTER_NODES) {
    io.adapter(await redisAdapter(busMetrics));
  }
  io.use((socket, next) => {
    try {
      const claims = jwt.verify(socket.handshake.auth?.token ?? "", SECRET, { algorithms: ["HS256"] });
      if (typeof claims.sub !== "string") throw new Error("no sub");
      socket.data.user = claims.sub;
      next();
    } catch (e) {
      next(new Error("not authorized"));
    }
  });
  io.on("connection", (socket) => {
    socket.join("u:" + socket.data.user);
    handlers(io, socket);
  });
  server.listen(PORT, "127.0.0.1", () => console.error(`socket.io peer on 127.0.0.1:${PORT}`));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
