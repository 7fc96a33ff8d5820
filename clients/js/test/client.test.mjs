// Connect, requests and typed errors, and pushes between two clients, against a real node.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { CallPeer, Switchboard, SwitchboardError } from "../dist/index.js";
import { Node, nextEvent, token, user } from "./helpers.mjs";

let node;
const clients = [];

async function connect(userId, options = {}) {
  const client = new Switchboard({ url: node.url, token: token(userId), keepaliveMs: 0, ...options });
  clients.push(client);
  await client.connect();
  return client;
}

before(async () => {
  node = await new Node().start();
});

after(async () => {
  for (const c of clients) c.close();
  await node.destroy();
});

describe("connect and requests", () => {
  test("hello gives the user and the connection", async () => {
    const alice = user("alice");
    const client = await connect(alice);
    assert.equal(client.state, "connected");
    assert.equal(client.userId, alice);
    assert.match(client.connectionId, /^[0-9a-f-]{36}$/);
  });

  test("the first connect rejects on a bad token", async () => {
    const client = new Switchboard({ url: node.url, token: "not-a-jwt", keepaliveMs: 0 });
    await assert.rejects(client.connect(), (err) => err instanceof SwitchboardError && err.code === "disconnected");
    assert.equal(client.state, "idle");
  });

  test("requests resolve with the ack's data", async () => {
    const [a, b] = [user("alice"), user("bob")];
    const alice = await connect(a);
    const room = await alice.openDirect(b);
    assert.equal(room.kind, "direct");
    assert.deepEqual([...room.members].sort(), [a, b].sort());
    const sent = await alice.send(room.id, "hello");
    assert.equal(sent.seq, 1);
    assert.equal(sent.body, "hello");
    assert.ok(sent.client_id, "every send carries a client_id");
    const again = await alice.send(room.id, "hello again", { clientId: sent.client_id });
    assert.equal(again.id, sent.id, "a repeated client_id returns the stored message");
    const page = await alice.history(room.id);
    assert.deepEqual(page.messages.map((m) => m.body), ["hello"]);
    assert.equal(page.hasMore, false);
    assert.equal(await alice.markRead(room.id), 1);
    const rooms = await alice.listRooms();
    assert.equal(rooms[0].id, room.id);
    assert.equal(rooms[0].last_seq, 1);
    const [presence] = await alice.queryPresence([a]);
    assert.equal(presence.online, true);
    const generic = await alice.request("room.list", { limit: 1 });
    assert.equal(generic.rooms.length, 1);
  });

  test("refusals reject with the protocol's code", async () => {
    const a = user("alice");
    const alice = await connect(a);
    const code = async (promise) => {
      try {
        await promise;
      } catch (err) {
        assert.ok(err instanceof SwitchboardError, `a SwitchboardError, not ${err}`);
        assert.equal(typeof err.message, "string");
        return err.code;
      }
      assert.fail("resolved");
    };
    assert.equal(await code(alice.openDirect(a)), "bad_request");
    assert.equal(await code(alice.history(randomUUID())), "not_found");
    assert.equal(await code(alice.request("no.such.event", {})), "unknown_event");
    const other = await connect(user("carol"));
    const room = await other.openDirect(user("dave"));
    assert.equal(await code(alice.send(room.id, "hi")), "forbidden");
    assert.equal(await code(alice.send(room.id, "x".repeat(17_000))), "forbidden");
    const mine = await alice.openDirect(user("erin"));
    assert.equal(await code(alice.send(mine.id, "x".repeat(17_000))), "too_large");
  });
});

