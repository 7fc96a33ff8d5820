//! `GET /ws`: authenticate before the upgrade (401 otherwise), then hand the socket to a
//! connection actor speaking native frames.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::header, web};

use crate::admission::{Refusal, Seat};
use crate::runtime::Node;
use crate::runtime::connection::{Connection, Handshake};
use crate::wire::Api;
use crate::wire::Framing;

pub async fn upgrade(req: HttpRequest, body: web::Payload, node: web::Data<Node>) -> actix_web::Result<HttpResponse> {
    let api = match query(&req, "api").map(|api| Api::parse(&api)) {
        None => node.settings.default_api,
        Some(Ok(api)) => api,
        Some(Err(e)) => {
            return Ok(HttpResponse::BadRequest()
                .json(serde_json::json!({"error": {"code": "bad_request", "message": e.to_string()}})));
        }
    };
    let seat = match admit(&req, &node) {
        Ok(seat) => seat,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let Some(token) = bearer(&req).or_else(|| query(&req, "token")) else {
        return Ok(unauthorized("missing token: pass ?token=… or Authorization: Bearer …"));
    };
    let identity = match node.auth.verify(&token) {
        Ok(identity) => identity,
        Err(e) => return Ok(unauthorized(&e.to_string())),
    };
    let user_seat = match node.admission.user_seat(&identity.user).await {
        Ok(user_seat) => user_seat,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let handshake = Handshake {
        framing: Framing::Native,
        api,
        identity: Some(identity),
        query_token: None,
        refusal: None,
        seat,
        user_seat: Some(user_seat),
    };
    accept(&req, body, handshake, node.into_inner())
}

/// Completes the upgrade: the connection's actor reads the socket, and its writer is the
/// response's body.
pub(super) fn accept(
    req: &HttpRequest,
    body: web::Payload,
    handshake: Handshake,
    node: Arc<Node>,
) -> actix_web::Result<HttpResponse> {
    let mut response = actix_http::ws::handshake(req.head())?;
    let writer = Connection::start(handshake, node, body.into_inner());
    Ok(HttpResponse::from(response.message_body(writer)?).map_into_boxed_body())
}

/// The checks every upgrade passes before it is read further: the browser origin, then a
/// place on this node for the client's address.
pub(super) fn admit(req: &HttpRequest, node: &Node) -> Result<Seat, Refusal> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    node.admission.check_origin(header("origin"))?;
    let peer = req.peer_addr().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |addr| addr.ip());
    let named = req.headers().get_all(node.admission.client_ip_header()).filter_map(|v| v.to_str().ok());
    let address = node.admission.client_address(peer, named);
    node.admission.seat(address)
}

/// The answer to a refused upgrade: 403 for an origin, 503 for a full node, else 429.
pub(super) fn refused(refusal: Refusal) -> HttpResponse {
    let (mut response, code) = match refusal {
        Refusal::Origin => (HttpResponse::Forbidden(), "forbidden"),
        Refusal::NodeFull => (HttpResponse::ServiceUnavailable(), "unavailable"),
        Refusal::AddressFull | Refusal::UserFull => (HttpResponse::TooManyRequests(), "rate_limited"),
    };
    response.json(serde_json::json!({"error": {"code": code, "message": refusal.message()}}))
}

fn unauthorized(message: &str) -> HttpResponse {
    HttpResponse::Unauthorized().json(serde_json::json!({"error": {"code": "unauthorized", "message": message}}))
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// A query-string parameter.
pub(super) fn query(req: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).ok()?.get(name).cloned()
}
