/**
 * The protocol's objects, requests and pushes as TypeScript types (docs/protocol.md §4, §5,
 * §10, §11). Field names are the wire's (snake_case): what the server sends is what you get.
 * @module
 */

/** RFC 3339 in UTC with milliseconds, e.g. `"2026-11-21T09:30:00.123Z"`. */
export type Timestamp = string;

export type MessageKind = "text" | "image" | "video" | "audio" | "file" | "system" | "deleted";
/** What a client may send: `system` and `deleted` are written by the server only. */
export type SendableKind = "text" | "image" | "video" | "audio" | "file";

export interface Message {
  id: string;
  room_id: string;
  /** Per room, from 1, strictly increasing without gaps. */
  seq: number;
  sender_id: string;
  kind: MessageKind;
  body: string;
  client_id: string | null;
  created_at: Timestamp;
  number?: number;
}

export interface Room {
  id: string;
  kind: "direct" | "group";
  name: string | null;
  members: string[];
  created_by: string;
  created_at: Timestamp;
  last_message: Message | null;
  unread: number;
  last_read_seq: number;
  last_seq: number;
  last_activity_at: Timestamp;
  number?: number;
}

export interface PresenceState {
  user_id: string;
  online: boolean;
  last_seen: Timestamp | null;
}

export type CallMedia = "audio" | "video";
export type CallState = "ringing" | "active" | "ended";
export type CallEndReason = "hangup" | "declined" | "missed" | "busy" | "cancelled" | "disconnected";
export type PartyStatus = "ringing" | "joined" | "declined" | "left" | "missed" | "busy" | "cancelled";

export interface Call {
  id: string;
  room_id: string;
  caller_id: string;
  callee_ids: string[];
  media: CallMedia;
  state: CallState;
  created_at: Timestamp;
  answered_at: Timestamp | null;
  ended_at: Timestamp | null;
  end_reason: CallEndReason | null;
  participants: { user_id: string; status: PartyStatus }[];
  duration_secs: number | null;
}

/** What `call.signal` carries: relayed unchanged by the server. The calls helper uses these. */
export type CallSignal =
  | { type: "offer" | "answer"; sdp: string }
  | { type: "candidate"; candidate: RTCIceCandidateInit | null }
  | { type: string; [key: string]: unknown };

export interface LiveSession {
  id: string;
  host_id: string;
  title: string;
  state: "live" | "ended";
  viewers: number;
  created_at: Timestamp;
  ended_at: Timestamp | null;
  end_reason: "host_ended" | "host_left" | null;
}

export interface LiveComment {
  id: string;
  session_id: string;
  user_id: string;
  text: string;
  at: Timestamp;
}

export type NotificationKind = "follow_request" | "follow_accepted" | "friend_request" | "friend_accepted";

export interface Notification {
  id: string;
  kind: NotificationKind;
  from: string;
  room_id: string | null;
  created_at: Timestamp;
  read: boolean;
}

export interface NearbyUser {
  user_id: string;
  distance_km: number;
  online: boolean;
}

/** Every push the server sends, by event name, with its `data`. */
export interface PushEvents {
  "message.new": { message: Message };
  "room.created": { room: Room };
  "room.read": { room_id: string; user_id: string; seq: number };
  "room.member_left": { room_id: string; user_id: string };
  "room.member_joined": { room_id: string; user_id: string };
  typing: { room_id: string; user_id: string; typing: boolean };
  presence: PresenceState;
  "call.incoming": { call: Call };
  "call.accepted": { call: Call };
  "call.ended": { call: Call; reason: CallEndReason | "answered_elsewhere" };
  "call.left": { call: Call; user_id: string };
  "call.signal": { call_id: string; from: string; signal: CallSignal };
  "live.viewers": { session_id: string; viewers: number };
  "live.comment": LiveComment;
  "live.hand_raised": { session_id: string; user_id: string };
  "live.hand_lowered": { session_id: string; user_id: string };
  "live.hand_accepted": { session_id: string; user_id: string };
  "live.invited": { session: LiveSession };
  "live.ended": { session: LiveSession; reason: "host_ended" | "host_left" };
  notification: Notification;
  match: { user_id: string; room_id: string };
  "auth.expiring": { expires_at: Timestamp };
}

