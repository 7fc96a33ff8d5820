//! `/healthz` (the process answers), `/readyz` (its database answers), `/metrics`.

use actix_web::{HttpResponse, web};

use crate::runtime::Services;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(services: web::Data<Services>) -> HttpResponse {
    let database = services.store.ping().await.map_err(|e| tracing::warn!(error = %e, "not ready: database"));
    let redis = match services.redis.clone() {
        None => Ok(()),
        Some(mut redis) => redis::cmd("PING")
            .query_async::<()>(&mut redis)
            .await
            .map_err(|e| tracing::warn!(error = %e, "not ready: Redis")),
    };
    let state = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = database.is_ok() && redis.is_ok();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "node": services.node,
        "database": state(database.is_ok()),
        "redis": if services.redis.is_some() { state(redis.is_ok()) } else { "not used" },
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

pub async fn metrics(services: web::Data<Services>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(services.metrics.render())
}
