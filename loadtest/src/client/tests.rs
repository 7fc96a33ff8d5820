//! The framings' encoding and decoding, and endpoint building.

use super::*;

fn frame(d: Decoded) -> Frame {
    match d {
        Decoded::Frame(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn decodes_native_acks_and_events() {
    match frame(decode(Framing::Native, r#"{"ack":3,"ok":false,"error":{"code":"rate_limited","message":"x"}}"#)) {
        Frame::Ack(ack) => {
            assert_eq!(ack.id, 3);
            assert!(!ack.ok);
            assert_eq!(ack.error_code.as_deref(), Some("rate_limited"));
        }
        other => panic!("{other:?}"),
    }
    match frame(decode(Framing::Native, r#"{"event":"message.new","data":{"message":{"body":"hi"}}}"#)) {
        Frame::Event { event, data } => {
            assert_eq!(event, "message.new");
            assert_eq!(data["message"]["body"], "hi");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(frame(decode(Framing::Native, "[1]")), Frame::Malformed(_)));
}

#[test]
fn decodes_socketio_packets() {
    assert!(matches!(decode(Framing::Socketio, "2"), Decoded::Ping));
    assert!(matches!(decode(Framing::Socketio, r#"0{"sid":"x"}"#), Decoded::Ignore));
    match frame(decode(Framing::Socketio, r#"4312[{"ok":true,"data":{"message":{"seq":4}}}]"#)) {
        Frame::Ack(ack) => {
            assert_eq!(ack.id, 12);
            assert!(ack.ok);
            assert_eq!(ack.data["message"]["seq"], 4);
        }
        other => panic!("{other:?}"),
    }
    match frame(decode(Framing::Socketio, r#"42["message.new",{"message":{"seq":1}}]"#)) {
        Frame::Event { event, data } => {
            assert_eq!(event, "message.new");
            assert_eq!(data["message"]["seq"], 1);
        }
        other => panic!("{other:?}"),
    }
    match frame(decode(Framing::Socketio, r#"40{"sid":"abc"}"#)) {
        Frame::Event { event, .. } => assert_eq!(event, "hello"),
        other => panic!("{other:?}"),
    }
    assert_eq!(encode_request(Framing::Socketio, "typing", Some(7), json!({"a":1})), r#"427["typing",{"a":1}]"#);
    assert_eq!(encode_request(Framing::Socketio, "typing", None, json!({})), r#"42["typing",{}]"#);
}

#[test]
fn builds_the_endpoint() {
    let secret = "a-secret-of-enough-length";
    let native = |u: &str| Target::new(u, secret, Framing::Native, 1);
    assert_eq!(native("ws://h:1/").unwrap().endpoint(), "ws://h:1/ws");
    assert_eq!(native("ws://h:1/ws").unwrap().endpoint(), "ws://h:1/ws");
    assert!(native("http://h:1").is_err());
    assert_eq!(native("ws://h:1").unwrap().authority(), "h:1");
    let sio = Target::new("ws://h:1", secret, Framing::Socketio, 1).unwrap();
    assert_eq!(sio.endpoint(), "ws://h:1/socket.io/?EIO=4&transport=websocket");
}
