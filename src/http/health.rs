//! `/healthz` (the process answers), `/readyz` (its database answers), `/metrics`.

use actix_web::{HttpResponse, web};

use crate::runtime::Node;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(node: web::Data<Node>) -> HttpResponse {
    let database = node.store.ping().await.map_err(|e| tracing::warn!(error = %e, "not ready: database"));
    let redis = match node.redis.clone() {
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
        "node": node.node,
        "database": state(database.is_ok()),
        "redis": if node.redis.is_some() { state(redis.is_ok()) } else { "not used" },
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

pub async fn metrics(node: web::Data<Node>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(node.metrics.render())
}
