/**
 * `@switchboard/client`: a client for Switchboard's native WebSocket protocol.
 * @module
 */

export { Switchboard } from "./client.js";
export { tokenExpiresWithin } from "./connection.js";
export {
  type ClientEvents,
  type ConnectionEvents,
  type ConnectionState,
  type MessageNewEvent,
  type SwitchboardOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./options.js";
export { SwitchboardError, type ClientErrorCode, type ErrorCode, type ServerErrorCode } from "./errors.js";
export { CloseCode, reconnectDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
export { CallPeer, type CallPeerOptions } from "./calls.js";
export type * from "./types.js";
