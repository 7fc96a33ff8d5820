//! `/healthz` (the process answers), `/readyz` (its database answers), `/metrics`.

use actix_web::{HttpResponse, web};

use crate::actors::Services;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(services: web::Data<Services>) -> HttpResponse {
    match services.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready", "node": services.node})),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable", "database": "unreachable"}))
        }
    }
}

pub async fn metrics(services: web::Data<Services>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(services.metrics.render())
}
