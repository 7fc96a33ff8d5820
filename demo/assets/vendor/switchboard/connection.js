/**
 * The connection core: one WebSocket to `/ws`, requests as promises matched to acks by id,
 * `hello`, a keepalive, reconnect with backoff shaped by the close code, and token refresh.
 * It knows nothing of rooms or messages: the subclass sees each push, each reply and each
 * connect, drop and stop through the `handle…` hooks.
 *
 * Invariants:
 * - only the current socket's events count: a socket is detached before it is replaced;
 * - a request in flight when its socket closes rejects with `disconnected` and is never
 *   resent (it may have run);
 * - the first `connect()` is not retried; later drops reconnect until `close()`, a revoked
 *   token (4003), or an expired one (4001) without a `refreshToken` that gives a new one.
 * @module
 */
import { CloseCode, reconnectDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { SwitchboardError } from "./errors.js";
import { resolveOptions, } from "./options.js";
/** A token this close to its `exp` is refreshed before reconnecting with it. */
const TOKEN_EXPIRY_MARGIN_S = 5;
/** How long an errored socket that opened may take to report its close before it is dropped. */
const CLOSE_AFTER_ERROR_GRACE_MS = 1000;
export class SwitchboardConnection {
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
        this.opts = resolveOptions(options);
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
        this.stopForGood(new SwitchboardError("closed", "the client was closed"));
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
    /** True once `connect()` succeeded and the client has stopped for good since. */
    get closedAfterConnecting() {
        return this.stateValue === "closed" && this.everConnected;
    }
    /** The current socket, as an identity: work tied to one socket stops when this changes. */
    get socket() {
        return this.ws;
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
            setTimeout(() => this.onSocketClosed(ws, CloseCode.Abnormal, opened ? "socket error" : "connection failed"), opened ? CLOSE_AFTER_ERROR_GRACE_MS : 0);
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
        this.handleDisconnected();
        if (this.stateValue === "closed")
            return;
        if (!this.everConnected) {
            // The first connect failed: report it and stop; the caller decides whether to retry.
            this.stateValue = "idle";
            const err = new SwitchboardError("disconnected", `could not connect (close ${code}${reason ? `: ${reason}` : ""})`);
            this.rejectConnectWaiters(err);
            return;
        }
        if (code === CloseCode.TokenRevoked) {
            const err = new SwitchboardError("revoked", `the token was revoked (4003${reason ? `: ${reason}` : ""}); not reconnecting`);
            this.stopAfterClose(code, reason, wasConnected, err);
            return;
        }
        if (code === CloseCode.TokenExpired && !this.refreshTokenFn) {
            const err = new SwitchboardError("token_expired", "the token expired (4001) and there is no refreshToken");
            this.stopAfterClose(code, reason, wasConnected, err);
            return;
        }
        if (wasConnected)
            this.emit("disconnected", { code, reason, willReconnect: true });
        this.scheduleReconnect(code);
    }
    /** Stops for good after a close the client must not reconnect from. */
    stopAfterClose(code, reason, wasConnected, err) {
        this.stateValue = "closed";
        if (wasConnected)
            this.emit("disconnected", { code, reason, willReconnect: false });
        this.emit("error", err);
        this.stopForGood(err);
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
        const needsToken = code === CloseCode.TokenExpired || tokenExpiresWithin(this.token, TOKEN_EXPIRY_MARGIN_S);
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
        this.handleConnected(reconnected);
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
    }
    failInFlight(err) {
        const entries = [...this.inFlight.values()];
        this.inFlight.clear();
        for (const f of entries) {
            clearTimeout(f.timer);
            f.reject(new SwitchboardError(err.code, err.message, f.event));
        }
    }
    rejectConnectWaiters(err) {
        const waiters = this.connectWaiters;
        this.connectWaiters = [];
        for (const w of waiters)
            w.reject(err);
    }
    /** Rejects everything pending with `err`: requests, `connect()` callers, and the subclass's work. */
    stopForGood(err) {
        this.stopTimers();
        this.failInFlight(err);
        this.rejectConnectWaiters(err);
        this.handleStopped(err);
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
            this.onAck(frame);
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
            case "auth.expiring":
                void this.refreshOnExpiring();
                break;
        }
        if (this.handlePush(frame.event, data))
            return;
        this.emit(frame.event, data);
    }
    onAck(frame) {
        const f = this.inFlight.get(frame.ack);
        if (!f)
            return;
        this.inFlight.delete(frame.ack);
        clearTimeout(f.timer);
        if (frame.ok) {
            f.resolve(frame.data);
            return;
        }
        const code = (frame.error?.code ?? "internal");
        f.reject(new SwitchboardError(code, String(frame.error?.message ?? "request failed"), f.event));
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
    /** Sends an event without an id (no ack, nothing waits) if connected; drops it otherwise. */
    sendUnacknowledged(event, data) {
        if (this.ws && this.stateValue === "connected") {
            this.ws.send(JSON.stringify({ event, data }));
        }
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
        this.handleReply(event, reply);
        return reply;
    }
}
/** Unhooks a socket so its late events reach nothing. */
function detach(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
}
function errorText(err) {
    return err instanceof Error ? err.message : String(err);
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
