// Drives the three seed dialects with stock Socket.IO clients for the Rust tests
// (tests/api/dialects.rs): every event of every seed document, with the seed's field names
// and value types. Usage: node dialects.mjs <social|messenger|rooms> <v4|v3>; URL and
// TOKENS (a JSON object user id → token) come from the environment.
import assert from "node:assert/strict";
import { io as io4 } from "socket.io-client";
import io2 from "socket.io-client-v2";

const { URL } = process.env;
const TOKENS = JSON.parse(process.env.TOKENS);
const [seed, version] = process.argv.slice(2);
const timer = setTimeout(() => fail(new Error(`${seed} over ${version} timed out`)), 30000);

function fail(error) {
  console.error(error?.stack ?? String(error));
  process.exit(1);
}

// The listener names each seed document shows, plus `error` for refusals.
const LISTENERS = {
  social: ["createdChat", "chatReceive", "checkUpdate", "likeDislikeUser", "sendRequestUser", "RoomCreated", "getRequest",
    "videoCallReceive", "videoCallEndReceive", "acceptVideoCallReceive", "sessionJoinSuccess", "endSessionSuccess",
    "nowEnd", "commentResponse", "raiseHandSuccess", "raiseHandAcceptedSuccess"],
  messenger: ["connect_listener", "new_message", "get_data_message", "chat_message", "block_data", "cleared_chat",
    "report_data"],
  rooms: ["logs response", "receive", "call response", "user response"],
  native: ["message.new"],
};

/** Connects `user` speaking `api`, recording every listener event in arrival order. */
async function connect(user, api) {
  const token = TOKENS[user];
  const socket = version === "v4"
    ? io4(URL, { transports: ["websocket"], auth: { token, api }, reconnection: false, forceNew: true })
    : io2(URL, { transports: ["websocket"], query: { token, api }, reconnection: false, forceNew: true });
  const queues = new Map();
  const waiting = new Map();
  for (const event of [...LISTENERS[api], "error"]) {
    socket.on(event, (data) => {
      const waiters = waiting.get(event) ?? [];
      const index = waiters.findIndex((w) => w.wanted(data));
      if (index >= 0) waiters.splice(index, 1)[0].resolve(data);
      else queues.set(event, [...(queues.get(event) ?? []), data]);
    });
  }
  /** The next `event` not yet taken that is `wanted` (waits for it); others stay queued. */
  socket.next = (event, wanted = () => true) => {
    const queued = queues.get(event) ?? [];
    const index = queued.findIndex(wanted);
    if (index >= 0) return Promise.resolve(queued.splice(index, 1)[0]);
    return new Promise((resolve) => waiting.set(event, [...(waiting.get(event) ?? []), { wanted, resolve }]));
  };
  /** Asserts nothing more arrived on `event`. */
  socket.none = (event) => assert.equal(queues.get(event)?.length ?? 0, 0, `unexpected ${event}`);
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once(version === "v4" ? "connect_error" : "error", reject);
  });
  return socket;
}

// Callback form, which both client versions share.
const request = (socket, event, data) => new Promise((resolve) => socket.emit(event, data, resolve));

const NUMBER = (value) => assert.equal(typeof value, "number", `${value} is not a number`);
const MINUTES = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$/;

