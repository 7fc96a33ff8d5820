// Calls: ring the open room, answer or decline a ring, and hold the call over WebRTC with the
// SDK's `CallPeer` (signaling through `call.signal`). No STUN or TURN: host candidates only,
// enough between two pages on one machine or one network. `#call[data-pc-state]` mirrors the
// peer connection's `connectionState`.

import { CallPeer } from "./vendor/switchboard/calls.js";
import { $, guarded, showError } from "./dom.js";

const RTC_CONFIG = { iceServers: [] };

let app;
/** The call on this page: { call, peer, stream } or null. */
let current = null;
/** A call ringing for us, not yet answered. */
let ringing = null;

export function init(appRef) {
  app = appRef;
  const client = app.state.client;
  client.on("call.incoming", ({ call }) => {
    if (current) return; // the server rings a user holding a line as busy; this is another device's
    ringing = call;
    $("ring-from").textContent = call.caller_id;
    $("ring-media").textContent = call.media;
    $("ring").hidden = false;
  });
  client.on("call.accepted", guarded("side-error", async ({ call }) => {
    if (!current || current.call.id !== call.id || current.peer) return;
    current.call = call;
    await attach(call);
  }));
  client.on("call.ended", ({ call, reason }) => {
    if (ringing?.id === call.id) {
      ringing = null;
      $("ring").hidden = true;
    }
    if (current?.call.id === call.id) finish(`Call ended (${reason})`);
  });
  $("call-audio").addEventListener("click", guarded("side-error", () => start("audio")));
  $("call-video").addEventListener("click", guarded("side-error", () => start("video")));
  $("ring-accept").addEventListener("click", guarded("side-error", accept));
  $("ring-decline").addEventListener("click", guarded("side-error", decline));
  $("call-hangup").addEventListener("click", guarded("side-error", hangUp));
}

async function start(media) {
  if (current) throw new Error("already in a call");
  const roomId = app.state.openRoom;
  if (!roomId) throw new Error("open a conversation first");
  const call = await app.state.client.startCall(roomId, media);
  if (call.state === "ended") throw new Error(`could not ring: ${call.end_reason}`);
  current = { call, peer: null, stream: null };
  show("ringing", `Ringing ${call.callee_ids.join(", ")}…`);
}

async function accept() {
  const call = ringing;
  if (!call) return;
  ringing = null;
  $("ring").hidden = true;
  current = { call, peer: null, stream: null };
  show("connecting", "Connecting…");
  // The callee's peer exists before the accept, so the caller's offer finds it.
  await attach(call);
  current.call = await app.state.client.acceptCall(call.id);
}

async function decline() {
  const call = ringing;
  ringing = null;
  $("ring").hidden = true;
  if (call) await app.state.client.declineCall(call.id);
}

async function hangUp() {
  const call = current?.call;
  finish("Call ended");
  if (call) await app.state.client.endCall(call.id);
}

/** Opens the camera and microphone and wires them to a `CallPeer` for `call`. */
async function attach(call) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.media === "video" });
  if (!current || current.call.id !== call.id) {
    for (const track of stream.getTracks()) track.stop();
    return;
  }
  const peer = new CallPeer({
    client: app.state.client,
    call,
    rtcConfig: RTC_CONFIG,
    onTrack: (event) => {
      $("remote-video").srcObject = event.streams[0] ?? new MediaStream([event.track]);
    },
    // A signaling error may be recovered by the next offer: it is logged, and only a failed
    // connection is shown.
    onError: (err) => console.warn("call signaling:", err),
  });
  current.peer = peer;
  current.stream = stream;
  $("local-video").srcObject = stream;
  peer.pc.addEventListener("connectionstatechange", () => {
    const state = peer.pc.connectionState;
    $("call").dataset.pcState = state;
    if (state === "connected") show("active", `In call with ${peer.peer} (${call.media})`);
    else if (state === "failed") {
      show("failed", "Connection failed");
      showError("side-error", new Error("the call's connection failed (no route between the two browsers)"));
    }
  });
  peer.addStream(stream);
  show("connecting", "Connecting…");
}

function show(state, text) {
  $("call").hidden = false;
  $("call-hangup").hidden = false;
  $("call").dataset.state = state;
  $("call-status").textContent = text;
}

function finish(text) {
  if (!current) return;
  current.peer?.close();
  for (const track of current.stream?.getTracks() ?? []) track.stop();
  current = null;
  $("remote-video").srcObject = null;
  $("local-video").srcObject = null;
  $("call").dataset.state = "ended";
  $("call-hangup").hidden = true;
  $("call").dataset.pcState = "closed";
  $("call-status").textContent = text;
  setTimeout(() => {
    if (!current) $("call").hidden = true;
  }, 1500);
}
