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
import type { SwitchboardOptions } from "./options.js";
import { RoomResync } from "./resync.js";
import { SendQueue } from "./sends.js";
import type {
  Call,
  CallMedia,
  CallSignal,
  LiveComment,
  LiveSession,
  Message,
  NearbyUser,
  Notification,
  PresenceState,
  RequestData,
  Room,
  SendableKind,
  Timestamp,
} from "./types.js";

export class Switchboard extends SwitchboardConnection {
  private readonly rooms: RoomResync;
  private readonly sends: SendQueue;

  constructor(options: SwitchboardOptions) {
    super(options);
    const isConnected = () => this.state === "connected";
    this.rooms = new RoomResync(
      {
        readHistory: (data) => this.rawRequest("message.history", data, this.opts.requestTimeoutMs),
        isConnected,
        currentSocket: () => this.socket,
        isOwnSend: (message) => this.isOwnSend(message),
        deliver: (event) => this.emit("message.new", event),
        resynced: (summary) => this.emit("resynced", summary),
        reportError: (err) => this.emit("error", err),
      },
      { pageSize: this.opts.resyncPageSize, concurrency: this.opts.resyncConcurrency },
    );
    this.sends = new SendQueue(
      {
        transmit: (data) => this.rawRequest("message.send", data, this.opts.requestTimeoutMs),
        isConnected,
        stored: (message) => this.rooms.accept(message, { own: true, missed: false }),
      },
      { maxQueued: this.opts.maxQueuedSends, sendTimeoutMs: this.opts.sendTimeoutMs },
    );
  }

  // ---------------------------------------------------------------- connection hooks

  protected override handleConnected(reconnected: boolean): void {
    this.sends.resume();
    if (reconnected || this.rooms.size > 0) void this.rooms.resyncAll();
  }

  protected override handleDisconnected(): void {
    this.sends.connectionLost();
  }

  protected override handleStopped(err: SwitchboardError): void {
    this.rooms.stopGapTimers();
    this.sends.failAll(err);
  }

  protected override handlePush(event: string, data: any): boolean {
    switch (event) {
      case "message.new":
        if (data?.message) this.rooms.accept(data.message as Message, { own: this.isOwnSend(data.message), missed: false });
        return true;
      case "room.created":
        if (data?.room) this.rooms.hold(data.room.id, data.room.last_seq ?? 0);
        return false;
      case "room.member_left":
        if (data?.user_id === this.userId && data?.room_id) this.rooms.release(data.room_id);
        return false;
      default:
        return false;
    }
  }

  /** Learns rooms (and their current top seq) from replies. */
  protected override handleReply(event: string, reply: any): void {
    if (!reply || typeof reply !== "object") return;
    if (reply.room && typeof reply.room.id === "string") this.rooms.hold(reply.room.id, reply.room.last_seq ?? 0);
    if (event === "room.list" && Array.isArray(reply.rooms)) this.rooms.observeRoomList(reply.rooms as Room[]);
    if (event === "room.leave" && typeof reply.room_id === "string") this.rooms.release(reply.room_id);
  }

  /** Whether a message carries the client_id of a send of ours still waiting for its ack. */
  private isOwnSend(message: Message): boolean {
    if (!message.client_id || message.sender_id !== this.userId) return false;
    return this.sends.isWaiting(message.room_id, message.client_id);
  }

  // ---------------------------------------------------------------- chat

  /** Opens (or returns) the direct room with `userId`. */
  async openDirect(userId: string): Promise<Room> {
    return (await this.request("room.direct", { user_id: userId })).room;
  }

  async createGroup(name: string, members: string[]): Promise<Room> {
    return (await this.request("room.group.create", { name, members })).room;
  }

  /** One page of your rooms, newest activity first; `before` is the last room id of the previous page. */
  async listRooms(options: { limit?: number; before?: string | number } = {}): Promise<Room[]> {
    return (await this.request("room.list", options)).rooms;
  }