async function messenger() {
  const yash = await connect("150", "messenger");
  const sat = await connect("151", "messenger");

  yash.emit("connect_user", { userId: "150" });
  assert.equal((await yash.next("connect_listener")).userId, 150);

  yash.emit("send_message", { senderId: "150", receiverId: "151", messageType: "0", message: "hello" });
  const sent = await yash.next("new_message");
  const received = await sat.next("new_message");
  assert.deepEqual(received, sent);
  for (const field of ["id", "chatConstantId", "created", "updated"]) NUMBER(sent[field]);
  assert.deepEqual(
    { ...sent, id: 0, chatConstantId: 0, created: 0, updated: 0 },
    {
      id: 0, senderId: 150, receiverId: 151, chatConstantId: 0, groupId: 0, message: "hello", readStatus: 0,
      messageType: 0, deletedId: 0, created: 0, updated: 0, senderName: "yash", senderImage: "yash.png",
      recieverImage: "sat.png", recieverName: "Satvinder singh", image: "sat.png",
    },
  );

  // An ack carries the listener's payload too; an image is a file key, as the app sends it.
  const photo = await request(yash, "send_message",
    { senderId: "150", receiverId: "151", messageType: "1", message: "2eb32d7d.png" });
  assert.equal(photo.messageType, 1);
  assert.ok(photo.id > sent.id);
  await yash.next("new_message");
  assert.equal((await sat.next("new_message")).message, "2eb32d7d.png");

  sat.emit("chat_listing", { userId: "151" });
  const [unread] = await sat.next("chat_message");
  assert.equal(unread.unreadcount, 2);
  assert.equal(unread.receiverId, 150);
  assert.equal(unread.userName, "yash");
  assert.equal(unread.isOnline, 1);
  assert.equal(unread.lastMessageId, photo.id);
  assert.equal(unread.id, sent.chatConstantId);

  sat.emit("get_message", { senderId: "151", receiverId: "150" });
  const history = await sat.next("get_data_message");
  assert.deepEqual(history.map((m) => m.message), ["hello", "2eb32d7d.png"]);
  assert.equal(history[0].id, sent.id);
  sat.emit("chat_listing", { userId: "151" });
  assert.equal((await sat.next("chat_message"))[0].unreadcount, 0);
  yash.emit("get_message", { senderId: "150", receiverId: "151" });
  assert.ok((await yash.next("get_data_message")).every((m) => m.readStatus === 1));

  // A native user and a messenger user chat, each in their own dialect.
  const alice = await connect("alice", "native");
  const room = await request(alice, "room.direct", { user_id: "150" });
  const fromNative = await request(alice, "message.send", { room_id: room.data.room.id, body: "hi from native" });
  assert.equal(fromNative.ok, true);
  const seen = await yash.next("new_message");
  assert.equal(seen.senderId, "alice");
  assert.equal(seen.senderName, "Alice");
  assert.equal(seen.receiverId, 150);
  assert.equal(seen.message, "hi from native");
  yash.emit("send_message", { senderId: "150", receiverId: "alice", messageType: "0", message: "hi alice" });
  assert.equal((await alice.next("message.new")).message.body, "hi alice");
  await yash.next("new_message");

  // Identity is the token's: another sender is refused, on the ack or as an `error` event.
  const forged = await request(yash, "send_message", { senderId: "151", receiverId: "150", message: "x" });
  assert.equal(forged.error.code, "forbidden");
  yash.emit("send_message", { senderId: "151", receiverId: "150", message: "x" });
  assert.equal((await yash.next("error")).code, "forbidden");
  yash.emit("no_such_event", {});
  assert.equal((await yash.next("error")).code, "unknown_event");

  yash.emit("delete_chat", { senderId: "150", receiverId: "151" });
  assert.deepEqual(await yash.next("cleared_chat"), { success_message: "chat cleared successfully" });
  yash.emit("get_message", { senderId: "150", receiverId: "151" });
  assert.deepEqual(await yash.next("get_data_message"), []);

  yash.emit("report_user", { userId: "150", user2Id: "151" });
  assert.deepEqual(await yash.next("report_data"), { success_message: "Report Added Successfully" });

  yash.emit("block_user", { userId: "150", user2Id: "151", status: "1" });
  assert.deepEqual(await yash.next("block_data"), { block_data: "1", userId: "150" });
  sat.emit("send_message", { senderId: "151", receiverId: "150", message: "are you there?" });
  assert.equal((await sat.next("error")).code, "forbidden");
  // While the block stands, the blocked user does not see the blocker's presence.
  sat.emit("chat_listing", { userId: "151" });
  assert.equal((await sat.next("chat_message"))[0].isOnline, 0);
  // Nor read marks: no message shows as read across a block (sat read these before it).
  sat.emit("get_message", { senderId: "151", receiverId: "150" });
  const acrossBlock = await sat.next("get_data_message");
  assert.ok(acrossBlock.length > 0 && acrossBlock.every((m) => m.readStatus === 0));
  yash.emit("block_user", { userId: "150", user2Id: "151", status: "0" });
  assert.deepEqual(await yash.next("block_data"), { block_data: "0", userId: "150" });
  sat.emit("send_message", { senderId: "151", receiverId: "150", message: "back" });
  assert.equal((await yash.next("new_message")).message, "back");
  yash.none("new_message");
  for (const socket of [yash, sat, alice]) socket.disconnect();
}

