/**
 * `Switchboard`, the client apps use: the connection core (`connection.ts`) plus the held
 * rooms' gapless streams (`resync.ts`), the offline send queue (`sends.ts`) and one typed
 * method per request: chat, calls, live sessions, social.
 *
 * Invariants:
 * - every `message.new` goes through the held rooms, so it is emitted in `seq` order, once;
 * - a message this client sent is reported by its `send()` promise, never as `message.new`
 *   (as the server does: the sending connection gets the ack, not the push);
 * - rooms are learnt from replies and pushes (`room.list`, `room.direct`, `room.created`, …)
 *   and forgotten on leaving them or losing access.
 * @module
 */
import { SwitchboardConnection } from "./connection.js";
import { SwitchboardError } from "./errors.js";
import { RoomResync } from "./resync.js";
import { SendQueue } from "./sends.js";
export class Switchboard extends SwitchboardConnection {
    rooms;
    sends;
    constructor(options) {
        super(options);
        const isConnected = () => this.state === "connected";
        this.rooms = new RoomResync({
            readHistory: (data) => this.rawRequest("message.history", data, this.opts.requestTimeoutMs),
            isConnected,
            currentSocket: () => this.socket,
            isOwnSend: (message) => this.isOwnSend(message),
            deliver: (event) => this.emit("message.new", event),
            resynced: (summary) => this.emit("resynced", summary),
            reportError: (err) => this.emit("error", err),
        }, { pageSize: this.opts.resyncPageSize, concurrency: this.opts.resyncConcurrency });
        this.sends = new SendQueue({
            transmit: (data) => this.rawRequest("message.send", data, this.opts.requestTimeoutMs),
            isConnected,
            stored: (message) => this.rooms.accept(message, { own: true, missed: false }),
        }, { maxQueued: this.opts.maxQueuedSends, sendTimeoutMs: this.opts.sendTimeoutMs });
    }
    // ---------------------------------------------------------------- connection hooks
    handleConnected(reconnected) {
        this.sends.resume();
        if (reconnected || this.rooms.size > 0)
            void this.rooms.resyncAll();
    }
    handleDisconnected() {
        this.sends.connectionLost();
    }
    handleStopped(err) {
        this.rooms.stopGapTimers();
        this.sends.failAll(err);
    }
    handlePush(event, data) {
        switch (event) {
            case "message.new":
                if (data?.message)
                    this.rooms.accept(data.message, { own: this.isOwnSend(data.message), missed: false });
                return true;
            case "room.created":
                if (data?.room)
                    this.rooms.hold(data.room.id, data.room.last_seq ?? 0);
                return false;
            case "room.member_left":
                if (data?.user_id === this.userId && data?.room_id)
                    this.rooms.release(data.room_id);
                return false;
            default:
                return false;
        }
    }
    /** Learns rooms (and their current top seq) from replies. */
    handleReply(event, reply) {
        if (!reply || typeof reply !== "object")
            return;
        if (reply.room && typeof reply.room.id === "string")
            this.rooms.hold(reply.room.id, reply.room.last_seq ?? 0);
        if (event === "room.list" && Array.isArray(reply.rooms))
            this.rooms.observeRoomList(reply.rooms);
        if (event === "room.leave" && typeof reply.room_id === "string")
            this.rooms.release(reply.room_id);
    }
    /** Whether a message carries the client_id of a send of ours still waiting for its ack. */
    isOwnSend(message) {
        if (!message.client_id || message.sender_id !== this.userId)
            return false;
        return this.sends.isWaiting(message.room_id, message.client_id);
    }
    // ---------------------------------------------------------------- chat
    /** Opens (or returns) the direct room with `userId`. */
    async openDirect(userId) {
        return (await this.request("room.direct", { user_id: userId })).room;
    }
    async createGroup(name, members) {
        return (await this.request("room.group.create", { name, members })).room;
    }
    /** One page of your rooms, newest activity first; `before` is the last room id of the previous page. */
    async listRooms(options = {}) {
        return (await this.request("room.list", options)).rooms;
    }
    async leaveRoom(roomId) {
        await this.request("room.leave", { room_id: roomId });
    }
    /**
     * Sends a message; resolves with the stored message once the server committed it. Every
     * send carries a `client_id` (generated unless given). While offline the send is queued
     * (at most `maxQueuedSends`); a send whose ack was lost is resent with the same `client_id`
     * after reconnecting, so it is stored once. Rejects on a refusal (`forbidden`, `too_large`,
     * …), `queue_full`, `closed`, or `timeout` after `sendTimeoutMs`.
     */
    send(roomId, body, options = {}) {
        if (this.closedAfterConnecting) {
            return Promise.reject(new SwitchboardError("closed", "the client is closed", "message.send"));
        }
        return this.sends.enqueue(roomId, body, options);
    }
    /** A page of a room's history, in ascending seq (`before_seq` or `after_seq` as cursor). */
    async history(roomId, options = {}) {
        const reply = await this.request("message.history", {
            room_id: roomId,
            ...(options.beforeSeq !== undefined ? { before_seq: options.beforeSeq } : {}),
            ...(options.afterSeq !== undefined ? { after_seq: options.afterSeq } : {}),
            ...(options.limit !== undefined ? { limit: options.limit } : {}),
        });
        if (!this.rooms.holds(roomId) && options.beforeSeq === undefined && options.afterSeq === undefined) {
            const last = reply.messages[reply.messages.length - 1];
            this.rooms.hold(roomId, last ? last.seq : 0);
        }
        return { messages: reply.messages, hasMore: reply.has_more };
    }
    /** Moves your read mark (to the latest when `seq` is omitted); resolves with the mark in force. */
    async markRead(roomId, seq) {
        return (await this.request("room.read", seq === undefined ? { room_id: roomId } : { room_id: roomId, seq })).seq;
    }
    async clearRoom(roomId) {
        return (await this.request("room.clear", { room_id: roomId })).cleared_seq;
    }
    /** Typing indicator. Sent without an id unless `ack` is set: no reply, nothing waits. */
    async typing(roomId, typing = true, options = {}) {
        if (options.ack) {
            await this.request("typing", { room_id: roomId, typing });
            return;
        }
        this.sendUnacknowledged("typing", { room_id: roomId, typing });
    }
    async queryPresence(userIds) {
        return (await this.request("presence.query", { user_ids: userIds })).users;
    }
    // ---------------------------------------------------------------- rooms held and resync
    /**
     * Starts holding a room: from now on its `message.new` stream is kept gapless from `seq`
     * (the highest seq the app already has) and resynced after reconnects. Rooms are also held
     * automatically from `listRooms`, `openDirect`, `createGroup`, sends, `room.created` and
     * `message.new`. Use this to restore cursors the app persisted.
     */
    trackRoom(roomId, seq) {
        this.rooms.track(roomId, seq);
    }
    /** The highest seq delivered (or sent) per held room. */
    roomCursors() {
        return this.rooms.cursors();
    }
    // ---------------------------------------------------------------- calls
    async startCall(roomId, media = "video") {
        return (await this.request("call.start", { room_id: roomId, media })).call;
    }
    async acceptCall(callId) {
        return (await this.request("call.accept", { call_id: callId })).call;
    }
    async declineCall(callId) {
        return (await this.request("call.decline", { call_id: callId })).call;
    }
    async endCall(callId) {
        return (await this.request("call.end", { call_id: callId })).call;
    }
    /** Relays an SDP or ICE payload to a party (`to` is needed in calls of three or more). */
    async signal(callId, signal, to) {
        await this.request("call.signal", to === undefined ? { call_id: callId, signal } : { call_id: callId, signal, to });
    }
    async callHistory(roomId, limit) {
        return (await this.request("call.history", limit === undefined ? { room_id: roomId } : { room_id: roomId, limit })).calls;
    }
    // ---------------------------------------------------------------- live sessions
    async startLive(title) {
        return (await this.request("live.create", { title })).session;
    }
    async joinLive(sessionId) {
        return (await this.request("live.join", { session_id: sessionId })).session;
    }
    async leaveLive(sessionId) {
        return (await this.request("live.leave", { session_id: sessionId })).session;
    }
    async comment(sessionId, text) {
        await this.request("live.comment", { session_id: sessionId, text });
    }
    async liveComments(sessionId, options = {}) {
        const reply = await this.request("live.comments", { session_id: sessionId, ...options });
        return { comments: reply.comments, hasMore: reply.has_more };
    }
    async raiseHand(sessionId) {
        await this.request("live.raise_hand", { session_id: sessionId });
    }
    async lowerHand(sessionId, userId) {
        await this.request("live.lower_hand", userId === undefined ? { session_id: sessionId } : { session_id: sessionId, user_id: userId });
    }
    async hands(sessionId) {
        return (await this.request("live.hands", { session_id: sessionId })).hands;
    }
    async acceptHand(sessionId, userId) {
        await this.request("live.accept_hand", { session_id: sessionId, user_id: userId });
    }
    async inviteToLive(sessionId, userId) {
        await this.request("live.invite", { session_id: sessionId, user_id: userId });
    }
    async endLive(sessionId) {
        return (await this.request("live.end", { session_id: sessionId })).session;
    }
    // ---------------------------------------------------------------- social
    async follow(userId) {
        await this.request("follow.request", { user_id: userId });
    }
    async requestFriend(userId) {
        await this.request("friend.request", { user_id: userId });
    }
    async respondFollow(userId, accept) {
        return (await this.request("follow.respond", { user_id: userId, accept })).room;
    }
    async respondFriend(userId, accept) {
        return (await this.request("friend.respond", { user_id: userId, accept })).room;
    }
    async notifications(options = {}) {
        const { unreadOnly, ...rest } = options;
        const data = unreadOnly === undefined ? rest : { ...rest, unread_only: unreadOnly };
        return (await this.request("notification.list", data)).notifications;
    }
    async markNotificationsRead(ids) {
        return (await this.request("notification.read", ids === undefined ? {} : { ids })).read;
    }
    async like(userId, like = true) {
        return this.request("like", { user_id: userId, like });
    }
    async block(userId, blocked = true) {
        await this.request("block", { user_id: userId, blocked });
    }
    async blocked() {
        return (await this.request("block.list", undefined)).users;
    }
    async report(userId, reason, about = {}) {
        return (await this.request("report", {
            user_id: userId,
            reason,
            ...(about.roomId ? { room_id: about.roomId } : {}),
            ...(about.messageId ? { message_id: about.messageId } : {}),
        })).report_id;
    }
    async updateLocation(lat, lng) {
        return this.request("location.update", { lat, lng });
    }
    async nearby(radiusKm, limit) {
        return (await this.request("location.nearby", limit === undefined ? { radius_km: radiusKm } : { radius_km: radiusKm, limit }))
            .users;
    }
}
