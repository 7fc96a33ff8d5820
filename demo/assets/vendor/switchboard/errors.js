/**
 * One error type for everything a request can end with: the server's error codes
 * (docs/protocol.md §3) and the few the client itself produces.
 * @module
 */
export class SwitchboardError extends Error {
    code;
    event;
    name = "SwitchboardError";
    constructor(code, message, 
    /** The request's event, when the error answers one. */
    event) {
        super(message);
        this.code = code;
        this.event = event;
    }
    /** Errors after which the same request may be retried unchanged (a send with its `client_id`). */
    get retryable() {
        return (this.code === "unavailable" ||
            this.code === "internal" ||
            this.code === "rate_limited" ||
            this.code === "timeout" ||
            this.code === "disconnected");
    }
}
