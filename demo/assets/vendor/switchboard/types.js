/**
 * The protocol's objects, requests and pushes as TypeScript types (docs/protocol.md §4, §5,
 * §10, §11). Field names are the wire's (snake_case): what the server sends is what you get.
 * @module
 */
export {};