async function rooms() {
  const one = await connect("1", "rooms");
  const two = await connect("2", "rooms");

  // Presence of user 2 may arrive as a status log first: once the room opens they are peers.
  one.emit("request", { user_id: 1, recipient_id: 2 });
  const opened = await one.next("logs response", (log) => log.type === "request");
  assert.equal(opened.type, "request");
  assert.equal(opened.success, true);
  const room = opened.room_title;
  assert.match(room, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);

  one.emit("send", { user_id: 1, room_title: room, message: "Lorem Ipsum is my message", type_id: 2 });
  const expected = { user_id: 1, room_title: room, message: "Lorem Ipsum is my message", type_id: 2 };
  assert.deepEqual(await one.next("receive"), expected);
  assert.deepEqual(await two.next("receive"), expected);

  const ownStatus = (log) => log.type === "status" && log.user_id === 1;
  one.emit("status", { user_id: 1, online: true });
  const status = await one.next("logs response", ownStatus);
  assert.deepEqual({ ...status, last_seen: "" }, { type: "status", user_id: 1, online: true, last_seen: "" });
  assert.match(status.last_seen, MINUTES);

  one.emit("user list", { user_id: 1 });
  const list = await one.next("call response");
  assert.equal(list.type, "list");
  assert.equal(list.rooms.length, 1);
  const [row] = list.rooms;
  NUMBER(row.id);
  assert.deepEqual({ ...row, id: 0, last_message_date: "", recipient_lastseen: "" }, {
    id: 0, title: room, user_id: 1, recipient_id: 2, last_message: "Lorem Ipsum is my message",
    last_message_date: "", recipient_status: "online", recipient_lastseen: "", recipient_avatar: "#",
    recipient_name: "Sajjad Rajabi",
  });
  assert.match(row.last_message_date, MINUTES);
  assert.match(row.recipient_lastseen, MINUTES);
  // Across a block (made natively: the seed has none), the list hides the other's presence.
  const twoNative = await connect("2", "native");
  assert.equal((await request(twoNative, "block", { user_id: "1" })).ok, true);
  one.emit("user list", { user_id: 1 });
  const hidden = (await one.next("call response")).rooms[0];
  assert.equal(hidden.recipient_status, "offline");
  assert.equal(hidden.recipient_lastseen, "");
  assert.equal((await request(twoNative, "block", { user_id: "1", blocked: false })).ok, true);
  twoNative.disconnect();

  one.emit("call", { from_user: 1, to_user: 2, type: "Video" });
  const ringing = { room_id: room, from_id: 1, to_id: 2, from_status: "Calling", to_status: "Ringing",
    call_type: "Video", type: "request" };
  assert.deepEqual(await one.next("call response"), ringing);
  assert.deepEqual(await two.next("call response"), ringing);
  two.emit("call answer", { from_user: 1, to_user: 2, room_title: room, answered: true });
  const answered = { status: true, type: "answer", room_title: room };
  assert.deepEqual(await two.next("call response"), answered);
  assert.deepEqual(await one.next("call response"), answered);
  // The caller hangs up: a negative answer from the caller ends the call.
  one.emit("call answer", { from_user: 1, to_user: 2, room_title: room, answered: false });
  assert.deepEqual(await one.next("call response"), { status: false, type: "answer", room_title: room });
  assert.deepEqual(await two.next("call response"),
    { status: false, type: "end", room_title: room, reason: "hangup" });

  // A second call, answered, which the callee ends.
  one.emit("call", { from_user: 1, to_user: 2, type: "Audio" });
  assert.equal((await two.next("call response")).call_type, "Audio");
  await one.next("call response");
  two.emit("call answer", { from_user: 1, to_user: 2, room_title: room, answered: true });
  await two.next("call response");
  await one.next("call response");
  two.emit("call answer", { from_user: 1, to_user: 2, room_title: room, answered: false });
  assert.deepEqual(await two.next("call response"), { status: false, type: "answer", room_title: room });
  assert.deepEqual(await one.next("call response"),
    { status: false, type: "end", room_title: room, reason: "hangup" });

  one.emit("refresh", { room_title: room });
  assert.deepEqual(await one.next("user response"), { type: "status", refresh: true });
  const stranger = await connect("3", "rooms");
  stranger.emit("refresh", { room_title: room });
  assert.equal((await stranger.next("error")).code, "forbidden");
  stranger.emit("send", { user_id: 1, room_title: room, message: "forged", type_id: 2 });
  assert.equal((await stranger.next("error")).code, "forbidden");

  // Presence of the people one shares a room with arrives as a status log.
  two.disconnect();
  const gone = await one.next("logs response", (log) => log.user_id === 2 && log.online === false);
  assert.equal(gone.type, "status");
  assert.equal(gone.user_id, 2);
  assert.equal(gone.online, false);
  assert.match(gone.last_seen, MINUTES);
  one.disconnect();
  stranger.disconnect();
}

