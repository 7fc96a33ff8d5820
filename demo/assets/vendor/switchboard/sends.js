/**
 * The send queue: every `send()` waits here, offline or in flight, until the server stores it
 * or it fails for good.
 *
 * Invariants:
 * - bounded: at most `maxQueued` sends wait at once; more reject with `queue_full`;
 * - a send keeps one `client_id` for its whole life, so resending it after a drop, a timeout
 *   or an `unavailable` cannot store it twice;
 * - per room only the head of the queue is in flight, so a room's sends are stored in the
 *   order they were made;
 * - each send settles exactly once: stored, refused, `timeout` after `sendTimeoutMs`, or the
 *   error the client stopped with.
 * @module
 */
import { SwitchboardError } from "./errors.js";
/** Spread of the wait before resending after `unavailable`, `rate_limited` or `internal`. */
const RESEND_MIN_MS = 250;
const RESEND_JITTER_MS = 1000;
export class SendQueue {
    link;
    options;
    queues = new Map();
    queued = 0;
    constructor(link, options) {
        this.link = link;
        this.options = options;
    }
    /** Queues a send and transmits it when its turn comes; resolves with the stored message. */
    enqueue(roomId, body, options) {
        if (this.queued >= this.options.maxQueued) {
            return Promise.reject(new SwitchboardError("queue_full", `${this.queued} sends already waiting`, "message.send"));
        }
        const clientId = options.clientId ?? newClientId();
        return new Promise((resolve, reject) => {
            const send = {
                roomId,
                data: { room_id: roomId, body, client_id: clientId, ...(options.kind ? { kind: options.kind } : {}) },
                resolve,
                reject,
                inFlight: false,
                retryTimer: null,
                done: false,
                deadline: setTimeout(() => {
                    this.finish(send, new SwitchboardError("timeout", `not acknowledged within ${this.options.sendTimeoutMs} ms`, "message.send"));
                    this.pump(roomId);
                }, this.options.sendTimeoutMs),
            };
            let queue = this.queues.get(roomId);
            if (!queue) {
                queue = [];
                this.queues.set(roomId, queue);
            }
            queue.push(send);
            this.queued += 1;
            this.pump(roomId);
        });
    }
    /** Whether a send with `clientId` to `roomId` is still waiting for its ack. */
    isWaiting(roomId, clientId) {
        return (this.queues.get(roomId) ?? []).some((s) => s.data.client_id === clientId);
    }
    /** The socket closed: the acks of the sends in flight on it will never come. */
    connectionLost() {
        for (const queue of this.queues.values())
            for (const s of queue)
                s.inFlight = false;
    }
    /** Connected: transmits (or resends) the head of every room's queue. */
    resume() {
        for (const roomId of this.queues.keys())
            this.pump(roomId);
    }
    /** Rejects every waiting send with `err`. */
    failAll(err) {
        for (const queue of this.queues.values())
            for (const s of [...queue])
                this.finish(s, err);
        this.queues.clear();
    }
    /** Sends the head of a room's queue if it is not in flight. */
    pump(roomId) {
        const head = this.queues.get(roomId)?.[0];
        if (!head || head.inFlight || head.retryTimer || !this.link.isConnected())
            return;
        head.inFlight = true;
        this.link.transmit(head.data).then((reply) => {
            if (head.done)
                return;
            this.link.stored(reply.message);
            this.finish(head, null, reply.message);
            this.pump(roomId);
        }, (err) => {
            head.inFlight = false;
            if (head.done)
                return;
            if (err.code === "disconnected")
                return; // resent by resume() on the next connect
            if (err.retryable) {
                // Same client_id: the server returns the stored message if the first try committed.
                const wait = err.code === "timeout" ? 0 : RESEND_MIN_MS + Math.random() * RESEND_JITTER_MS;
                head.retryTimer = setTimeout(() => {
                    head.retryTimer = null;
                    this.pump(roomId);
                }, wait);
                return;
            }
            this.finish(head, err);
            this.pump(roomId);
        });
    }
    finish(send, err, message) {
        if (send.done)
            return;
        send.done = true;
        clearTimeout(send.deadline);
        if (send.retryTimer)
            clearTimeout(send.retryTimer);
        const queue = this.queues.get(send.roomId);
        const at = queue ? queue.indexOf(send) : -1;
        if (queue && at >= 0) {
            queue.splice(at, 1);
            if (queue.length === 0)
                this.queues.delete(send.roomId);
        }
        this.queued -= 1;
        if (err)
            send.reject(err);
        else
            send.resolve(message);
    }
}
/** A client_id unique enough to never repeat in a room: random, with the time for readability. */
function newClientId() {
    const uuid = globalThis.crypto?.randomUUID?.();
    return uuid ?? `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}
