//! `/socket.io/`: the Socket.IO endpoint, WebSocket transport only. Engine.IO 4 clients
//! authenticate in the namespace connect packet (or the query); Engine.IO 3 clients in the
//! query. Long-polling gets the stock server's HTTP 400, with a hint.

use actix_web::{HttpRequest, HttpResponse, web};

use super::websocket::{accept, admit, query, refused};
use crate::runtime::Node;
use crate::runtime::connection::Handshake;
use crate::wire::Api;
use crate::wire::Framing;
use crate::wire::socketio::EngineVersion;

pub async fn upgrade(req: HttpRequest, body: web::Payload, node: web::Data<Node>) -> actix_web::Result<HttpResponse> {
    if query(&req, "transport").as_deref() != Some("websocket") {
        return Ok(refuse(0, "Transport unknown"));
    }
    let Some(version) = query(&req, "EIO").as_deref().and_then(EngineVersion::from_query) else {
        return Ok(refuse(5, "Unsupported protocol version"));
    };
    if query(&req, "sid").is_some() {
        return Ok(refuse(1, "Session ID unknown"));
    }
    let seat = match admit(&req, &node) {
        Ok(seat) => seat,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let query_token = query(&req, "token");
    // The query may name the API (Engine.IO 3 clients can only use the query); Engine.IO 4
    // clients may name it in the connect packet's auth payload instead.
    let (api, bad_api) = match query(&req, "api").map(|api| Api::parse(&api)) {
        None => (node.settings.default_api, None),
        Some(Ok(api)) => (api, None),
        Some(Err(e)) => (node.settings.default_api, Some(e.to_string())),
    };
    let (identity, refusal) = match (version, bad_api) {
        (_, Some(refusal)) => (None, Some(refusal)),
        (EngineVersion::V4, None) => (None, None),
        (EngineVersion::V3, None) => match query_token.as_deref().map(|token| node.auth.verify(token)) {
            Some(Ok(identity)) => (Some(identity), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, Some("missing token".to_owned())),
        },
    };
    // Engine.IO 3 clients are known at the upgrade: the per-user cap applies now. Engine.IO 4
    // clients log in with their connect packet, where the connection applies it.
    let user_seat = match &identity {
        Some(identity) => match node.admission.user_seat(&identity.user).await {
            Ok(user_seat) => Some(user_seat),
            Err(refusal) => return Ok(refused(refusal)),
        },
        None => None,
    };
    let handshake =
        Handshake { framing: Framing::SocketIo(version), api, identity, query_token, refusal, seat, user_seat };
    accept(&req, body, handshake, node.into_inner())
}

/// The stock server's refusal body, plus a hint for the usual cause.
fn refuse(code: u8, message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({
        "code": code,
        "message": message,
        "hint": "Switchboard serves Socket.IO over the websocket transport only: \
                 set transports: [\"websocket\"] in the client",
    }))
}