const U1 = "62b92abb678ed5696f559c59";
const U2 = "62b936e74b8657af236232c1";
const U3 = "62bbf8027f82978b8bfa970f";

async function social() {
  const u1 = await connect(U1, "social");
  const u2 = await connect(U2, "social");
  const u3 = await connect(U3, "social");

  u2.emit("chat", { user_1: U1, user_2: U2, text: "hello", sender_id: U2 });
  const mine = await u2.next("chatReceive");
  assert.deepEqual(await u1.next("chatReceive"), mine);
  assert.equal(mine.sender_id, U2);
  assert.equal(mine.text, "hello");
  const chatRoom = mine.chat_room;

  u1.emit("readUnread", { chat_room: chatRoom, user_id: "" });
  assert.deepEqual(await u1.next("chatReceive"), { chat_room: chatRoom, user_id: U1, read_seq: 1, read: true });
  assert.deepEqual(await u2.next("chatReceive"), { chat_room: chatRoom, user_id: U1, read_seq: 1, read: true });

  u1.emit("updateLatLong", { user_id: U1, longitude: "74.833771", latitude: "31.228125" });
  assert.deepEqual(await u1.next("checkUpdate"),
    { user_id: U1, latitude: "31.228125", longitude: "74.833771", success: true });

  u1.emit("LikeOrDislikeUserForDating", { user_id: U1, like: 1, like_user_id: U2 });
  assert.equal((await u1.next("likeDislikeUser")).match, 0);
  u2.emit("LikeOrDislikeUserForDating", { user_id: U2, like: 1, like_user_id: U1 });
  // U2 gets the reply to its like and the match announcement, in either order.
  const both = [await u2.next("likeDislikeUser"), await u2.next("likeDislikeUser")];
  const reply = both.find((m) => m.user_id === U2);
  assert.deepEqual(reply, { user_id: U2, like_user_id: U1, like: 1, match: 1, chat_room: chatRoom });
  assert.deepEqual(both.find((m) => m.user_id === U1),
    { user_id: U1, like_user_id: U1, like: 1, match: 1, chat_room: chatRoom });
  assert.deepEqual(await u1.next("likeDislikeUser"),
    { user_id: U2, like_user_id: U2, like: 1, match: 1, chat_room: chatRoom });

  u1.emit("sendRequest", { user_id: U1, combine_id: "62c556e444d24d01bf213f1d", request_id: U3 });
  assert.deepEqual(await u1.next("sendRequestUser"), { user_id: U1, request_id: U3,
    combine_id: "62c556e444d24d01bf213f1d", status: 1, chat_room: null });
  const asked = await u3.next("sendRequestUser");
  assert.equal(asked.user_id, U1);
  assert.equal(asked.status, 1);
  // Asking back someone who asked you accepts (status 2, "accepted request").
  u3.emit("sendRequest", { user_id: U3, combine_id: "x", request_id: U1 });
  const accepted = await u3.next("sendRequestUser");
  assert.equal(accepted.status, 2);
  const told = await u1.next("sendRequestUser");
  assert.equal(told.user_id, U3);
  assert.equal(told.status, 2);
  // The acceptance opened a chat between them.
  const created = await u1.next("createdChat");
  assert.equal(created.chat_room, accepted.chat_room);
  assert.deepEqual([created.user_1, created.user_2].sort(), [U1, U3].sort());

  u1.emit("sendFriendRequest", { user_id: U1, requested_id: U2 });
  assert.deepEqual(await u1.next("getRequest"), { user_id: U1, requested_id: U2, status: 1, chat_room: null });
  const friend = await u2.next("getRequest");
  assert.equal(friend.user_id, U1);
  assert.equal(friend.status, 1);

  u1.emit("createGroupRoom", { groupName: "Trip", user1: U1, user2: U2, user3: U3 });
  const group = await u1.next("RoomCreated");
  assert.equal(group.groupName, "Trip");
  assert.deepEqual([...group.users].sort(), [U1, U2, U3].sort());
  assert.equal((await u2.next("RoomCreated")).chat_room_id, group.chat_room_id);
  u2.emit("chatByGroup", { chat_room_id: group.chat_room_id, sender_id: U2, text: "to the group" });
  for (const socket of [u1, u2, u3]) {
    const message = await socket.next("chatReceive");
    assert.equal(message.text, "to the group");
    assert.equal(message.chat_room_id, group.chat_room_id);
  }
  u3.emit("readUnreadInGroup", { group_chat_room: group.chat_room_id, user_id: U3 });
  assert.deepEqual(await u3.next("chatReceive"),
    { chat_room: group.chat_room_id, user_id: U3, read_seq: 1, read: true });
  await u1.next("chatReceive");
  await u2.next("chatReceive");

  u2.emit("videoCall", { chat_room_id: chatRoom, sender_id: U2, receiver_id: U1 });
  const calling = await u2.next("videoCallReceive");
  assert.deepEqual(await u1.next("videoCallReceive"), calling);
  assert.equal(calling.sender_id, U2);
  assert.equal(calling.receiver_id, U1);
  u1.emit("acceptVideoCall", { chat_room_id: chatRoom });
  assert.equal((await u1.next("acceptVideoCallReceive")).call_id, calling.call_id);
  assert.equal((await u2.next("acceptVideoCallReceive")).status, "active");
  u2.emit("videoCallEnd", { chat_room_id: chatRoom, sender_id: U2, receiver_id: U1 });
  assert.equal((await u2.next("videoCallEndReceive")).reason, "hangup");
  assert.equal((await u1.next("videoCallEndReceive")).call_id, calling.call_id);

  u1.emit("callForJoin", { session_id: "", create_session_user: U1 });
  const live = await u1.next("nowEnd");
  assert.equal(live.create_session_user, U1);
  assert.equal(live.status, "live");
  const session = live.session_id;
  u2.emit("joinSession", { session_id: session });
  assert.equal((await u2.next("sessionJoinSuccess")).viewers, 1);
  u2.emit("commentOnLiveSession", { session_id: session, user_id: U2, comment: "hi host" });
  assert.deepEqual(await u2.next("commentResponse"), { session_id: session, user_id: U2, comment: "hi host" });
  assert.equal((await u1.next("commentResponse")).comment, "hi host");
  u2.emit("raiseHand", { session_id: session, user_id: U2 });
  assert.deepEqual(await u2.next("raiseHandSuccess"), { session_id: session, user_id: U2 });
  assert.deepEqual(await u1.next("raiseHandSuccess"), { session_id: session, user_id: U2 });
  u2.emit("raiseHandAccepted", { session_id: session, user_id: U2 });
  assert.equal((await u2.next("error")).code, "forbidden");
  u1.emit("raiseHandAccepted", { session_id: session, user_id: U1 });
  assert.deepEqual(await u1.next("raiseHandAcceptedSuccess"), { session_id: session, user_id: U2 });
  assert.deepEqual(await u2.next("raiseHandAcceptedSuccess"), { session_id: session, user_id: U2 });
  u2.emit("endSession", { session_id: session, create_session_user: U2 });
  assert.equal((await u2.next("error")).code, "forbidden");
  u1.emit("endSession", { session_id: session, create_session_user: U1 });
  assert.equal((await u1.next("endSessionSuccess")).status, "ended");
  assert.equal((await u2.next("endSessionSuccess")).session_id, session);
  for (const socket of [u1, u2, u3]) socket.disconnect();
}

try {
  const run = { social, messenger, rooms }[seed];
  if (!run || !["v4", "v3"].includes(version)) throw new Error(`usage: dialects.mjs <seed> <v4|v3>`);
  await run();
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: true, seed, version }));
  process.exit(0);
} catch (error) {
  fail(error);
}