describe("pushes", () => {
  test("messages, typing, read marks and groups reach the other client", async () => {
    const [a, b, c] = [user("alice"), user("bob"), user("carol")];
    const alice = await connect(a);
    const bob = await connect(b);
    const room = await alice.openDirect(b);

    const got = nextEvent(bob, "message.new");
    const sent = await alice.send(room.id, "hi bob");
    const { message } = await got;
    assert.equal(message.id, sent.id);
    assert.equal(message.sender_id, a);

    const typing = nextEvent(bob, "typing");
    await alice.typing(room.id, true);
    assert.deepEqual(await typing, { room_id: room.id, user_id: a, typing: true });

    const read = nextEvent(alice, "room.read");
    await bob.markRead(room.id);
    assert.deepEqual(await read, { room_id: room.id, user_id: b, seq: 1 });

    const created = nextEvent(bob, "room.created");
    const group = await alice.createGroup("Trip", [b, c]);
    assert.equal((await created).room.id, group.id);
    const left = nextEvent(bob, "room.member_left");
    await alice.leaveRoom(group.id);
    assert.deepEqual(await left, { room_id: group.id, user_id: a });
  });

  test("own sends are not delivered back as message.new", async () => {
    const [a, b] = [user("alice"), user("bob")];
    const alice = await connect(a);
    const bob = await connect(b);
    const room = await alice.openDirect(b);
    const seen = [];
    alice.on("message.new", ({ message }) => seen.push(message.seq));
    const bobSeen = [];
    bob.on("message.new", ({ message }) => bobSeen.push(message.seq));
    for (let i = 0; i < 5; i++) {
      await alice.send(room.id, `a${i}`);
      await bob.send(room.id, `b${i}`);
    }
    await nextEvent(alice, "message.new", ({ message }) => message.seq === 10).catch(() => {});
    assert.deepEqual(seen, [2, 4, 6, 8, 10]);
    assert.deepEqual(bobSeen, [1, 3, 5, 7, 9]);
  });

  test("live sessions: join, comments, hands and the end", async () => {
    const [h, v] = [user("host"), user("viewer")];
    const host = await connect(h);
    const viewer = await connect(v);
    const session = await host.startLive("Launch day");
    assert.equal(session.state, "live");

    const viewers = nextEvent(host, "live.viewers");
    await viewer.joinLive(session.id);
    assert.deepEqual(await viewers, { session_id: session.id, viewers: 1 });

    const comment = nextEvent(host, "live.comment");
    await viewer.comment(session.id, "hello");
    const pushed = await comment;
    assert.equal(pushed.text, "hello");
    assert.equal(pushed.user_id, v);
    const { comments } = await host.liveComments(session.id);
    assert.deepEqual(comments.map((c) => c.text), ["hello"]);

    const raised = nextEvent(host, "live.hand_raised");
    await viewer.raiseHand(session.id);
    assert.deepEqual(await raised, { session_id: session.id, user_id: v });
    assert.deepEqual((await host.hands(session.id)).map((x) => x.user_id), [v]);
    const accepted = nextEvent(viewer, "live.hand_accepted");
    await host.acceptHand(session.id, v);
    assert.deepEqual(await accepted, { session_id: session.id, user_id: v });

    const ended = nextEvent(viewer, "live.ended");
    const final = await host.endLive(session.id);
    assert.equal(final.state, "ended");
    const end = await ended;
    assert.equal(end.reason, "host_ended");
    assert.equal(end.session.id, session.id);
  });

  test("social: a follow request notifies, accepting opens the direct room", async () => {
    const [a, b] = [user("alice"), user("bob")];
    const alice = await connect(a);
    const bob = await connect(b);
    const note = nextEvent(bob, "notification");
    await alice.follow(b);
    const n = await note;
    assert.equal(n.kind, "follow_request");
    assert.equal(n.from, a);
    const accepted = nextEvent(alice, "notification");
    const room = await bob.respondFollow(a, true);
    assert.equal((await accepted).room_id, room.id);
    assert.equal((await bob.notifications()).length, 1);
  });
});

/** A stand-in for RTCPeerConnection that speaks just enough of the API for CallPeer. */
class FakePeerConnection {
  constructor() {
    this.signalingState = "stable";
    this.localDescription = null;
    this.remoteDescription = null;
    this.candidates = [];
    this.closed = false;
    this.onnegotiationneeded = null;
    this.onicecandidate = null;
  }
  addTrack() {
    queueMicrotask(() => this.onnegotiationneeded?.());
  }
  async setLocalDescription() {
    const type = this.signalingState === "have-remote-offer" ? "answer" : "offer";
    this.localDescription = { type, sdp: `v=0 ${type} ${randomUUID()}` };
    this.signalingState = type === "offer" ? "have-local-offer" : "stable";
    setTimeout(() => this.onicecandidate?.({ candidate: { toJSON: () => ({ candidate: `cand-${type}`, sdpMid: "0" }) } }), 5);
  }
  async setRemoteDescription(description) {
    this.remoteDescription = description;
    this.signalingState = description.type === "offer" ? "have-remote-offer" : "stable";
  }
  async addIceCandidate(candidate) {
    this.candidates.push(candidate);
  }
  restartIce() {}
  close() {
    this.closed = true;
  }
}

describe("calls", () => {
  test("CallPeer relays offer, answer and ICE through call.signal", async () => {
    const [a, b] = [user("alice"), user("bob")];
    const alice = await connect(a);
    const bob = await connect(b);
    const room = await alice.openDirect(b);

    const incoming = nextEvent(bob, "call.incoming");
    const call = await alice.startCall(room.id, "audio");
    assert.equal((await incoming).call.id, call.id);

    // The callee makes its peer before accepting; the caller makes its own on call.accepted.
    const bobPeer = new CallPeer({ client: bob, call, RTCPeerConnection: FakePeerConnection });
    const acceptedPush = nextEvent(alice, "call.accepted");
    await bob.acceptCall(call.id);
    const { call: active } = await acceptedPush;
    assert.equal(active.state, "active");
    const alicePeer = new CallPeer({ client: alice, call: active, RTCPeerConnection: FakePeerConnection });
    alicePeer.addStream({ getTracks: () => [{ kind: "audio" }] });

    const deadline = Date.now() + 5000;
    while (
      !(alicePeer.pc.remoteDescription?.type === "answer" && bobPeer.pc.candidates.length && alicePeer.pc.candidates.length) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(bobPeer.pc.remoteDescription.type, "offer");
    assert.equal(bobPeer.pc.remoteDescription.sdp, alicePeer.pc.localDescription.sdp);
    assert.equal(alicePeer.pc.remoteDescription.sdp, bobPeer.pc.localDescription.sdp);
    assert.deepEqual(bobPeer.pc.candidates[0], { candidate: "cand-offer", sdpMid: "0" });
    assert.deepEqual(alicePeer.pc.candidates[0], { candidate: "cand-answer", sdpMid: "0" });

    const ended = nextEvent(bob, "call.ended");
    await alice.endCall(call.id);
    assert.equal((await ended).reason, "hangup");
    assert.ok(bobPeer.pc.closed, "the peer closes when the call ends");
    alicePeer.close();
  });
});
