/**
 * The Switchboard client: one WebSocket to `/ws`, requests as promises matched to acks by id,
 * typed pushes, automatic reconnect by close code, and, after every (re)connect, a resync
 * that keeps each room's `message.new` stream gapless, duplicate-free and in `seq` order.
 *
 * Invariants:
 * - per room, `message.new` is emitted for seq N only after N−1 was emitted or accounted for
 *   (a message this client sent, or history the user cleared), and never twice;
 * - a message this client sent is reported by its `send()` promise, never as `message.new`
 *   (as the server does: the sending connection gets the ack, not the push);
 * - a send is transmitted with one `client_id` for its whole life, so resending it after a
 *   drop, a timeout or an `unavailable` cannot store it twice; sends to one room go one at a
 *   time, so they are stored in the order they were made.
 * @module
 */
import { CloseCode, DEFAULT_BACKOFF, reconnectDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { SwitchboardError } from "./errors.js";
/** How long a gap may stay open before history is asked for it: the server itself holds a
 * push up to 250 ms to fill a gap, and an ack can overtake another sender's push. */
const GAP_GRACE_MS = 300;
export class Switchboard {
    opts;
    refreshTokenFn;
    WS;
    events = new Emitter();
    token;
    ws = null;
    stateValue = "idle";
    everConnected = false;
    attempt = 0;
    reconnectTimer = null;
    keepaliveTimer = null;
    nextId = 1;
    inFlight = new Map();
    connectWaiters = [];
    outbox = new Map();
    queuedSends = 0;
    rooms = new Map();
    resyncDelivered = 0;
    /** The user of the token, from `hello`. */
    userId = null;
    /** This socket's id, from `hello` (the call signaling's "device"). */
    connectionId = null;
    /** The node that served `hello`. */
    node = null;
    constructor(options) {
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (!WS) {
            throw new TypeError("no WebSocket: pass the `WebSocket` option (Node < 22: `--experimental-websocket` or the `ws` package)");
        }
        this.WS = WS;
        this.token = options.token;
        this.refreshTokenFn = options.refreshToken;
        this.opts = {
            url: options.url,
            requestTimeoutMs: options.requestTimeoutMs ?? 15_000,
            sendTimeoutMs: options.sendTimeoutMs ?? 120_000,
            maxQueuedSends: options.maxQueuedSends ?? 100,
            backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
            keepaliveMs: options.keepaliveMs ?? 25_000,
            resyncPageSize: Math.min(100, Math.max(1, options.resyncPageSize ?? 100)),
            resyncConcurrency: Math.max(1, options.resyncConcurrency ?? 4),
        };
    }
    get state() {
        return this.stateValue;
    }
    on(event, listener) {
        return this.events.on(event, listener);
    }
    once(event, listener) {
        return this.events.once(event, listener);
    }
    off(event, listener) {
        this.events.off(event, listener);
    }
    emit(event, data) {
        this.events.emit(event, data);
    }
    // ---------------------------------------------------------------- connection
    /** Opens the connection; resolves once `hello` arrived. The first connect is not retried:
     * it rejects with `disconnected` if the socket closes before `hello`. Later drops reconnect
     * by themselves. */
    connect() {
        if (this.stateValue === "connected")
            return Promise.resolve();
        const waiter = new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
        if (this.stateValue === "idle" || this.stateValue === "closed") {
            this.stateValue = "connecting";
            this.openSocket();
        }
        return waiter;
    }
    /** Closes the connection for good: pending requests and queued sends reject with `closed`. */
    close() {
        const wasState = this.stateValue;
        this.stateValue = "closed";
        this.stopTimers();
        const ws = this.ws;
        this.ws = null;
        if (ws) {
            detach(ws);
            try {
                ws.close(CloseCode.Normal, "client closed");
            }
            catch {
                /* already closing */
            }
        }
        this.failEverything(new SwitchboardError("closed", "the client was closed"));
        if (ws && wasState === "connected") {
            this.emit("disconnected", { code: CloseCode.Normal, reason: "client closed", willReconnect: false });
        }
    }
    /** Replaces the token used for the next reconnect (and sends it with `auth.refresh` when
     * connected). */
    async setToken(token) {
        this.token = token;
        if (this.stateValue === "connected") {
            const reply = await this.rawRequest("auth.refresh", { token }, this.opts.requestTimeoutMs);
            this.emit("token.refreshed", { expiresAt: reply.expires_at });
        }
    }
    socketUrl() {
        const sep = this.opts.url.includes("?") ? "&" : "?";
        return `${this.opts.url}${sep}token=${encodeURIComponent(this.token)}`;
    }
    openSocket() {
        let ws;
        try {
            ws = new this.WS(this.socketUrl());
        }
        catch (err) {
            this.onSocketClosed(null, CloseCode.Abnormal, String(err));
            return;
        }
        this.ws = ws;
        ws.onmessage = (ev) => {
            if (this.ws === ws && typeof ev.data === "string")
                this.onFrame(ev.data);
        };
        let opened = false;
        ws.onopen = () => {
            opened = true;
        };
        ws.onclose = (ev) => this.onSocketClosed(ws, ev.code, ev.reason);
        ws.onerror = () => {
            // A close event should follow, but some implementations (Node 20's) send none for a
            // refused upgrade: stop waiting for it (at once if the socket never opened).
            setTimeout(() => this.onSocketClosed(ws, CloseCode.Abnormal, opened ? "socket error" : "connection failed"), opened ? 1000 : 0);
        };
    }
    /** Drops a socket we no longer trust (keepalive failed) without waiting for its close handshake. */
    dropSocket(ws, reason) {
        detach(ws);
        try {
            ws.close(4000, reason);
        }
        catch {
            /* ignore */
        }
        this.onSocketClosed(ws, CloseCode.Abnormal, reason);
    }
    onSocketClosed(ws, code, reason) {
        if (ws !== this.ws)
            return;
        if (ws)
            detach(ws);
        this.ws = null;
        this.stopKeepalive();
        const wasConnected = this.stateValue === "connected";
        this.failInFlight(new SwitchboardError("disconnected", `connection closed (${code}${reason ? ` ${reason}` : ""})`));
        for (const queue of this.outbox.values())
            for (const s of queue)
                s.inFlight = false;
        if (this.stateValue === "closed")
            return;
        if (!this.everConnected) {
            // The first connect failed: report it and stop; the caller decides whether to retry.
            this.stateValue = "idle";
            const err = new SwitchboardError("disconnected", `could not connect (close ${code}${reason ? `: ${reason}` : ""})`);
            const waiters = this.connectWaiters;
            this.connectWaiters = [];
            for (const w of waiters)
                w.reject(err);
            return;
        }
        if (code === CloseCode.TokenRevoked) {
            this.stateValue = "closed";
            if (wasConnected)
                this.emit("disconnected", { code, reason, willReconnect: false });
            const err = new SwitchboardError("revoked", `the token was revoked (4003${reason ? `: ${reason}` : ""}); not reconnecting`);
            this.emit("error", err);
            this.failEverything(err);
            return;
        }
        if (code === CloseCode.TokenExpired && !this.refreshTokenFn) {
            this.stateValue = "closed";
            if (wasConnected)
                this.emit("disconnected", { code, reason, willReconnect: false });
            const err = new SwitchboardError("token_expired", "the token expired (4001) and there is no refreshToken");
            this.emit("error", err);
            this.failEverything(err);
            return;
        }
        if (wasConnected)
            this.emit("disconnected", { code, reason, willReconnect: true });
        this.scheduleReconnect(code);
    }
    scheduleReconnect(code) {
        this.stateValue = "reconnecting";
        const delayMs = Math.round(reconnectDelay(code, this.attempt, this.opts.backoff));
        this.attempt += 1;
        this.emit("reconnecting", { attempt: this.attempt, delayMs, code });
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = null;
            void this.reconnectNow(code);
        }, delayMs);
    }
    async reconnectNow(code) {
        if (this.stateValue !== "reconnecting")
            return;
        const needsToken = code === CloseCode.TokenExpired || tokenExpiresWithin(this.token, 5);
        if (needsToken && this.refreshTokenFn) {
            try {
                this.token = await this.refreshTokenFn();
            }
            catch (err) {
                this.emit("error", new SwitchboardError("token_expired", `refreshToken failed: ${errorText(err)}`));
                if (this.stateValue === "reconnecting")
                    this.scheduleReconnect(code);
                return;
            }
            if (this.stateValue !== "reconnecting")
                return;
        }
        this.openSocket();
    }
    onHello(data) {
        this.userId = data.user_id;
        this.connectionId = data.connection_id;
        this.node = data.node;
        const reconnected = this.everConnected;
        this.everConnected = true;
        this.stateValue = "connected";
        this.attempt = 0;
        this.startKeepalive();
        this.emit("connected", {
            userId: data.user_id,
            connectionId: data.connection_id,
            node: data.node,
            reconnected,
        });
        const waiters = this.connectWaiters;
        this.connectWaiters = [];
        for (const w of waiters)
            w.resolve();
        for (const roomId of this.outbox.keys())
            this.pumpSends(roomId);
        if (reconnected || this.rooms.size > 0)
            void this.resyncAll();
    }
    startKeepalive() {
        this.stopKeepalive();
        if (this.opts.keepaliveMs <= 0)
            return;
        const ws = this.ws;
        this.keepaliveTimer = setInterval(() => {
            if (!ws || this.ws !== ws || this.stateValue !== "connected")
                return;
            this.rawRequest("presence.query", { user_ids: [] }, this.opts.requestTimeoutMs).catch((err) => {
                if (err.code === "timeout" && this.ws === ws)
                    this.dropSocket(ws, "keepalive timeout");
            });
        }, this.opts.keepaliveMs);
    }
    stopKeepalive() {
        if (this.keepaliveTimer)
            clearInterval(this.keepaliveTimer);
        this.keepaliveTimer = null;
    }
    stopTimers() {
        this.stopKeepalive();
        if (this.reconnectTimer)
            clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
        for (const room of this.rooms.values()) {
            if (room.gapTimer)
                clearTimeout(room.gapTimer);
            room.gapTimer = null;
        }
    }
    failInFlight(err) {
        const entries = [...this.inFlight.values()];
        this.inFlight.clear();
        for (const f of entries) {
            clearTimeout(f.timer);
            f.reject(new SwitchboardError(err.code, err.message, f.event));
        }
    }
    failEverything(err) {
        this.stopTimers();
        this.failInFlight(err);
        const waiters = this.connectWaiters;
        this.connectWaiters = [];
        for (const w of waiters)
            w.reject(err);
        for (const queue of this.outbox.values())
            for (const s of [...queue])
                this.finishSend(s, err);
        this.outbox.clear();
    }
    // ---------------------------------------------------------------- frames
    onFrame(text) {
        let frame;
        try {
            frame = JSON.parse(text);
        }
        catch {
            return;
        }
        if (frame === null || typeof frame !== "object")
            return;
        if ("ack" in frame) {
            const f = this.inFlight.get(frame.ack);
            if (!f)
                return;
            this.inFlight.delete(frame.ack);
            clearTimeout(f.timer);
            if (frame.ok)
                f.resolve(frame.data);
            else
                f.reject(new SwitchboardError((frame.error?.code ?? "internal"), String(frame.error?.message ?? "request failed"), f.event));
            return;
        }
        if (typeof frame.event !== "string")
            return;
        const data = frame.data;
        switch (frame.event) {
            case "hello":
                this.onHello(data);
                return;
            case "error":
                this.emit("error", new SwitchboardError(data?.code ?? "internal", String(data?.message ?? "")));
                return;
            case "message.new":
                if (data?.message)
                    this.acceptMessage(data.message, { own: this.isOwnSend(data.message), missed: false });
                return;
            case "room.created":
                if (data?.room)
                    this.holdRoom(data.room.id, data.room.last_seq ?? 0);
                break;
            case "room.member_left":
                if (data?.user_id === this.userId && data?.room_id)
                    this.rooms.delete(data.room_id);
                break;
            case "auth.expiring":
                void this.refreshOnExpiring();
                break;
        }
        this.emit(frame.event, data);
    }
    async refreshOnExpiring() {
        if (!this.refreshTokenFn)
            return;
        try {
            const token = await this.refreshTokenFn();
            await this.setToken(token);
        }
        catch (err) {
            this.emit("error", err instanceof SwitchboardError ? err : new SwitchboardError("token_expired", `refreshToken failed: ${errorText(err)}`));
        }
    }
    rawRequest(event, data, timeoutMs) {
        const ws = this.ws;
        if (!ws || this.stateValue !== "connected") {
            return Promise.reject(new SwitchboardError("disconnected", "not connected", event));
        }
        const id = this.nextId++;
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                if (this.inFlight.delete(id)) {
                    reject(new SwitchboardError("timeout", `no ack for ${event} within ${timeoutMs} ms`, event));
                }
            }, timeoutMs);
            this.inFlight.set(id, { event, resolve, reject, timer });
            try {
                ws.send(JSON.stringify(data === undefined ? { event, id } : { event, id, data }));
            }
            catch (err) {
                this.inFlight.delete(id);
                clearTimeout(timer);
                reject(new SwitchboardError("disconnected", `send failed: ${errorText(err)}`, event));
            }
        });
    }
    /** Waits until connected (for at most `timeoutMs`). */
    whenConnected(timeoutMs) {
        if (this.stateValue === "connected")
            return Promise.resolve();
        if (this.stateValue === "closed" || this.stateValue === "idle") {
            return Promise.reject(new SwitchboardError("closed", "not connected: call connect() first"));
        }
        return new Promise((resolve, reject) => {
            const waiter = {
                resolve: () => {
                    clearTimeout(timer);
                    resolve();
                },
                reject: (e) => {
                    clearTimeout(timer);
                    reject(e);
                },
            };
            const timer = setTimeout(() => {
                this.connectWaiters = this.connectWaiters.filter((w) => w !== waiter);
                reject(new SwitchboardError("timeout", `not connected within ${timeoutMs} ms`));
            }, timeoutMs);
            this.connectWaiters.push(waiter);
        });
    }
    async request(event, data, options) {
        const timeoutMs = options?.timeoutMs ?? this.opts.requestTimeoutMs;
        const started = Date.now();
        await this.whenConnected(timeoutMs);
        const reply = await this.rawRequest(event, data, Math.max(1, timeoutMs - (Date.now() - started)));
        this.observeReply(event, reply);
        return reply;
    }
    /** Learns rooms (and their current top seq) from replies. */
    observeReply(event, reply) {
        if (!reply || typeof reply !== "object")
            return;
        if (reply.room && typeof reply.room.id === "string")
            this.holdRoom(reply.room.id, reply.room.last_seq ?? 0);
        if (event === "room.list" && Array.isArray(reply.rooms)) {
            for (const room of reply.rooms) {
                const held = this.rooms.get(room.id);
                if (!held)
                    this.holdRoom(room.id, room.last_seq ?? 0);
                else if ((room.last_seq ?? 0) > held.seq)
                    this.scheduleGapFill(room.id, held);
            }
        }
        if (event === "room.leave" && typeof reply.room_id === "string")
            this.rooms.delete(reply.room_id);
    }
    // ---------------------------------------------------------------- chat
    /** Opens (or returns) the direct room with `userId`. */
    async openDirect(userId) {
        return (await this.request("room.direct", { user_id: userId })).room;
    }
    async createGroup(name, members) {
        return (await this.request("room.group.create", { name, members })).room;
    }
    /** One page of your rooms, newest activity first; `before` is the last room id of the previous page. */
    async listRooms(options = {}) {
        return (await this.request("room.list", options)).rooms;
    }
    async leaveRoom(roomId) {
        await this.request("room.leave", { room_id: roomId });
    }
    /**
     * Sends a message; resolves with the stored message once the server committed it. Every
     * send carries a `client_id` (generated unless given). While offline the send is queued
     * (at most `maxQueuedSends`); a send whose ack was lost is resent with the same `client_id`
     * after reconnecting, so it is stored once. Rejects on a refusal (`forbidden`, `too_large`,
     * …), `queue_full`, `closed`, or `timeout` after `sendTimeoutMs`.
     */
    send(roomId, body, options = {}) {
        if (this.stateValue === "closed" && this.everConnected) {
            return Promise.reject(new SwitchboardError("closed", "the client is closed", "message.send"));
        }
        if (this.queuedSends >= this.opts.maxQueuedSends) {
            return Promise.reject(new SwitchboardError("queue_full", `${this.queuedSends} sends already waiting`, "message.send"));
        }
        const clientId = options.clientId ?? newClientId();
        return new Promise((resolve, reject) => {
            const send = {
                roomId,
                data: { room_id: roomId, body, client_id: clientId, ...(options.kind ? { kind: options.kind } : {}) },
                resolve,
                reject,
                inFlight: false,
                retryTimer: null,
                done: false,
                deadline: setTimeout(() => {
                    this.finishSend(send, new SwitchboardError("timeout", `not acknowledged within ${this.opts.sendTimeoutMs} ms`, "message.send"));
                    this.pumpSends(roomId);
                }, this.opts.sendTimeoutMs),
            };
            let queue = this.outbox.get(roomId);
            if (!queue) {
                queue = [];
                this.outbox.set(roomId, queue);
            }
            queue.push(send);
            this.queuedSends += 1;
            this.pumpSends(roomId);
        });
    }
    /** Sends the head of a room's queue if it is not in flight. */
    pumpSends(roomId) {
        const queue = this.outbox.get(roomId);
        const head = queue?.[0];
        if (!head || head.inFlight || head.retryTimer || this.stateValue !== "connected")
            return;
        head.inFlight = true;
        this.rawRequest("message.send", head.data, this.opts.requestTimeoutMs).then((reply) => {
            if (head.done)
                return;
            this.acceptMessage(reply.message, { own: true, missed: false });
            this.finishSend(head, null, reply.message);
            this.pumpSends(roomId);
        }, (err) => {
            head.inFlight = false;
            if (head.done)
                return;
            if (err.code === "disconnected")
                return; // resent from onHello
            if (err.retryable) {
                // Same client_id: the server returns the stored message if the first try committed.
                const wait = err.code === "timeout" ? 0 : 250 + Math.random() * 1000;
                head.retryTimer = setTimeout(() => {
                    head.retryTimer = null;
                    this.pumpSends(roomId);
                }, wait);
                return;
            }
            this.finishSend(head, err);
            this.pumpSends(roomId);
        });
    }
    finishSend(send, err, message) {
        if (send.done)
            return;
        send.done = true;
        clearTimeout(send.deadline);
        if (send.retryTimer)
            clearTimeout(send.retryTimer);
        const queue = this.outbox.get(send.roomId);
        const at = queue ? queue.indexOf(send) : -1;
        if (queue && at >= 0) {
            queue.splice(at, 1);
            if (queue.length === 0)
                this.outbox.delete(send.roomId);
        }
        this.queuedSends -= 1;
        if (err)
            send.reject(err);
        else
            send.resolve(message);
    }
    /** Whether a message carries the client_id of a send of ours still waiting for its ack. */
    isOwnSend(message) {
        if (!message.client_id || message.sender_id !== this.userId)
            return false;
        return (this.outbox.get(message.room_id) ?? []).some((s) => s.data.client_id === message.client_id);
    }
    /** A page of a room's history, in ascending seq (`before_seq` or `after_seq` as cursor). */
    async history(roomId, options = {}) {
        const reply = await this.request("message.history", {
            room_id: roomId,
            ...(options.beforeSeq !== undefined ? { before_seq: options.beforeSeq } : {}),
            ...(options.afterSeq !== undefined ? { after_seq: options.afterSeq } : {}),
            ...(options.limit !== undefined ? { limit: options.limit } : {}),
        });
        if (!this.rooms.has(roomId) && options.beforeSeq === undefined && options.afterSeq === undefined) {
            const last = reply.messages[reply.messages.length - 1];
            this.holdRoom(roomId, last ? last.seq : 0);
        }
        return { messages: reply.messages, hasMore: reply.has_more };
    }
    /** Moves your read mark (to the latest when `seq` is omitted); resolves with the mark in force. */
    async markRead(roomId, seq) {
        return (await this.request("room.read", seq === undefined ? { room_id: roomId } : { room_id: roomId, seq })).seq;
    }
    async clearRoom(roomId) {
        return (await this.request("room.clear", { room_id: roomId })).cleared_seq;
    }
    /** Typing indicator. Sent without an id unless `ack` is set: no reply, nothing waits. */
    async typing(roomId, typing = true, options = {}) {
        if (options.ack) {
            await this.request("typing", { room_id: roomId, typing });
            return;
        }
        if (this.ws && this.stateValue === "connected") {
            this.ws.send(JSON.stringify({ event: "typing", data: { room_id: roomId, typing } }));
        }
    }
    async queryPresence(userIds) {
        return (await this.request("presence.query", { user_ids: userIds })).users;
    }
    // ---------------------------------------------------------------- rooms held and resync
    /**
     * Starts holding a room: from now on its `message.new` stream is kept gapless from `seq`
     * (the highest seq the app already has) and resynced after reconnects. Rooms are also held
     * automatically from `listRooms`, `openDirect`, `createGroup`, sends, `room.created` and
     * `message.new`. Use this to restore cursors the app persisted.
     */
    trackRoom(roomId, seq) {
        this.holdRoom(roomId, seq);
        const room = this.rooms.get(roomId);
        if (room && this.stateValue === "connected")
            this.fillRoom(roomId, room, false).catch(() => undefined);
    }
    /** The highest seq delivered (or sent) per held room. */
    roomCursors() {
        return new Map([...this.rooms].map(([id, r]) => [id, r.seq]));
    }
    holdRoom(roomId, seq) {
        if (!this.rooms.has(roomId)) {
            this.rooms.set(roomId, { seq, buffer: new Map(), filling: null, gapTimer: null });
        }
    }
    acceptMessage(message, how) {
        let room = this.rooms.get(message.room_id);
        if (!room) {
            // First sight of the room (someone opened a direct room with us): start at this message.
            room = { seq: message.seq - 1, buffer: new Map(), filling: null, gapTimer: null };
            this.rooms.set(message.room_id, room);
        }
        if (message.seq <= room.seq || room.buffer.has(message.seq))
            return;
        room.buffer.set(message.seq, { message, own: how.own, missed: how.missed });
        this.drain(room);
        if (room.buffer.size > 0)
            this.scheduleGapFill(message.room_id, room);
    }
    drain(room) {
        for (;;) {
            const next = room.buffer.get(room.seq + 1);
            if (!next)
                break;
            room.buffer.delete(room.seq + 1);
            room.seq += 1;
            if (!next.own) {
                if (next.missed)
                    this.resyncDelivered += 1;
                this.emit("message.new", next.missed ? { message: next.message, missed: true } : { message: next.message });
            }
        }
    }
    scheduleGapFill(roomId, room) {
        if (room.filling || room.gapTimer || this.stateValue !== "connected")
            return;
        room.gapTimer = setTimeout(() => {
            room.gapTimer = null;
            if (this.rooms.get(roomId) === room)
                this.fillRoom(roomId, room, false).catch(() => undefined);
        }, GAP_GRACE_MS);
    }
    /** Reads history after the room's cursor until the server has no more, delivering in order. */
    fillRoom(roomId, room, missed) {
        if (room.filling)
            return room.filling;
        if (room.gapTimer) {
            clearTimeout(room.gapTimer);
            room.gapTimer = null;
        }
        const run = async () => {
            let rechecked = false;
            for (;;) {
                const after = room.seq;
                const page = await this.rawRequest("message.history", { room_id: roomId, after_seq: after, limit: this.opts.resyncPageSize }, this.opts.requestTimeoutMs);
                const first = page.messages[0];
                if (first && first.seq > after + 1 && room.seq === after) {
                    // The messages below were cleared by this user (§8.5): the page is complete.
                    room.seq = first.seq - 1;
                    for (const seq of room.buffer.keys())
                        if (seq <= room.seq)
                            room.buffer.delete(seq);
                }
                for (const m of page.messages)
                    this.acceptMessage(m, { own: this.isOwnSend(m), missed });
                if (page.has_more && page.messages.length > 0)
                    continue;
                if (room.buffer.size === 0)
                    return;
                if (!rechecked) {
                    // Pushes buffered above a gap arrived after this page was read: read once more.
                    rechecked = true;
                    continue;
                }
                // Still a hole under the buffered pushes after a fresh read: cleared history.
                room.seq = Math.min(...room.buffer.keys()) - 1;
                this.drain(room);
                return;
            }
        };
        room.filling = run()
            .catch((err) => {
            if (err.code === "forbidden" || err.code === "not_found")
                this.rooms.delete(roomId);
            else if (err.code !== "disconnected" && err.code !== "closed")
                this.emit("error", err);
            throw err;
        })
            .finally(() => {
            room.filling = null;
            if (room.buffer.size > 0 && this.rooms.get(roomId) === room)
                this.scheduleGapFill(roomId, room);
        });
        return room.filling;
    }
    async resyncAll() {
        const ws = this.ws;
        this.resyncDelivered = 0;
        const ids = [...this.rooms.keys()];
        let next = 0;
        let failed = false;
        const worker = async () => {
            while (next < ids.length && this.ws === ws) {
                const id = ids[next++];
                const room = this.rooms.get(id);
                if (!room)
                    continue;
                for (let tries = 0;; tries++) {
                    try {
                        await this.fillRoom(id, room, true);
                        break;
                    }
                    catch (err) {
                        const e = err;
                        if (e.code === "forbidden" || e.code === "not_found")
                            break;
                        if ((e.code === "rate_limited" || e.code === "unavailable") && tries < 5 && this.ws === ws) {
                            await sleep(500 * 2 ** tries);
                            continue;
                        }
                        failed = true;
                        return;
                    }
                }
            }
        };
        await Promise.all(Array.from({ length: Math.min(this.opts.resyncConcurrency, ids.length) }, worker));
        if (!failed && this.ws === ws && this.stateValue === "connected") {
            this.emit("resynced", { rooms: ids.length, messages: this.resyncDelivered });
        }
    }
    // ---------------------------------------------------------------- calls
    async startCall(roomId, media = "video") {
        return (await this.request("call.start", { room_id: roomId, media })).call;
    }
    async acceptCall(callId) {
        return (await this.request("call.accept", { call_id: callId })).call;
    }
    async declineCall(callId) {
        return (await this.request("call.decline", { call_id: callId })).call;
    }
    async endCall(callId) {
        return (await this.request("call.end", { call_id: callId })).call;
    }
    /** Relays an SDP or ICE payload to a party (`to` is needed in calls of three or more). */
    async signal(callId, signal, to) {
        await this.request("call.signal", to === undefined ? { call_id: callId, signal } : { call_id: callId, signal, to });
    }
    async callHistory(roomId, limit) {
        return (await this.request("call.history", limit === undefined ? { room_id: roomId } : { room_id: roomId, limit })).calls;
    }
    // ---------------------------------------------------------------- live sessions
    async startLive(title) {
        return (await this.request("live.create", { title })).session;
    }
    async joinLive(sessionId) {
        return (await this.request("live.join", { session_id: sessionId })).session;
    }
    async leaveLive(sessionId) {
        return (await this.request("live.leave", { session_id: sessionId })).session;
    }
    async comment(sessionId, text) {
        await this.request("live.comment", { session_id: sessionId, text });
    }
    async liveComments(sessionId, options = {}) {
        const reply = await this.request("live.comments", { session_id: sessionId, ...options });
        return { comments: reply.comments, hasMore: reply.has_more };
    }
    async raiseHand(sessionId) {
        await this.request("live.raise_hand", { session_id: sessionId });
    }
    async lowerHand(sessionId, userId) {
        await this.request("live.lower_hand", userId === undefined ? { session_id: sessionId } : { session_id: sessionId, user_id: userId });
    }
    async hands(sessionId) {
        return (await this.request("live.hands", { session_id: sessionId })).hands;
    }
    async acceptHand(sessionId, userId) {
        await this.request("live.accept_hand", { session_id: sessionId, user_id: userId });
    }
    async inviteToLive(sessionId, userId) {
        await this.request("live.invite", { session_id: sessionId, user_id: userId });
    }
    async endLive(sessionId) {
        return (await this.request("live.end", { session_id: sessionId })).session;
    }
    // ---------------------------------------------------------------- social
    async follow(userId) {
        await this.request("follow.request", { user_id: userId });
    }
    async requestFriend(userId) {
        await this.request("friend.request", { user_id: userId });
    }
    async respondFollow(userId, accept) {
        return (await this.request("follow.respond", { user_id: userId, accept })).room;
    }
    async respondFriend(userId, accept) {
        return (await this.request("friend.respond", { user_id: userId, accept })).room;
    }
    async notifications(options = {}) {
        const { unreadOnly, ...rest } = options;
        const data = unreadOnly === undefined ? rest : { ...rest, unread_only: unreadOnly };
        return (await this.request("notification.list", data)).notifications;
    }
    async markNotificationsRead(ids) {
        return (await this.request("notification.read", ids === undefined ? {} : { ids })).read;
    }
    async like(userId, like = true) {
        return this.request("like", { user_id: userId, like });
    }
    async block(userId, blocked = true) {
        await this.request("block", { user_id: userId, blocked });
    }
    async blocked() {
        return (await this.request("block.list", undefined)).users;
    }
    async report(userId, reason, about = {}) {
        return (await this.request("report", {
            user_id: userId,
            reason,
            ...(about.roomId ? { room_id: about.roomId } : {}),
            ...(about.messageId ? { message_id: about.messageId } : {}),
        })).report_id;
    }
    async updateLocation(lat, lng) {
        return this.request("location.update", { lat, lng });
    }
    async nearby(radiusKm, limit) {
        return (await this.request("location.nearby", limit === undefined ? { radius_km: radiusKm } : { radius_km: radiusKm, limit }))
            .users;
    }
}
function detach(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
}
function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}
function errorText(err) {
    return err instanceof Error ? err.message : String(err);
}
/** A client_id unique enough to never repeat in a room: random, with the time for readability. */
function newClientId() {
    const uuid = globalThis.crypto?.randomUUID?.();
    return uuid ?? `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}
/** Whether the JWT's `exp` is less than `seconds` away (false when it cannot be read). */
export function tokenExpiresWithin(token, seconds) {
    const payload = token.split(".")[1];
    if (!payload)
        return false;
    try {
        const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
        const exp = JSON.parse(json).exp;
        return typeof exp === "number" && exp * 1000 - Date.now() < seconds * 1000;
    }
    catch {
        return false;
    }
}
