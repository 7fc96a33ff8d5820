/**
 * Reconnect delays: exponential backoff with full jitter (a uniform draw between 0 and the
 * capped exponential), shaped by the close code that ended the connection
 * (docs/protocol.md §7).
 * @module
 */
export const DEFAULT_BACKOFF = { baseMs: 500, maxMs: 30_000 };
/** Close codes with a meaning for reconnecting. */
export const CloseCode = {
    Normal: 1000,
    GoingAway: 1001,
    Abnormal: 1006,
    PolicyViolation: 1008,
    InternalError: 1011,
    ServiceRestart: 1012,
    TryAgainLater: 1013,
    TokenExpired: 4001,
    TokenRevoked: 4003,
};
/**
 * The delay before reconnect attempt number `attempt` (0 for the first) after a close with
 * `code`. `random` is injectable for tests.
 */
export function reconnectDelay(code, attempt, options = DEFAULT_BACKOFF, random = Math.random) {
    const exponential = (base) => Math.min(options.maxMs, base * 2 ** Math.min(attempt, 30));
    switch (code) {
        case CloseCode.ServiceRestart:
        case CloseCode.TokenExpired:
            // A drain (the node restarts or a load balancer moves us) or a token we just renewed:
            // come back soon, spread over a second so a drained node's clients do not stampede.
            return attempt === 0 ? random() * 1000 : random() * exponential(options.baseMs);
        case CloseCode.PolicyViolation:
            // Closed for flooding: wait long, at least 5 s, so the server's limiter has refilled.
            return 5000 + random() * exponential(Math.max(options.baseMs, 2000) * 4);
        default:
            return random() * exponential(options.baseMs);
    }
}
