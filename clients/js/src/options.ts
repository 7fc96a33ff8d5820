/**
 * The client's own public types, beside the protocol's in `types.ts`: the options of
 * `new Switchboard(options)` and their defaults, the connection states, the connection
 * events, and the WebSocket the client needs.
 *
 * Invariant: `resolveOptions` is the one place a default or a range is decided.
 * @module
 */

import { DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
import type { SwitchboardError } from "./errors.js";
import type { Message, PushEvents, Timestamp } from "./types.js";

/** The part of the standard `WebSocket` the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => unknown) | null;
  onmessage: ((ev: { data: unknown }) => unknown) | null;
  onclose: ((ev: { code: number; reason: string }) => unknown) | null;
  onerror: ((ev: any) => unknown) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface SwitchboardOptions {
  /** The server's native endpoint, e.g. `wss://chat.example.com/ws`. The token is added as `?token=`. */
  url: string;
  /** A JWT for the user (HS256, issued by your back end). */
  token: string;
  /** Gets a fresh token: called on `auth.expiring`, after a 4001 close, and before reconnecting
   * with a token that has expired. Without it, an expired token stops the client. */
  refreshToken?: () => Promise<string>;
  /** A WebSocket constructor; defaults to the global `WebSocket` (browsers, Node ≥ 22). */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for its ack, in ms (default 15 000). */
  requestTimeoutMs?: number;
  /** How long a `send()` may take in all, offline time and resends included, in ms (default 120 000). */
  sendTimeoutMs?: number;
  /** Most sends waiting for a connection or an ack at once (default 100); more reject with `queue_full`. */
  maxQueuedSends?: number;
  /** Reconnect backoff: first step and cap, in ms. */
  backoff?: Partial<BackoffOptions>;
  /** Interval of the liveness check (a tiny request), in ms; 0 turns it off (default 25 000).
   * A socket whose check gets no ack within the request timeout is treated as dropped. */
  keepaliveMs?: number;
  /** Page size of the history requests that fill gaps (1–100, default 100). */
  resyncPageSize?: number;
  /** Rooms resynced at once after a reconnect (default 4). */
  resyncConcurrency?: number;
}

/** `SwitchboardOptions` with every default filled in and every range enforced. */
export type ResolvedOptions = Required<Omit<SwitchboardOptions, "refreshToken" | "WebSocket" | "backoff" | "token">> & {
  backoff: BackoffOptions;
};

export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

/** Events about the connection itself, beside the server's pushes. */
export interface ConnectionEvents {
  /** `hello` arrived: requests may go. `reconnected` is false on the first connect. */
  connected: { userId: string; connectionId: string; node: string; reconnected: boolean };
  /** The socket closed. `willReconnect` says whether the client tries again. */
  disconnected: { code: number; reason: string; willReconnect: boolean };
  /** A reconnect is scheduled after `delayMs`. */
  reconnecting: { attempt: number; delayMs: number; code: number };
  /** Every held room was caught up after a connect; `messages` were delivered by it. */
  resynced: { rooms: number; messages: number };
  /** A fresh token was accepted (`auth.refresh`). */
  "token.refreshed": { expiresAt: Timestamp };
  /** Something failed outside a request: an `error` push, a failed refresh, a revoked token. */
  error: SwitchboardError;
}

export type ClientEvents = PushEvents & ConnectionEvents;

/** `message.new` as the client emits it: `missed` is true when it came from a resync. */
export interface MessageNewEvent {
  message: Message;
  missed?: boolean;
}

/** The events the client emits: `ClientEvents` with `message.new` as `MessageNewEvent`. */
export type EmittedEvents = Omit<ClientEvents, "message.new"> & { "message.new": MessageNewEvent };

export function resolveOptions(options: SwitchboardOptions): ResolvedOptions {
  return {
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
