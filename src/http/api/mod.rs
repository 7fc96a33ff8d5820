//! The server API under `/api/v1/`, for the app's own back end: an API key on every call
//! (`Authorization: Bearer …`, compared in constant time), an `Idempotency-Key` honoured on
//! every POST and DELETE, errors as `{"error":{"code","message"}}`, and the OpenAPI document
//! at `/api/v1/openapi.json`. Off unless `SWITCHBOARD_API_KEY` is set.

mod errors;
mod idempotency;
mod openapi;
mod rooms;
mod users;
mod webhooks;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Next, from_fn};
use actix_web::web;

pub use errors::ApiError;
pub use openapi::ApiDoc;

use crate::domain::Error;
use crate::runtime::Node;

/// Largest request body the API reads.
pub(super) const MAX_BODY_BYTES: usize = 256 * 1024;

/// Mounts the API on `cfg` (where the node's data is already registered).
pub fn configure(node: &Arc<Node>, cfg: &mut web::ServiceConfig) {
    if node.settings.api_key.is_none() {
        return;
    }
    cfg.app_data(errors::json_config(MAX_BODY_BYTES))
        // What the idempotency middleware reads before the handler: the same bound.
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .app_data(errors::path_config())
        .app_data(errors::query_config())
        .route("/api/v1/openapi.json", web::get().to(openapi::document))
        .service(
            web::scope("/api/v1")
                .wrap(from_fn(idempotency::idempotent))
                .wrap(from_fn(authorize))
                .configure(rooms::routes)
                .configure(users::routes)
                .configure(webhooks::routes)
                .default_service(web::to(|| async { ApiError(Error::not_found("no such endpoint")) })),
        );
}

/// A path of the API serving the methods in `allow` (as the `Allow` header lists them): any
/// other method is a 405.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let detail = errors::ErrorDetail {
            code: "method_not_allowed".into(),
            message: format!("this path serves {allow} only"),
        };
        actix_web::HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .json(errors::ErrorBody { error: detail })
    }))
}

/// Refuses a call without the API key (401) before anything else runs.
async fn authorize(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let node = request.app_data::<web::Data<Node>>().cloned();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::to_vec);
    let allowed = match (node.as_ref().and_then(|n| n.settings.api_key.as_ref()), presented) {
        (Some(key), Some(presented)) => key.matches(&presented),
        _ => false,
    };
    if !allowed {
        return Err(
            ApiError(Error::Unauthorized("a valid API key is required: Authorization: Bearer <key>".into())).into()
        );
    }
    next.call(request).await
}

/// Forgets idempotency keys older than a day, hourly, while the node runs (started once per
/// node, when the API is on).
pub fn sweep_idempotency_keys(node: Arc<Node>) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match node.store.forget_idempotency_keys().await {
                Ok(0) => {}
                Ok(forgotten) => tracing::debug!(forgotten, "idempotency keys forgotten"),
                Err(e) => tracing::warn!(error = %e, "could not forget old idempotency keys"),
            }
        }
    });
}
