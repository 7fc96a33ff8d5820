//! The server API's errors: the native codes as HTTP statuses, with the body
//! `{"error":{"code","message"}}`, for what the handlers answer and what actix refuses before
//! them (a body, path or query that does not parse).

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

use crate::domain::{Error, ErrorCode};

/// An error as the server API answers it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of the native error codes: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `too_large`, `rate_limited`, `unavailable`, `internal`.
    pub code: String,
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.0.code() {
            ErrorCode::BadRequest | ErrorCode::UnknownEvent => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict | ErrorCode::Busy => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self.0.code() {
            ErrorCode::UnknownEvent => ErrorCode::BadRequest,
            ErrorCode::Busy => ErrorCode::Conflict,
            code => code,
        };
        let detail = ErrorDetail { code: code.as_str().to_owned(), message: self.0.to_string() };
        HttpResponse::build(self.status_code()).json(ErrorBody { error: detail })
    }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

/// A JSON body parsed into `T` at the edge: refused with 400 if it holds NUL (U+0000) anywhere,
/// like every request on the sockets (PostgreSQL cannot store it), or does not fit `T`.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(request, payload);
        Box::pin(async move { Ok(Body(parse_body(json.await?.into_inner())?)) })
    }
}

/// `value` as a `T`, refused as [`Body`] refuses.
pub fn parse_body<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    let value = crate::wire::well_formed(value)?;
    serde_json::from_value(value).map_err(|e| ApiError(Error::bad_request(format!("invalid body: {e}"))))
}

/// JSON bodies: at most `limit` bytes (413), `application/json`, parsed into the handler's
/// type or refused with 400 naming what is wrong.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(move |err, _| {
        let refused = match &err {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                Error::TooLarge(format!("the body is over {limit} bytes"))
            }
            JsonPayloadError::ContentType => {
                Error::bad_request("the body must be JSON (Content-Type: application/json)")
            }
            other => Error::bad_request(format!("invalid body: {other}")),
        };
        ApiError(refused).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _| ApiError(Error::bad_request(err.to_string())).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err: QueryPayloadError, _| ApiError(Error::bad_request(err.to_string())).into())
}

/// What any call may fail with.
#[derive(IntoResponses)]
#[allow(dead_code)] // only its documentation is used
pub enum Failures {
    #[response(status = 400, description = "bad_request: the request does not parse or is not allowed as sent")]
    BadRequest(ErrorBody),
    #[response(status = 401, description = "unauthorized: no or a wrong API key")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "forbidden: a block or membership refuses it")]
    Forbidden(ErrorBody),
    #[response(status = 404, description = "not_found: no such room, member or endpoint")]
    NotFound(ErrorBody),
    #[response(
        status = 409,
        description = "conflict: a group's cap, a room that cannot change, or an Idempotency-Key in use"
    )]
    Conflict(ErrorBody),
    #[response(status = 413, description = "too_large: the body or a message is over its limit")]
    TooLarge(ErrorBody),
    #[response(status = 429, description = "rate_limited")]
    RateLimited(ErrorBody),
    #[response(status = 500, description = "internal")]
    Internal(ErrorBody),
    #[response(status = 503, description = "unavailable: the database or the cluster is out of reach; retry")]
    Unavailable(ErrorBody),
}
