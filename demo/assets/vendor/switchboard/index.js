/**
 * `@switchboard/client`: a client for Switchboard's native WebSocket protocol.
 * @module
 */
export { Switchboard } from "./client.js";
export { tokenExpiresWithin } from "./connection.js";
export {} from "./options.js";
export { SwitchboardError } from "./errors.js";
export { CloseCode, reconnectDelay, DEFAULT_BACKOFF } from "./backoff.js";
export { CallPeer } from "./calls.js";
