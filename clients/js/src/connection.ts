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
import { SwitchboardError, type ErrorCode } from "./errors.js";
import {
  resolveOptions,
  type ConnectionState,
  type EmittedEvents,
  type ResolvedOptions,
  type SwitchboardOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./options.js";
import type { ReplyData, RequestData, RequestName } from "./types.js";

interface InFlight {
  event: string;
  resolve: (data: unknown) => void;
  reject: (err: SwitchboardError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface ConnectWaiter {
  resolve: () => void;
  reject: (err: SwitchboardError) => void;
}

/** A token this close to its `exp` is refreshed before reconnecting with it. */
const TOKEN_EXPIRY_MARGIN_S = 5;
/** How long an errored socket that opened may take to report its close before it is dropped. */
const CLOSE_AFTER_ERROR_GRACE_MS = 1000;

export abstract class SwitchboardConnection {
  protected readonly opts: ResolvedOptions;
  private readonly refreshTokenFn: (() => Promise<string>) | undefined;
  private readonly WS: WebSocketConstructor;
  private readonly events = new Emitter<EmittedEvents & Record<string, unknown>>();
  private token: string;

  private ws: WebSocketLike | null = null;
  private stateValue: ConnectionState = "idle";
  private everConnected = false;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private keepaliveTimer: ReturnType<typeof setInterval> | null = null;
  private nextId = 1;
  private readonly inFlight = new Map<number, InFlight>();
  private connectWaiters: ConnectWaiter[] = [];

  /** The user of the token, from `hello`. */
  userId: string | null = null;
  /** This socket's id, from `hello` (the call signaling's "device"). */
  connectionId: string | null = null;
  /** The node that served `hello`. */
  node: string | null = null;

  constructor(options: SwitchboardOptions) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new TypeError(
        "no WebSocket: pass the `WebSocket` option (Node < 22: `--experimental-websocket` or the `ws` package)",
      );
    }
    this.WS = WS;
    this.token = options.token;
    this.refreshTokenFn = options.refreshToken;
    this.opts = resolveOptions(options);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  // ---------------------------------------------------------------- hooks for the subclass

  /** `hello` arrived and `connect()` callers were released; `reconnected` is false the first time. */
  protected abstract handleConnected(reconnected: boolean): void;
  /** The socket closed; the requests in flight on it have been rejected with `disconnected`. */
  protected abstract handleDisconnected(): void;
  /** The client stopped for good (`close()`, 4003, or 4001 without a new token): reject with `err`. */
  protected abstract handleStopped(err: SwitchboardError): void;
  /** A push other than `hello` and `error`. Returns true when the hook emitted it itself;
   * otherwise it is emitted as received. */
  protected abstract handlePush(event: string, data: any): boolean;
  /** The reply to a `request()`, before the caller gets it. */
  protected abstract handleReply(event: string, reply: unknown): void;

  // ---------------------------------------------------------------- events

  /** Listens to a push, a connection event, or (by any other name) an app event. */
  on<K extends keyof EmittedEvents>(event: K, listener: (data: EmittedEvents[K]) => void): () => void;
  on(event: string, listener: (data: any) => void): () => void;
  on(event: string, listener: (data: any) => void): () => void {
    return this.events.on(event, listener);
  }

  once<K extends keyof EmittedEvents>(event: K, listener: (data: EmittedEvents[K]) => void): () => void;
  once(event: string, listener: (data: any) => void): () => void;
  once(event: string, listener: (data: any) => void): () => void {
    return this.events.once(event, listener);
  }

  off(event: string, listener: (data: any) => void): void {
    this.events.off(event, listener);
  }

  protected emit<K extends keyof EmittedEvents>(event: K, data: EmittedEvents[K]): void {
    (this.events as unknown as { emit(e: string, d: unknown): void }).emit(event as string, data);
  }

  // ---------------------------------------------------------------- connection

  /** Opens the connection; resolves once `hello` arrived. The first connect is not retried:
   * it rejects with `disconnected` if the socket closes before `hello`. Later drops reconnect
   * by themselves. */
  connect(): Promise<void> {
    if (this.stateValue === "connected") return Promise.resolve();
    const waiter = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.stateValue === "idle" || this.stateValue === "closed") {
      this.stateValue = "connecting";
      this.openSocket();
    }
    return waiter;
  }

  /** Closes the connection for good: pending requests and queued sends reject with `closed`. */
  close(): void {
    const wasState = this.stateValue;
    this.stateValue = "closed";
    this.stopTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(CloseCode.Normal, "client closed");
      } catch {
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
  async setToken(token: string): Promise<void> {
    this.token = token;
    if (this.stateValue === "connected") {
      const reply = await this.rawRequest("auth.refresh", { token }, this.opts.requestTimeoutMs);
      this.emit("token.refreshed", { expiresAt: reply.expires_at });
    }
  }

  /** True once `connect()` succeeded and the client has stopped for good since. */
  protected get closedAfterConnecting(): boolean {
    return this.stateValue === "closed" && this.everConnected;
  }

  /** The current socket, as an identity: work tied to one socket stops when this changes. */
  protected get socket(): WebSocketLike | null {
    return this.ws;
  }

  private socketUrl(): string {
    const sep = this.opts.url.includes("?") ? "&" : "?";
    return `${this.opts.url}${sep}token=${encodeURIComponent(this.token)}`;
  }

  private openSocket(): void {
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.socketUrl());
    } catch (err) {
      this.onSocketClosed(null, CloseCode.Abnormal, String(err));
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.ws === ws && typeof ev.data === "string") this.onFrame(ev.data);
    };
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onclose = (ev) => this.onSocketClosed(ws, ev.code, ev.reason);
    ws.onerror = () => {
      // A close event should follow, but some implementations (Node 20's) send none for a
      // refused upgrade: stop waiting for it (at once if the socket never opened).
      setTimeout(
        () => this.onSocketClosed(ws, CloseCode.Abnormal, opened ? "socket error" : "connection failed"),
        opened ? CLOSE_AFTER_ERROR_GRACE_MS : 0,
      );
    };
  }

  /** Drops a socket we no longer trust (keepalive failed) without waiting for its close handshake. */
  private dropSocket(ws: WebSocketLike, reason: string): void {
    detach(ws);
    try {
      ws.close(4000, reason);
    } catch {
      /* ignore */
    }
    this.onSocketClosed(ws, CloseCode.Abnormal, reason);
  }

  private onSocketClosed(ws: WebSocketLike | null, code: number, reason: string): void {
    if (ws !== this.ws) return;
    if (ws) detach(ws);
    this.ws = null;
    this.stopKeepalive();
    const wasConnected = this.stateValue === "connected";
    this.failInFlight(new SwitchboardError("disconnected", `connection closed (${code}${reason ? ` ${reason}` : ""})`));
    this.handleDisconnected();
    if (this.stateValue === "closed") return;

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
    if (wasConnected) this.emit("disconnected", { code, reason, willReconnect: true });
    this.scheduleReconnect(code);
  }

  /** Stops for good after a close the client must not reconnect from. */
  private stopAfterClose(code: number, reason: string, wasConnected: boolean, err: SwitchboardError): void {
    this.stateValue = "closed";
    if (wasConnected) this.emit("disconnected", { code, reason, willReconnect: false });
    this.emit("error", err);
    this.stopForGood(err);
  }

  private scheduleReconnect(code: number): void {
    this.stateValue = "reconnecting";
    const delayMs = Math.round(reconnectDelay(code, this.attempt, this.opts.backoff));
    this.attempt += 1;
    this.emit("reconnecting", { attempt: this.attempt, delayMs, code });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.reconnectNow(code);
    }, delayMs);
  }

  private async reconnectNow(code: number): Promise<void> {
    if (this.stateValue !== "reconnecting") return;
    const needsToken = code === CloseCode.TokenExpired || tokenExpiresWithin(this.token, TOKEN_EXPIRY_MARGIN_S);
    if (needsToken && this.refreshTokenFn) {
      try {
        this.token = await this.refreshTokenFn();
      } catch (err) {
        this.emit("error", new SwitchboardError("token_expired", `refreshToken failed: ${errorText(err)}`));
        if (this.stateValue === "reconnecting") this.scheduleReconnect(code);
        return;
      }
      if (this.stateValue !== "reconnecting") return;
    }
    this.openSocket();
  }

  private onHello(data: { user_id: string; connection_id: string; node: string }): void {
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
    for (const w of waiters) w.resolve();
    this.handleConnected(reconnected);
  }

  private startKeepalive(): void {
    this.stopKeepalive();
    if (this.opts.keepaliveMs <= 0) return;
    const ws = this.ws;
    this.keepaliveTimer = setInterval(() => {
      if (!ws || this.ws !== ws || this.stateValue !== "connected") return;
      this.rawRequest("presence.query", { user_ids: [] }, this.opts.requestTimeoutMs).catch((err: SwitchboardError) => {
        if (err.code === "timeout" && this.ws === ws) this.dropSocket(ws, "keepalive timeout");
      });
    }, this.opts.keepaliveMs);
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }

  private stopTimers(): void {
    this.stopKeepalive();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private failInFlight(err: SwitchboardError): void {
    const entries = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const f of entries) {
      clearTimeout(f.timer);
      f.reject(new SwitchboardError(err.code, err.message, f.event));
    }
  }

  private rejectConnectWaiters(err: SwitchboardError): void {
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  /** Rejects everything pending with `err`: requests, `connect()` callers, and the subclass's work. */
  private stopForGood(err: SwitchboardError): void {
    this.stopTimers();
    this.failInFlight(err);
    this.rejectConnectWaiters(err);
    this.handleStopped(err);
  }

  // ---------------------------------------------------------------- frames

  private onFrame(text: string): void {
    let frame: any;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    if ("ack" in frame) {
      this.onAck(frame);
      return;
    }
    if (typeof frame.event !== "string") return;
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
    if (this.handlePush(frame.event, data)) return;
    this.emit(frame.event, data);
  }

  private onAck(frame: { ack: number; ok?: boolean; data?: unknown; error?: { code?: string; message?: unknown } }): void {
    const f = this.inFlight.get(frame.ack);
    if (!f) return;
    this.inFlight.delete(frame.ack);
    clearTimeout(f.timer);
    if (frame.ok) {
      f.resolve(frame.data);
      return;
    }
    const code = (frame.error?.code ?? "internal") as ErrorCode;
    f.reject(new SwitchboardError(code, String(frame.error?.message ?? "request failed"), f.event));
  }

  private async refreshOnExpiring(): Promise<void> {
    if (!this.refreshTokenFn) return;
    try {
      const token = await this.refreshTokenFn();
      await this.setToken(token);
    } catch (err) {
      this.emit(
        "error",
        err instanceof SwitchboardError ? err : new SwitchboardError("token_expired", `refreshToken failed: ${errorText(err)}`),
      );
    }
  }

  // ---------------------------------------------------------------- requests

  /** Sends one request on the open socket; rejects with `disconnected` if there is none. */
  protected rawRequest<E extends RequestName>(event: E, data: RequestData<E>, timeoutMs: number): Promise<ReplyData<E>>;
  protected rawRequest(event: string, data: unknown, timeoutMs: number): Promise<unknown>;
  protected rawRequest(event: string, data: unknown, timeoutMs: number): Promise<unknown> {
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
      } catch (err) {
        this.inFlight.delete(id);
        clearTimeout(timer);
        reject(new SwitchboardError("disconnected", `send failed: ${errorText(err)}`, event));
      }
    });
  }

  /** Sends an event without an id (no ack, nothing waits) if connected; drops it otherwise. */
  protected sendUnacknowledged(event: string, data: unknown): void {
    if (this.ws && this.stateValue === "connected") {
      this.ws.send(JSON.stringify({ event, data }));
    }
  }

  /** Waits until connected (for at most `timeoutMs`). */
  private whenConnected(timeoutMs: number): Promise<void> {
    if (this.stateValue === "connected") return Promise.resolve();
    if (this.stateValue === "closed" || this.stateValue === "idle") {
      return Promise.reject(new SwitchboardError("closed", "not connected: call connect() first"));
    }
    return new Promise((resolve, reject) => {
      const waiter: ConnectWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: SwitchboardError) => {
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

  /**
   * Sends any request and resolves with its ack's `data`, or rejects with a `SwitchboardError`
   * (the server's code, or `timeout`/`disconnected`/`closed`). While reconnecting it waits
   * for the connection (within the timeout). A request in flight when the socket drops is
   * not resent (it may have run): it rejects with `disconnected`.
   */
  async request<E extends RequestName>(event: E, data?: RequestData<E>, options?: { timeoutMs?: number }): Promise<ReplyData<E>>;
  async request(event: string, data?: unknown, options?: { timeoutMs?: number }): Promise<unknown>;
  async request(event: string, data?: unknown, options?: { timeoutMs?: number }): Promise<unknown> {
    const timeoutMs = options?.timeoutMs ?? this.opts.requestTimeoutMs;
    const started = Date.now();
    await this.whenConnected(timeoutMs);
    const reply = await this.rawRequest(event, data, Math.max(1, timeoutMs - (Date.now() - started)));
    this.handleReply(event, reply);
    return reply;
  }
}

/** Unhooks a socket so its late events reach nothing. */
function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether the JWT's `exp` is less than `seconds` away (false when it cannot be read). */
export function tokenExpiresWithin(token: string, seconds: number): boolean {
  const payload = token.split(".")[1];
  if (!payload) return false;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" && exp * 1000 - Date.now() < seconds * 1000;
  } catch {
    return false;
  }
}
