//! Socket.IO packets: any text frame parses to a packet or `Invalid`, and decodes through both
//! Engine.IO versions' framing, connected or not, without a panic. An event the parser accepts
//! must survive the server's own encoding: `42["name",data]` parses back to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::wire::Framing;
use switchboard::wire::socketio::{self, EngineVersion, Packet};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Packet::Event { event, data, ack, .. } = socketio::parse(text) {
        let again = socketio::parse(&socketio::event(&event, &data));
        let expected = Packet::Event { namespace: "/".into(), ack: None, event, data: data.clone() };
        assert_eq!(again, expected, "an event does not survive its own encoding");
        if let Some(id) = ack {
            assert_eq!(socketio::parse(&socketio::ack(id, &data)), Packet::Ack);
        }
    }
    for version in [EngineVersion::V3, EngineVersion::V4] {
        for connected in [false, true] {
            let _ = Framing::SocketIo(version).decode(text, connected);
        }
    }
});
