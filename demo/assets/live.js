// Live sessions: go live, invite people by name, comment, raise a hand, and (host) accept a
// raised hand onto the stage. The media of a session is not part of this demo.

import { $, el, guarded } from "./dom.js";

let app;
/** The session shown: { session, host } or null. */
let shown = null;

export function init(appRef) {
  app = appRef;
  const client = app.state.client;
  client.on("live.invited", ({ session }) => addInvite(session));
  client.on("live.viewers", ({ session_id, viewers }) => {
    if (shown?.session.id === session_id) $("live-viewers").textContent = viewersText(viewers);
  });
  client.on("live.comment", (comment) => {
    if (shown?.session.id === comment.session_id) addComment(comment);
  });
  client.on("live.hand_raised", ({ session_id, user_id }) => {
    if (shown?.host && shown.session.id === session_id) addHand(user_id);
  });
  client.on("live.hand_lowered", ({ session_id, user_id }) => {
    if (shown?.session.id !== session_id) return;
    removeHand(user_id);
    if (user_id === app.state.me) setRaised(false);
  });
  client.on("live.hand_accepted", ({ session_id, user_id }) => {
    if (shown?.session.id === session_id) onStage(user_id);
  });
  client.on("live.ended", ({ session, reason }) => {
    document.querySelector(`#live-invites [data-session="${session.id}"]`)?.remove();
    if (shown?.session.id === session.id) close(`"${session.title}" ended (${reason.replace("_", " ")})`);
  });
  $("live-form").addEventListener("submit", guarded("side-error", goLive));
  $("live-invite-form").addEventListener("submit", guarded("side-error", invite));
  $("live-comment-form").addEventListener("submit", guarded("side-error", comment));
  $("live-raise").addEventListener("click", guarded("side-error", raise));
  $("live-leave").addEventListener("click", guarded("side-error", leave));
}

async function goLive(event) {
  event.preventDefault();
  const session = await app.state.client.startLive($("live-title").value.trim());
  $("live-form").reset();
  show(session, true);
}

function addInvite(session) {
  if (document.querySelector(`#live-invites [data-session="${session.id}"]`)) return;
  const item = el(
    "li",
    { "data-session": session.id },
    el("span", { text: `${session.host_id}: ${session.title}` }),
    el("button", {
      type: "button",
      text: "Join",
      onclick: guarded("side-error", async () => {
        const joined = await app.state.client.joinLive(session.id);
        item.remove();
        show(joined, false);
        const { comments } = await app.state.client.request("live.comments", { session_id: joined.id, limit: 50 });
        for (const c of comments) addComment(c);
      }),
    }),
  );
  $("live-invites").append(item);
}

function show(session, host) {
  shown = { session, host };
  $("live").hidden = false;
  $("live").dataset.session = session.id;
  $("live").dataset.role = host ? "host" : "viewer";
  $("live-name").textContent = session.title;
  $("live-viewers").textContent = viewersText(session.viewers);
  $("live-host-tools").hidden = !host;
  $("live-raise").hidden = host;
  $("live-leave").textContent = host ? "End" : "Leave";
  $("live-comments").replaceChildren();
  $("live-hands").replaceChildren();
  $("live-stage").textContent = "";
  setRaised(false);
}

function close(text) {
  shown = null;
  $("live").dataset.session = "";
  $("live-name").textContent = text;
  setTimeout(() => {
    if (!shown) $("live").hidden = true;
  }, 3000);
}

async function invite(event) {
  event.preventDefault();
  await app.state.client.inviteToLive(shown.session.id, $("live-invite-user").value.trim());
  $("live-invite-form").reset();
}

async function comment(event) {
  event.preventDefault();
  const text = $("live-comment").value.trim();
  if (!text || !shown) return;
  await app.state.client.comment(shown.session.id, text);
  $("live-comment").value = "";
  // The commenting connection gets the ack, not the push.
  addComment({ user_id: app.state.me, text });
}

async function raise() {
  await app.state.client.raiseHand(shown.session.id);
  setRaised(true);
}

async function leave() {
  const { session, host } = shown;
  if (host) await app.state.client.endLive(session.id);
  else await app.state.client.leaveLive(session.id);
  close(`You left "${session.title}"`);
}

function onStage(user) {
  removeHand(user);
  if (user === app.state.me) setRaised(false);
  $("live-stage").dataset.user = user;
  $("live-stage").textContent = user === app.state.me ? "You are on stage" : `${user} is on stage`;
}

function setRaised(raised) {
  $("live-raise").disabled = raised;
  $("live-raise").textContent = raised ? "Hand raised" : "Raise hand";
}

function addComment({ user_id, text }) {
  $("live-comments").append(el("li", {}, el("b", { text: user_id }), text));
  $("live-comments").scrollTop = $("live-comments").scrollHeight;
}

function addHand(user) {
  if (document.querySelector(`#live-hands [data-user="${CSS.escape(user)}"]`)) return;
  $("live-hands").append(
    el(
      "li",
      { "data-user": user },
      el("span", { text: user }),
      el("button", {
        type: "button",
        class: "ok",
        text: "Accept",
        onclick: guarded("side-error", async () => {
          await app.state.client.acceptHand(shown.session.id, user);
          // The accepting connection gets the ack, not the push.
          onStage(user);
        }),
      }),
    ),
  );
}

function removeHand(user) {
  document.querySelector(`#live-hands [data-user="${CSS.escape(user)}"]`)?.remove();
}

function viewersText(count) {
  return `${count} ${count === 1 ? "viewer" : "viewers"}`;
}
