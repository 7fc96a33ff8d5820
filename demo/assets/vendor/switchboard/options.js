/**
 * The client's own public types, beside the protocol's in `types.ts`: the options of
 * `new Switchboard(options)` and their defaults, the connection states, the connection
 * events, and the WebSocket the client needs.
 *
 * Invariant: `resolveOptions` is the one place a default or a range is decided.
 * @module
 */
import { DEFAULT_BACKOFF } from "./backoff.js";
export function resolveOptions(options) {
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
