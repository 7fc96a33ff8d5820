//! `GET /ws`: authenticate before the upgrade (401 otherwise), then hand the socket to a
//! connection actor speaking native frames.

use actix_web::{HttpRequest, HttpResponse, http::header, web};

use crate::actors::Services;
use crate::actors::connection::{Connection, Handshake};
use crate::dialect::Api;
use crate::protocol::Framing;

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    services: web::Data<Services>,
) -> actix_web::Result<HttpResponse> {
    let api = match query(&req, "api").map(|api| Api::parse(&api)) {
        None => services.settings.default_api,
        Some(Ok(api)) => api,
        Some(Err(e)) => {
            return Ok(HttpResponse::BadRequest()
                .json(serde_json::json!({"error": {"code": "bad_request", "message": e.to_string()}})));
        }
    };
    let Some(token) = bearer(&req).or_else(|| query(&req, "token")) else {
        return Ok(unauthorized("missing token: pass ?token=… or Authorization: Bearer …"));
    };
    let identity = match services.auth.verify(&token) {
        Ok(identity) => identity,
        Err(e) => return Ok(unauthorized(&e.to_string())),
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let limit = services.settings.max_frame_bytes;
    let stream = stream.max_frame_size(limit).aggregate_continuations().max_continuation_size(limit);
    let handshake =
        Handshake { framing: Framing::Native, api, identity: Some(identity), query_token: None, refusal: None };
    Connection::start(handshake, services.into_inner(), session, stream);
    Ok(response)
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
