//! Socket.IO over WebSocket (Engine.IO 3 and 4): the packet grammar, in and out. Only the
//! default namespace and JSON payloads are served; binary packets are refused.
//!
//! An Engine.IO text frame starts with its type (`0` open, `1` close, `2` ping, `3` pong,
//! `4` message, `6` noop); a Socket.IO packet is `4` + type (`0` connect, `1` disconnect,
//! `2` event, `3` ack, `4` connect error, `5`/`6` binary) + optional `/namespace,` +
//! optional ack id + JSON.

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineVersion {
    /// socket.io-client 2.x, Java 1.x, Swift `.version(.two)`: the client pings.
    V3,
    /// socket.io-client 3+/4, Java 2.x, Swift 16: the server pings.
    V4,
}

impl EngineVersion {
    pub fn from_query(eio: &str) -> Option<Self> {
        match eio {
            "3" => Some(Self::V3),
            "4" => Some(Self::V4),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    Ping,
    Pong,
    Close,
    Noop,
    Connect {
        namespace: String,
        auth: Option<Value>,
    },
    Disconnect,
    Event {
        namespace: String,
        ack: Option<u64>,
        event: String,
        data: Value,
    },
    /// The client acknowledging a server event (the server asks for none).
    Ack,
    Binary,
    Invalid(String),
}

pub fn parse(text: &str) -> Packet {
    let mut chars = text.chars();
    match chars.next() {
        Some('2') => Packet::Ping,
        Some('3') => Packet::Pong,
        Some('1') => Packet::Close,
        Some('6') => Packet::Noop,
        Some('4') => parse_socket(chars.as_str()),
        _ => Packet::Invalid(format!("unknown Engine.IO packet `{}`", text.chars().take(8).collect::<String>())),
    }
}

fn parse_socket(packet: &str) -> Packet {
    let mut chars = packet.chars();
    let Some(kind) = chars.next() else { return Packet::Invalid("empty Socket.IO packet".into()) };
    let mut rest = chars.as_str();
    // Binary packets carry an attachment count: `51-…`.
    if matches!(kind, '5' | '6') {
        return Packet::Binary;
    }
    let mut namespace = "/".to_owned();
    if rest.starts_with('/') {
        let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
        // A namespace may carry a query (EIO 3 sends `/nsp?token=…,`); the query is ignored.
        namespace = nsp.split('?').next().unwrap_or("/").to_owned();
        rest = after;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Some((ack, json)) = rest.split_at_checked(digits) else {
        return Packet::Invalid("malformed ack id".into());
    };
    // An ack id is echoed in the ack: one that does not fit a u64 cannot be, so it is refused
    // rather than dropped.
    let ack = match ack {
        "" => None,
        digits => match digits.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => return Packet::Invalid(format!("ack id of {} digits does not fit 64 bits", digits.len())),
        },
    };
    let payload = if json.is_empty() {
        None
    } else {
        match serde_json::from_str::<Value>(json) {
            Ok(value) => Some(value),
            Err(e) => return Packet::Invalid(format!("packet payload is not JSON: {e}")),
        }
    };
    match kind {
        '0' => Packet::Connect { namespace, auth: payload },
        '1' => Packet::Disconnect,
        '2' => {
            let mut args = match payload {
                Some(Value::Array(args)) => args.into_iter(),
                _ => Vec::new().into_iter(),
            };
            match (args.next(), args.next()) {
                (Some(Value::String(event)), data) => {
                    Packet::Event { namespace, ack, event, data: data.unwrap_or(Value::Null) }
                }
                _ => Packet::Invalid("an event is a JSON array starting with the event name".into()),
            }
        }
        '3' => Packet::Ack,
        other => Packet::Invalid(format!("unknown Socket.IO packet type `{other}`")),
    }
}

/// The open packet. Clients read every field (Java fails without one; Swift wants integers).
pub fn open(sid: &str, ping_interval_ms: u64, ping_timeout_ms: u64, max_payload: usize) -> String {
    format!(
        "0{}",
        json!({"sid": sid, "upgrades": [], "pingInterval": ping_interval_ms, "pingTimeout": ping_timeout_ms, "maxPayload": max_payload})
    )
}

/// The namespace connect reply; a `pid` lets a v4 client ask to recover this session later.
pub fn connected(version: EngineVersion, sid: &str, pid: Option<&str>) -> String {
    match (version, pid) {
        (EngineVersion::V4, Some(pid)) => format!("40{}", json!({"sid": sid, "pid": pid})),
        (EngineVersion::V4, None) => format!("40{}", json!({"sid": sid})),
        (EngineVersion::V3, _) => "40".to_owned(),
    }
}

pub fn connect_error(version: EngineVersion, message: &str, reason: &str) -> String {
    match version {
        EngineVersion::V4 => format!("44{}", json!({"message": message, "data": {"reason": reason}})),
        EngineVersion::V3 => format!("44{}", json!(message)),
    }
}

pub fn invalid_namespace(namespace: &str) -> String {
    format!("44{namespace},{}", json!({"message": "Invalid namespace"}))
}

pub fn event(name: &str, data: &Value) -> String {
    format!("42{}", json!([name, data]))
}

pub fn ack(id: u64, value: &Value) -> String {
    format!("43{id}{}", json!([value]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_with_and_without_acks() {
        assert_eq!(
            parse(r#"420["hello","a",{"n":1}]"#),
            Packet::Event { namespace: "/".into(), ack: Some(0), event: "hello".into(), data: json!("a") }
        );
        assert_eq!(
            parse(r#"42["noack",[1,2,3]]"#),
            Packet::Event { namespace: "/".into(), ack: None, event: "noack".into(), data: json!([1, 2, 3]) }
        );
        assert_eq!(
            parse(r#"42/,12["x"]"#),
            Packet::Event { namespace: "/".into(), ack: Some(12), event: "x".into(), data: Value::Null }
        );
        // Not an event name first: refused, not a panic.
        for bad in [r#"42[]"#, r#"42[1,"x"]"#, r#"42{"event":"x"}"#, "42"] {
            assert!(matches!(parse(bad), Packet::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn parses_connects_and_control_packets() {
        assert_eq!(
            parse(r#"40{"token":"t"}"#),
            Packet::Connect { namespace: "/".into(), auth: Some(json!({"token": "t"})) }
        );
        assert_eq!(parse("40/,"), Packet::Connect { namespace: "/".into(), auth: None });
        assert_eq!(parse("40/nope?token=x,"), Packet::Connect { namespace: "/nope".into(), auth: None });
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("3"), Packet::Pong);
        assert_eq!(parse("41"), Packet::Disconnect);
        assert_eq!(parse(r#"451-["b",{"_placeholder":true,"num":0}]"#), Packet::Binary);
        assert!(matches!(parse(r#"42{"not":"array"}"#), Packet::Invalid(_)));
        assert!(matches!(parse("9"), Packet::Invalid(_)));
    }

    #[test]
    fn a_non_ascii_packet_type_is_invalid() {
        for bad in ["4é", "4é[\"x\"]", "4\u{1F600}", "4\u{80}2[\"x\"]"] {
            assert!(matches!(parse(bad), Packet::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn an_ack_id_beyond_u64_is_invalid() {
        assert!(matches!(parse(r#"4299999999999999999999["x"]"#), Packet::Invalid(_)));
        assert!(matches!(parse(r#"42/,18446744073709551616["x"]"#), Packet::Invalid(_)));
        assert_eq!(
            parse(r#"4218446744073709551615["x"]"#),
            Packet::Event { namespace: "/".into(), ack: Some(u64::MAX), event: "x".into(), data: Value::Null }
        );
    }

    #[test]
    fn numbers_come_out_as_they_went_in() {
        // Payloads are relayed and echoed (call signals, seed fields): parsing must round each
        // number to the nearest float, so that its encoding parses back to the same value.
        let packet = r#"42["h",111111111111117777777771]"#;
        let Packet::Event { event, data, .. } = parse(packet) else { panic!("{packet} is an event") };
        assert_eq!(data, json!(1.1111111111111777e23));
        let expected = Packet::Event { namespace: "/".into(), ack: None, event: event.clone(), data: data.clone() };
        assert_eq!(parse(&super::event(&event, &data)), expected);
    }

    #[test]
    fn encodes_what_stock_clients_expect() {
        assert_eq!(ack(3, &json!({"ok": true})), r#"433[{"ok":true}]"#);
        assert_eq!(event("welcome", &json!({"msg": "hi"})), r#"42["welcome",{"msg":"hi"}]"#);
        assert_eq!(connected(EngineVersion::V3, "x", Some("p")), "40");
        assert_eq!(connected(EngineVersion::V4, "x", None), r#"40{"sid":"x"}"#);
        assert_eq!(connected(EngineVersion::V4, "x", Some("p")), r#"40{"pid":"p","sid":"x"}"#);
        assert_eq!(invalid_namespace("/nope"), r#"44/nope,{"message":"Invalid namespace"}"#);
    }
}
