//! Native framing: one JSON object per text frame, `{"event","id","data"}` in and
//! `{"ack","ok","data"|"error"}` or `{"event","data"}` out.

use serde::Serialize;
use serde_json::{Number, Value, json};

use super::{Reply, Request};
use crate::domain::{ConnectionId, Error, NodeId, UserId};

/// Payload fields that name the acting user. Identity comes from the token only, so such a
/// field that disagrees with it is refused rather than trusted or silently ignored.
const ACTING_USER_FIELDS: [&str; 5] = ["sender_id", "senderId", "from_user", "fromUser", "from_id"];

/// One parsed inbound frame.
#[derive(Debug)]
pub struct Inbound {
    /// The request id to ack, when the frame had one: any JSON integer, echoed as sent.
    pub id: Option<Number>,
    /// The event name as sent (`"?"` when the frame had none), for metrics.
    pub event: String,
    pub data: Result<Value, Error>,
}

pub fn decode(text: &str) -> Inbound {
    let frame: Value = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => return malformed(None, format!("frame is not JSON: {e}")),
    };
    let Value::Object(mut frame) = frame else {
        return malformed(None, "frame must be a JSON object".into());
    };
    let id = match frame.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.clone()),
        Some(_) => return malformed(None, "id must be an integer".into()),
    };
    let Some(Value::String(event)) = frame.remove("event") else {
        return malformed(id, "frame needs a string `event`".into());
    };
    Inbound { id, event, data: Ok(frame.remove("data").unwrap_or(Value::Null)) }
}

fn malformed(id: Option<Number>, message: String) -> Inbound {
    Inbound { id, event: "?".into(), data: Err(Error::BadRequest(message)) }
}

/// The native API: a payload naming another acting user is refused, then the event parses
/// into its command.
pub fn request(event: &str, data: Value, acting: &UserId) -> Result<Request, Error> {
    check_identity(&data, acting)?;
    Request::parse(event, data)
}

fn check_identity(data: &Value, acting: &UserId) -> Result<(), Error> {
    for field in ACTING_USER_FIELDS {
        if let Some(claimed) = data.get(field).filter(|v| !v.is_null()) {
            let agrees = match claimed {
                Value::String(s) => s == acting.as_str(),
                Value::Number(n) => n.to_string() == acting.as_str(),
                _ => false,
            };
            if !agrees {
                return Err(Error::forbidden(format!("`{field}` must be the authenticated user")));
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

fn error_body(err: &Error) -> ErrorBody {
    ErrorBody { code: err.code().as_str(), message: err.to_string() }
}

/// An ack as written, straight from the reply (no JSON tree built on the way); its keys in
/// sorted order, as acks have always been written.
#[derive(Serialize)]
struct Ack<'a> {
    ack: &'a Number,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Reply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
    ok: bool,
}

/// The ack for request `id`.
pub fn encode_ack(id: &Number, result: &Result<Reply, Error>) -> String {
    let ack = match result {
        Ok(Reply::Done) => Ack { ack: id, data: None, error: None, ok: true },
        Ok(reply) => Ack { ack: id, data: Some(reply), error: None, ok: true },
        Err(err) => Ack { ack: id, data: None, error: Some(error_body(err)), ok: false },
    };
    serde_json::to_string(&ack).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a reply could not be encoded");
        json!({"ack": id, "ok": false, "error": error_body(&Error::Internal)}).to_string()
    })
}

/// The reply to a bad frame that had no id.
pub fn encode_error(err: &Error) -> String {
    json!({"event": "error", "data": error_body(err)}).to_string()
}

pub fn encode_hello(user: &UserId, node: &NodeId, connection: ConnectionId) -> String {
    json!({"event": "hello", "data": {"user_id": user, "node": node, "connection_id": connection.to_string()}})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    #[test]
    fn writes_acks_with_their_keys_sorted() {
        let id = Number::from(7);
        assert_eq!(encode_ack(&id, &Ok(Reply::Done)), r#"{"ack":7,"ok":true}"#);
        let room = "0192f000-0000-7000-8000-000000000001";
        let read = Reply::Read { room_id: crate::domain::RoomId::parse(room).unwrap(), seq: 3 };
        let expected = format!(r#"{{"ack":7,"data":{{"room_id":"{room}","seq":3}},"ok":true}}"#);
        assert_eq!(encode_ack(&id, &Ok(read)), expected);
        assert_eq!(
            encode_ack(&id, &Err(Error::RateLimited)),
            r#"{"ack":7,"error":{"code":"rate_limited","message":"too many requests; slow down"},"ok":false}"#
        );
    }

    #[test]
    fn keeps_the_id_of_a_bad_frame() {
        let inbound = decode(r#"{"event":"nope","id":7}"#);
        assert_eq!(inbound.id, Some(7.into()));
        assert!(request(&inbound.event, inbound.data.unwrap(), &alice()).is_err());
        let inbound = decode("not json");
        assert_eq!(inbound.id, None);
        assert!(inbound.data.is_err());
    }

    #[test]
    fn refuses_a_payload_claiming_another_sender() {
        let inbound = decode(r#"{"event":"message.send","data":{"sender_id":"mallory","room_id":"x","body":"hi"}}"#);
        let refused = request(&inbound.event, inbound.data.unwrap(), &alice()).unwrap_err();
        assert_eq!(refused.code(), crate::domain::ErrorCode::Forbidden);
    }
}