  async leaveRoom(roomId: string): Promise<void> {
    await this.request("room.leave", { room_id: roomId });
  }

  /**
   * Sends a message; resolves with the stored message once the server committed it. Every
   * send carries a `client_id` (generated unless given). While offline the send is queued
   * (at most `maxQueuedSends`); a send whose ack was lost is resent with the same `client_id`
   * after reconnecting, so it is stored once. Rejects on a refusal (`forbidden`, `too_large`,
   * …), `queue_full`, `closed`, or `timeout` after `sendTimeoutMs`.
   */
  send(roomId: string, body: string, options: { kind?: SendableKind; clientId?: string } = {}): Promise<Message> {
    if (this.closedAfterConnecting) {
      return Promise.reject(new SwitchboardError("closed", "the client is closed", "message.send"));
    }
    return this.sends.enqueue(roomId, body, options);
  }

  /** A page of a room's history, in ascending seq (`before_seq` or `after_seq` as cursor). */
  async history(
    roomId: string,
    options: { beforeSeq?: number; afterSeq?: number; limit?: number } = {},
  ): Promise<{ messages: Message[]; hasMore: boolean }> {
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
  async markRead(roomId: string, seq?: number): Promise<number> {
    return (await this.request("room.read", seq === undefined ? { room_id: roomId } : { room_id: roomId, seq })).seq;
  }

  async clearRoom(roomId: string): Promise<number> {
    return (await this.request("room.clear", { room_id: roomId })).cleared_seq;
  }

  /** Typing indicator. Sent without an id unless `ack` is set: no reply, nothing waits. */
  async typing(roomId: string, typing = true, options: { ack?: boolean } = {}): Promise<void> {
    if (options.ack) {
      await this.request("typing", { room_id: roomId, typing });
      return;
    }
    this.sendUnacknowledged("typing", { room_id: roomId, typing });
  }

  async queryPresence(userIds: string[]): Promise<PresenceState[]> {
    return (await this.request("presence.query", { user_ids: userIds })).users;
  }

  // ---------------------------------------------------------------- rooms held and resync

  /**
   * Starts holding a room: from now on its `message.new` stream is kept gapless from `seq`
   * (the highest seq the app already has) and resynced after reconnects. Rooms are also held
   * automatically from `listRooms`, `openDirect`, `createGroup`, sends, `room.created` and
   * `message.new`. Use this to restore cursors the app persisted.
   */
  trackRoom(roomId: string, seq: number): void {
    this.rooms.track(roomId, seq);
  }

  /** The highest seq delivered (or sent) per held room. */
  roomCursors(): Map<string, number> {
    return this.rooms.cursors();
  }

  // ---------------------------------------------------------------- calls

  async startCall(roomId: string, media: CallMedia = "video"): Promise<Call> {
    return (await this.request("call.start", { room_id: roomId, media })).call;
  }
  async acceptCall(callId: string): Promise<Call> {
    return (await this.request("call.accept", { call_id: callId })).call;
  }
  async declineCall(callId: string): Promise<Call> {
    return (await this.request("call.decline", { call_id: callId })).call;
  }
  async endCall(callId: string): Promise<Call> {
    return (await this.request("call.end", { call_id: callId })).call;
  }
  /** Relays an SDP or ICE payload to a party (`to` is needed in calls of three or more). */
  async signal(callId: string, signal: CallSignal, to?: string): Promise<void> {
    await this.request("call.signal", to === undefined ? { call_id: callId, signal } : { call_id: callId, signal, to });
  }
  async callHistory(roomId: string, limit?: number): Promise<Call[]> {
    return (await this.request("call.history", limit === undefined ? { room_id: roomId } : { room_id: roomId, limit })).calls;
  }

  // ---------------------------------------------------------------- live sessions

  async startLive(title: string): Promise<LiveSession> {
    return (await this.request("live.create", { title })).session;
  }
  async joinLive(sessionId: string): Promise<LiveSession> {
    return (await this.request("live.join", { session_id: sessionId })).session;
  }
  async leaveLive(sessionId: string): Promise<LiveSession> {
    return (await this.request("live.leave", { session_id: sessionId })).session;
  }
  async comment(sessionId: string, text: string): Promise<void> {
    await this.request("live.comment", { session_id: sessionId, text });
  }
  async liveComments(
    sessionId: string,
    options: { before?: string; limit?: number } = {},
  ): Promise<{ comments: LiveComment[]; hasMore: boolean }> {
    const reply = await this.request("live.comments", { session_id: sessionId, ...options });
    return { comments: reply.comments, hasMore: reply.has_more };
  }
  async raiseHand(sessionId: string): Promise<void> {
    await this.request("live.raise_hand", { session_id: sessionId });
  }
  async lowerHand(sessionId: string, userId?: string): Promise<void> {
    await this.request("live.lower_hand", userId === undefined ? { session_id: sessionId } : { session_id: sessionId, user_id: userId });
  }
  async hands(sessionId: string): Promise<{ user_id: string; raised_at: Timestamp }[]> {
    return (await this.request("live.hands", { session_id: sessionId })).hands;
  }
  async acceptHand(sessionId: string, userId: string): Promise<void> {
    await this.request("live.accept_hand", { session_id: sessionId, user_id: userId });
  }
  async inviteToLive(sessionId: string, userId: string): Promise<void> {
    await this.request("live.invite", { session_id: sessionId, user_id: userId });
  }
  async endLive(sessionId: string): Promise<LiveSession> {
    return (await this.request("live.end", { session_id: sessionId })).session;
  }

  // ---------------------------------------------------------------- social

  async follow(userId: string): Promise<void> {
    await this.request("follow.request", { user_id: userId });
  }
  async requestFriend(userId: string): Promise<void> {
    await this.request("friend.request", { user_id: userId });
  }
  async respondFollow(userId: string, accept: boolean): Promise<Room | null> {
    return (await this.request("follow.respond", { user_id: userId, accept })).room;
  }
  async respondFriend(userId: string, accept: boolean): Promise<Room | null> {
    return (await this.request("friend.respond", { user_id: userId, accept })).room;
  }
  async notifications(options: { limit?: number; before?: string; unreadOnly?: boolean } = {}): Promise<Notification[]> {
    const { unreadOnly, ...rest } = options;
    const data: RequestData<"notification.list"> = unreadOnly === undefined ? rest : { ...rest, unread_only: unreadOnly };
    return (await this.request("notification.list", data)).notifications;
  }
  async markNotificationsRead(ids?: string[]): Promise<number> {
    return (await this.request("notification.read", ids === undefined ? {} : { ids })).read;
  }
  async like(userId: string, like = true): Promise<{ matched: boolean; room: Room | null }> {
    return this.request("like", { user_id: userId, like });
  }
  async block(userId: string, blocked = true): Promise<void> {
    await this.request("block", { user_id: userId, blocked });
  }
  async blocked(): Promise<{ user_id: string; blocked_at: Timestamp }[]> {
    return (await this.request("block.list", undefined)).users;
  }
  async report(userId: string, reason: string, about: { roomId?: string; messageId?: string } = {}): Promise<string> {
    return (
      await this.request("report", {
        user_id: userId,
        reason,
        ...(about.roomId ? { room_id: about.roomId } : {}),
        ...(about.messageId ? { message_id: about.messageId } : {}),
      })
    ).report_id;
  }
  async updateLocation(lat: number, lng: number): Promise<{ lat: number; lng: number }> {
    return this.request("location.update", { lat, lng });
  }
  async nearby(radiusKm: number, limit?: number): Promise<NearbyUser[]> {
    return (await this.request("location.nearby", limit === undefined ? { radius_km: radiusKm } : { radius_km: radiusKm, limit }))
      .users;
  }
}
