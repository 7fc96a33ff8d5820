/**
 * The rooms the client holds and their `message.new` streams: a cursor per room, pushes
 * buffered above a gap, gap fill from history, and the resync of every held room after a
 * (re)connect.
 *
 * Invariants:
 * - per room, `message.new` is emitted for seq N only after N−1 was emitted or accounted for
 *   (a message this client sent, or history the user cleared), and never twice;
 * - a message this client sent advances the cursor but is never emitted (the sending
 *   connection gets the ack, not the push);
 * - a gap is filled from history only after `GAP_GRACE_MS`, and one fill runs per room at a time.
 * @module
 */
/** How long a gap may stay open before history is asked for it: the server itself holds a
 * push up to 250 ms to fill a gap, and an ack can overtake another sender's push. */
const GAP_GRACE_MS = 300;
/** Tries of one room's resync after `rate_limited` or `unavailable`, and the first wait (doubling). */
const RESYNC_RETRIES = 5;
const RESYNC_RETRY_BASE_MS = 500;
const newCursor = (seq) => ({ seq, buffer: new Map(), filling: null, gapTimer: null });
const losesAccess = (err) => err.code === "forbidden" || err.code === "not_found";
export class RoomResync {
    link;
    options;
    rooms = new Map();
    resyncDelivered = 0;
    constructor(link, options) {
        this.link = link;
        this.options = options;
    }
    get size() {
        return this.rooms.size;
    }
    holds(roomId) {
        return this.rooms.has(roomId);
    }
    /** Starts holding a room from `seq` (the highest seq already had); no-op if it is held. */
    hold(roomId, seq) {
        if (!this.rooms.has(roomId))
            this.rooms.set(roomId, newCursor(seq));
    }
    /** Holds a room and, when connected, catches it up at once. */
    track(roomId, seq) {
        this.hold(roomId, seq);
        const room = this.rooms.get(roomId);
        if (room && this.link.isConnected())
            this.fillRoom(roomId, room, false).catch(() => undefined);
    }
    /** Stops holding a room (left it, or lost access). */
    release(roomId) {
        this.rooms.delete(roomId);
    }
    /** Learns the rooms' current top seq from `room.list`: holds new ones, fills held ones that are behind. */
    observeRoomList(rooms) {
        for (const room of rooms) {
            const held = this.rooms.get(room.id);
            if (!held)
                this.hold(room.id, room.last_seq ?? 0);
            else if ((room.last_seq ?? 0) > held.seq)
                this.scheduleGapFill(room.id, held);
        }
    }
    /** The highest seq delivered (or sent) per held room. */
    cursors() {
        return new Map([...this.rooms].map(([id, r]) => [id, r.seq]));
    }
    stopGapTimers() {
        for (const room of this.rooms.values()) {
            if (room.gapTimer)
                clearTimeout(room.gapTimer);
            room.gapTimer = null;
        }
    }
    /** Takes a message from a push, a history page or a send's ack; delivers what is now in order. */
    accept(message, how) {
        let room = this.rooms.get(message.room_id);
        if (!room) {
            // First sight of the room (someone opened a direct room with us): start at this message.
            room = newCursor(message.seq - 1);
            this.rooms.set(message.room_id, room);
        }
        if (message.seq <= room.seq || room.buffer.has(message.seq))
            return;
        room.buffer.set(message.seq, { message, own: how.own, missed: how.missed });
        this.drain(room);
        if (room.buffer.size > 0)
            this.scheduleGapFill(message.room_id, room);
    }
    drain(room) {
        for (;;) {
            const next = room.buffer.get(room.seq + 1);
            if (!next)
                break;
            room.buffer.delete(room.seq + 1);
            room.seq += 1;
            if (!next.own) {
                if (next.missed)
                    this.resyncDelivered += 1;
                this.link.deliver(next.missed ? { message: next.message, missed: true } : { message: next.message });
            }
        }
    }
    scheduleGapFill(roomId, room) {
        if (room.filling || room.gapTimer || !this.link.isConnected())
            return;
        room.gapTimer = setTimeout(() => {
            room.gapTimer = null;
            if (this.rooms.get(roomId) === room)
                this.fillRoom(roomId, room, false).catch(() => undefined);
        }, GAP_GRACE_MS);
    }
    /** Reads history after the room's cursor until the server has no more, delivering in order. */
    fillRoom(roomId, room, missed) {
        if (room.filling)
            return room.filling;
        if (room.gapTimer) {
            clearTimeout(room.gapTimer);
            room.gapTimer = null;
        }
        room.filling = this.readUntilCaughtUp(roomId, room, missed)
            .catch((err) => {
            if (losesAccess(err))
                this.rooms.delete(roomId);
            else if (err.code !== "disconnected" && err.code !== "closed")
                this.link.reportError(err);
            throw err;
        })
            .finally(() => {
            room.filling = null;
            if (room.buffer.size > 0 && this.rooms.get(roomId) === room)
                this.scheduleGapFill(roomId, room);
        });
        return room.filling;
    }
    async readUntilCaughtUp(roomId, room, missed) {
        let rechecked = false;
        for (;;) {
            const after = room.seq;
            const page = await this.link.readHistory({ room_id: roomId, after_seq: after, limit: this.options.pageSize });
            const first = page.messages[0];
            if (first && first.seq > after + 1 && room.seq === after) {
                // The messages below were cleared by this user (§8.5): the page is complete.
                room.seq = first.seq - 1;
                for (const seq of room.buffer.keys())
                    if (seq <= room.seq)
                        room.buffer.delete(seq);
            }
            for (const m of page.messages)
                this.accept(m, { own: this.link.isOwnSend(m), missed });
            if (page.has_more && page.messages.length > 0)
                continue;
            if (room.buffer.size === 0)
                return;
            if (!rechecked) {
                // Pushes buffered above a gap arrived after this page was read: read once more.
                rechecked = true;
                continue;
            }
            // Still a hole under the buffered pushes after a fresh read: cleared history.
            room.seq = Math.min(...room.buffer.keys()) - 1;
            this.drain(room);
            return;
        }
    }
    /** Catches up every held room on the current socket, `concurrency` at a time; reports
     * `resynced` only if all of them succeeded (or lost access) on that same socket. */
    async resyncAll() {
        const socket = this.link.currentSocket();
        const onSameSocket = () => this.link.currentSocket() === socket;
        this.resyncDelivered = 0;
        const ids = [...this.rooms.keys()];
        let next = 0;
        let failed = false;
        const worker = async () => {
            while (next < ids.length && onSameSocket()) {
                const id = ids[next++];
                const room = this.rooms.get(id);
                if (!room)
                    continue;
                if (!(await this.resyncRoom(id, room, onSameSocket))) {
                    failed = true;
                    return;
                }
            }
        };
        await Promise.all(Array.from({ length: Math.min(this.options.concurrency, ids.length) }, worker));
        if (!failed && onSameSocket() && this.link.isConnected()) {
            this.link.resynced({ rooms: ids.length, messages: this.resyncDelivered });
        }
    }
    /** One room's resync, retried with backoff while the server is busy; false if it failed. */
    async resyncRoom(id, room, onSameSocket) {
        for (let tries = 0;; tries++) {
            try {
                await this.fillRoom(id, room, true);
                return true;
            }
            catch (err) {
                const e = err;
                if (losesAccess(e))
                    return true;
                if ((e.code === "rate_limited" || e.code === "unavailable") && tries < RESYNC_RETRIES && onSameSocket()) {
                    await sleep(RESYNC_RETRY_BASE_MS * 2 ** tries);
                    continue;
                }
                return false;
            }
        }
    }
}
function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}