/** Every request the client sends, by event name: its `data` and the ack's `data`. */
export interface Requests {
  "auth.refresh": [{ token: string }, { expires_at: Timestamp }];
  "room.direct": [{ user_id: string }, { room: Room }];
  "room.group.create": [{ name: string; members: string[] }, { room: Room }];
  "room.leave": [{ room_id: string }, { room_id: string }];
  "room.list": [{ limit?: number; before?: string | number }, { rooms: Room[] }];
  "message.send": [
    { room_id: string; body: string; kind?: SendableKind; client_id?: string },
    { message: Message },
  ];
  "message.history": [
    { room_id: string; before_seq?: number; after_seq?: number; limit?: number },
    { messages: Message[]; has_more: boolean },
  ];
  "room.read": [{ room_id: string; seq?: number }, { room_id: string; seq: number }];
  "room.clear": [{ room_id: string }, { room_id: string; cleared_seq: number }];
  typing: [{ room_id: string; typing: boolean }, void];
  "presence.query": [{ user_ids: string[] }, { users: PresenceState[] }];
  "call.start": [{ room_id: string; media?: CallMedia }, { call: Call }];
  "call.accept": [{ call_id: string }, { call: Call }];
  "call.decline": [{ call_id: string }, { call: Call }];
  "call.end": [{ call_id: string }, { call: Call }];
  "call.signal": [{ call_id: string; signal: CallSignal; to?: string }, void];
  "call.history": [{ room_id: string; limit?: number }, { calls: Call[] }];
  "live.create": [{ title: string }, { session: LiveSession }];
  "live.join": [{ session_id: string }, { session: LiveSession }];
  "live.leave": [{ session_id: string }, { session: LiveSession }];
  "live.comment": [{ session_id: string; text: string }, void];
  "live.comments": [
    { session_id: string; before?: string; limit?: number },
    { comments: LiveComment[]; has_more: boolean },
  ];
  "live.raise_hand": [{ session_id: string }, void];
  "live.lower_hand": [{ session_id: string; user_id?: string }, void];
  "live.hands": [{ session_id: string }, { session_id: string; hands: { user_id: string; raised_at: Timestamp }[] }];
  "live.accept_hand": [{ session_id: string; user_id: string }, void];
  "live.invite": [{ session_id: string; user_id: string }, void];
  "live.end": [{ session_id: string }, { session: LiveSession }];
  "follow.request": [{ user_id: string }, void];
  "friend.request": [{ user_id: string }, void];
  "follow.respond": [{ user_id: string; accept: boolean }, { room: Room | null }];
  "friend.respond": [{ user_id: string; accept: boolean }, { room: Room | null }];
  "notification.list": [
    { limit?: number; before?: string; unread_only?: boolean },
    { notifications: Notification[] },
  ];
  "notification.read": [{ ids?: string[] }, { read: number }];
  like: [{ user_id: string; like: boolean }, { matched: boolean; room: Room | null }];
  block: [{ user_id: string; blocked?: boolean }, { user_id: string; blocked: boolean }];
  "block.list": [Record<string, never> | undefined, { users: { user_id: string; blocked_at: Timestamp }[] }];
  report: [
    { user_id: string; reason: string; room_id?: string; message_id?: string },
    { report_id: string },
  ];
  "location.update": [{ lat: number; lng: number }, { lat: number; lng: number }];
  "location.nearby": [{ radius_km: number; limit?: number }, { users: NearbyUser[] }];
}

export type RequestName = keyof Requests;
export type RequestData<E extends RequestName> = Requests[E][0];
export type ReplyData<E extends RequestName> = Requests[E][1];
