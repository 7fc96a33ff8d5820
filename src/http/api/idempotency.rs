//! `Idempotency-Key` on a POST or DELETE: the first answer to a key is kept for a day and a
//! repeat of the same request (method, path, query and body) gets it again, marked
//! `Idempotent-Replayed: true`, without acting again; the key reused for another request, or
//! while its first request still runs, is a 409. An answer the caller should retry
//! (`unavailable`, `internal`) is not kept, so the retry acts.

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::domain::Error;
use crate::runtime::Node;
use crate::store::KeyClaim;

pub const HEADER: &str = "Idempotency-Key";
/// A body the middleware could not read, refused as the handlers' JSON bodies are.
fn unreadable_body(err: actix_web::Error) -> ApiError {
    ApiError(match err.as_error::<actix_web::error::PayloadError>() {
        Some(actix_web::error::PayloadError::Overflow) => {
            Error::TooLarge(format!("the body is over {} bytes", super::MAX_BODY_BYTES))
        }
        _ => Error::bad_request(format!("could not read the body: {err}")),
    })
}

/// Marks an answer given again for a repeated key.
pub const REPLAYED: &str = "Idempotent-Replayed";
/// Longest key.
pub const MAX_KEY_BYTES: usize = 128;

pub async fn idempotent(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let key = match request.headers().get(HEADER) {
        Some(key) if matches!(*request.method(), Method::POST | Method::DELETE) => parse_key(key)?,
        _ => return Ok(next.call(request).await?.map_into_boxed_body()),
    };
    let Some(node) = request.app_data::<web::Data<Node>>().cloned() else {
        return Err(ApiError(Error::Internal).into());
    };
    let body = request.extract::<web::Bytes>().await.map_err(unreadable_body)?;
    let fingerprint = fingerprint(&request, &body);
    request.set_payload(actix_web::dev::Payload::from(body));
    match node.store.claim_idempotency_key(&key, &fingerprint).await.map_err(|e| ApiError(e.into()))? {
        KeyClaim::Fresh => {}
        KeyClaim::InProgress => {
            return Err(ApiError(Error::Conflict(format!("a request with this {HEADER} is still running"))).into());
        }
        KeyClaim::Mismatch => {
            return Err(ApiError(Error::Conflict(format!("this {HEADER} was used for a different request"))).into());
        }
        KeyClaim::Answered { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let replay =
                HttpResponse::build(status).content_type(mime_json()).insert_header((REPLAYED, "true")).body(body);
            return Ok(request.into_response(replay));
        }
    }
    let response = match next.call(request).await {
        Ok(response) => response,
        Err(err) => {
            release(&node, &key).await;
            return Err(err);
        }
    };
    let status = response.status();
    if status.is_server_error() {
        release(&node, &key).await;
        return Ok(response.map_into_boxed_body());
    }
    let (request, response) = response.into_parts();
    let (head, answer) = response.into_parts();
    let answer = body::to_bytes(answer).await.map_err(|_| ApiError(Error::Internal))?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    if let Err(e) = node.store.finish_idempotent(&key, status.as_u16(), &text).await {
        // The caller has its answer; a repeat finds the key still running and gets a 409.
        tracing::warn!(error = %e, "could not keep an idempotent answer");
    }
    Ok(ServiceResponse::new(request, head.set_body(answer).map_into_boxed_body()))
}

/// The request's well-formed `Idempotency-Key`, if it has one.
pub fn key_of(request: &HttpRequest) -> Option<String> {
    request.headers().get(HEADER).and_then(|key| parse_key(key).ok())
}

/// The `client_id` a message posted with `key` and none of its own is stored under, so that
/// a retry which runs afresh (its first try answered `5xx`, or ran on a node that died) finds
/// the message the first try stored, as a client's resend does, and posts nothing new.
pub fn client_id(key: &str) -> String {
    format!("idempotency:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

fn parse_key(value: &header::HeaderValue) -> Result<String, ApiError> {
    let key = value.to_str().ok().filter(|key| !key.is_empty() && key.len() <= MAX_KEY_BYTES);
    key.map(str::to_owned).ok_or_else(|| {
        ApiError(Error::bad_request(format!("{HEADER} must be 1 to {MAX_KEY_BYTES} visible ASCII characters")))
    })
}

/// What makes two requests the same: method, path, query and body.
fn fingerprint(request: &ServiceRequest, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(request.method().as_str());
    hash.update(b" ");
    hash.update(request.uri().path());
    hash.update(b"?");
    hash.update(request.uri().query().unwrap_or_default());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

fn mime_json() -> header::ContentType {
    header::ContentType::json()
}

async fn release(node: &Node, key: &str) {
    if let Err(e) = node.store.release_idempotent(key).await {
        tracing::warn!(error = %e, "could not free an idempotency key");
    }
}
