/**
 * Wires one `RTCPeerConnection` to a call's signaling: SDP offers and answers and ICE
 * candidates go through `call.signal`, with the "perfect negotiation" pattern (the callee is
 * polite and yields when both sides offer at once), and an ICE restart after the client
 * reconnects, as docs/protocol.md §10 asks. Media, STUN and TURN stay the app's.
 *
 * One `CallPeer` per remote party: in a group call, one per other joined party, each with
 * its `peer`.
 * @module
 */
/**
 * The callee creates its `CallPeer` before `acceptCall` (so the caller's offer finds it); the
 * caller creates its own on `call.accepted`, then adds its tracks, which starts the offer.
 */
export class CallPeer {
    options;
    pc;
    callId;
    peer;
    polite;
    makingOffer = false;
    ignoreOffer = false;
    closed = false;
    /** Candidates that came before any remote description, added once one is set. */
    heldCandidates = [];
    unsubscribe = [];
    constructor(options) {
        this.options = options;
        const { client, call } = options;
        const me = client.userId;
        this.callId = call.id;
        this.polite = me !== call.caller_id;
        const peer = options.peer ?? (me === call.caller_id ? call.callee_ids[0] : call.caller_id);
        if (!peer)
            throw new TypeError("CallPeer: no remote party; pass `peer`");
        this.peer = peer;
        const PC = options.RTCPeerConnection ??
            globalThis.RTCPeerConnection;
        if (!PC)
            throw new TypeError("CallPeer: no RTCPeerConnection; pass the `RTCPeerConnection` option");
        const pc = new PC(options.rtcConfig);
        this.pc = pc;
        pc.onnegotiationneeded = async () => {
            try {
                this.makingOffer = true;
                await pc.setLocalDescription();
                await this.sendDescription();
            }
            catch (err) {
                this.fail(err);
            }
            finally {
                this.makingOffer = false;
            }
        };
        pc.onicecandidate = ({ candidate }) => {
            this.send({ type: "candidate", candidate: candidate ? candidate.toJSON() : null }).catch((e) => this.fail(e));
        };
        if (options.onTrack)
            pc.ontrack = options.onTrack;
        this.unsubscribe.push(client.on("call.signal", (data) => {
            if (data.call_id === this.callId && data.from === this.peer)
                void this.onSignal(data.signal);
        }), client.on("connected", ({ reconnected }) => {
            // Our connection changed: signal from it at once so the call follows this device.
            if (reconnected && !this.closed)
                pc.restartIce();
        }), client.on("call.ended", ({ call: ended }) => {
            if (ended.id === this.callId)
                this.close();
        }), client.on("call.left", ({ call: left, user_id }) => {
            if (left.id === this.callId && user_id === this.peer)
                this.close();
        }));
    }
    /** Adds every track of a local stream (microphone, camera); negotiation follows. */
    addStream(stream) {
        for (const track of stream.getTracks())
            this.pc.addTrack(track, stream);
    }
    /** Closes the peer connection and stops listening. Does not hang up: call `client.endCall`. */
    close() {
        if (this.closed)
            return;
        this.closed = true;
        for (const off of this.unsubscribe)
            off();
        this.pc.close();
    }
    async onSignal(signal) {
        if (this.closed)
            return;
        const pc = this.pc;
        try {
            if (signal.type === "offer" || signal.type === "answer") {
                const description = { type: signal.type, sdp: signal.sdp };
                const collision = description.type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
                this.ignoreOffer = !this.polite && collision;
                if (this.ignoreOffer)
                    return;
                await pc.setRemoteDescription(description);
                await this.addHeldCandidates();
                if (description.type === "offer") {
                    await pc.setLocalDescription();
                    await this.sendDescription();
                }
            }
            else if (signal.type === "candidate") {
                const candidate = signal.candidate;
                // A candidate can overtake the description it belongs to (the peer's offer before the
                // call was accepted was never seen): it waits for a remote description.
                if (!pc.remoteDescription) {
                    this.heldCandidates.push(candidate);
                    return;
                }
                await this.addCandidate(candidate);
            }
        }
        catch (err) {
            this.fail(err);
        }
    }
    async addCandidate(candidate) {
        try {
            await this.pc.addIceCandidate(candidate ?? undefined);
        }
        catch (err) {
            if (!this.ignoreOffer)
                throw err;
        }
    }
    async addHeldCandidates() {
        const held = this.heldCandidates.splice(0);
        for (const candidate of held)
            await this.addCandidate(candidate);
    }
    async sendDescription() {
        const local = this.pc.localDescription;
        if (!local)
            return;
        await this.send({ type: local.type, sdp: local.sdp });
    }
    send(signal) {
        return this.options.client.signal(this.callId, signal, this.peer);
    }
    fail(err) {
        if (this.options.onError)
            this.options.onError(err);
    }
}
