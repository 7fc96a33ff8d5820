/**
 * One error type for everything a request can end with: the server's error codes
 * (docs/protocol.md §3) and the few the client itself produces.
 * @module
 */

/** Codes the server puts in an error ack or an `error` push. */
export type ServerErrorCode =
  | "bad_request"
  | "unknown_event"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "busy"
  | "rate_limited"
  | "too_large"
  | "unavailable"
  | "internal";

/** Codes the client produces. */
export type ClientErrorCode =
  /** No ack within the request timeout. The request may or may not have run. */
  | "timeout"
  /** The socket closed while the request was in flight (it may or may not have run), or the
   * first `connect()` failed. */
  | "disconnected"
  /** `close()` was called, or the client stopped for good (4003). */
  | "closed"
  /** The offline send queue is full. */
  | "queue_full"
  /** The connection was closed with 4003: the token was revoked. The client does not reconnect. */
  | "revoked"
  /** The token expired (4001) and `refreshToken` could not give a new one. */
  | "token_expired";

export type ErrorCode = ServerErrorCode | ClientErrorCode;

export class SwitchboardError extends Error {
  override readonly name = "SwitchboardError";

  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The request's event, when the error answers one. */
    readonly event?: string,
  ) {
    super(message);
  }

  /** Errors after which the same request may be retried unchanged (a send with its `client_id`). */
  get retryable(): boolean {
    return (
      this.code === "unavailable" ||
      this.code === "internal" ||
      this.code === "rate_limited" ||
      this.code === "timeout" ||
      this.code === "disconnected"
    );
  }
}
