//! `/healthz` (the process answers), `/readyz` (its database answers), `/metrics`.

use actix_web::{HttpResponse, web};

use crate::runtime::Node;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Longest `/readyz` waits for Redis: a hung Redis must make the node unready, not hold the
/// probe. (The database ping is bounded by the store's own timeout.)
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn readyz(node: web::Data<Node>) -> HttpResponse {
    let database = node.store.ping().await.map_err(|e| tracing::warn!(error = %e, "not ready: database"));
    let redis = match node.redis.clone() {
        None => Ok(()),
        Some(mut redis) => {
            let command = redis::cmd("PING");
            let ping = command.query_async::<()>(&mut redis);
            match tokio::time::timeout(PING_TIMEOUT, ping).await {
                Ok(answer) => answer.map_err(|e| tracing::warn!(error = %e, "not ready: Redis")),
                Err(_) => {
                    tracing::warn!("not ready: Redis did not answer in time");
                    Err(())
                }
            }
        }
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
