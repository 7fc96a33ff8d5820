//! Webhook deliveries through the server API: the outbox's counts, the events that failed
//! every attempt (dead letters), and putting one back to be delivered again.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::errors::Failures;
use super::{ApiError, resource};
use crate::domain::{Error, Timestamp};
use crate::runtime::Node;
use crate::store::WebhookEvent;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/webhooks", "GET").route(web::get().to(counts)))
        .service(resource("/webhooks/failed", "GET").route(web::get().to(failed)))
        .service(resource("/webhooks/{event_id}/retry", "POST").route(web::post().to(retry)));
}

/// Most failed events one page lists.
const MAX_PAGE: i64 = 200;

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxCounts {
    /// Waiting for their first or next attempt.
    pub pending: i64,
    /// Delivered in the last 7 days (older ones are forgotten).
    pub delivered: i64,
    /// Failed every attempt: kept until retried.
    pub failed: i64,
}

/// How many webhook events the outbox holds, by state (cluster-wide).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = OutboxCounts), Failures), security(("api_key" = [])))]
pub async fn counts(node: web::Data<Node>) -> Result<HttpResponse, ApiError> {
    let counts = node.store.webhook_counts().await.map_err(Error::from)?;
    let counts = OutboxCounts { pending: counts.pending, delivered: counts.delivered, failed: counts.failed };
    Ok(HttpResponse::Ok().json(counts))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FailedParams {
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Events created before this (the last `created_at` of the previous page).
    pub before: Option<Timestamp>,
    /// With `before`: also the events created at that very time whose id sorts before this
    /// (the last `id` of the previous page), so a page never skips events created together.
    /// Without `before`, it changes nothing.
    pub before_id: Option<Uuid>,
}

/// A webhook event as the outbox holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedEvent {
    pub id: Uuid,
    /// `message.offline`, `follow.request`, `match.created`, `call.missed`, `report.created`,
    /// `user.online` or `user.offline`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: serde_json::Value,
    pub created_at: Timestamp,
    pub attempts: u32,
    pub last_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailedPage {
    /// Newest first.
    pub events: Vec<FailedEvent>,
    pub has_more: bool,
}

/// The webhook events that failed every attempt, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/failed", tag = "webhooks", params(FailedParams),
    responses((status = 200, body = FailedPage), Failures), security(("api_key" = [])))]
pub async fn failed(node: web::Data<Node>, params: web::Query<FailedParams>) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad_request(format!("limit must be 1 to {MAX_PAGE}")).into());
    }
    let before = params.before.map(|at| (at, params.before_id));
    let mut events = node.store.failed_webhooks(limit + 1, before).await.map_err(Error::from)?;
    let has_more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let events = events.into_iter().map(shown).collect();
    Ok(HttpResponse::Ok().json(FailedPage { events, has_more }))
}

fn shown(event: WebhookEvent) -> FailedEvent {
    FailedEvent {
        id: event.id,
        event_type: event.event_type.as_str().to_owned(),
        data: event.data,
        created_at: event.created_at,
        attempts: event.attempts,
        last_attempt_at: event.last_attempt_at,
        last_error: event.last_error,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub id: Uuid,
}

/// Puts a failed webhook event back to be delivered now, with its attempts counted afresh.
#[utoipa::path(post, path = "/api/v1/webhooks/{event_id}/retry", tag = "webhooks",
    params(("event_id" = Uuid, Path, description = "a failed event's id")),
    responses((status = 202, body = Retried), Failures), security(("api_key" = [])))]
pub async fn retry(node: web::Data<Node>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if !node.store.retry_webhook(id).await.map_err(Error::from)? {
        return Err(Error::not_found("no failed webhook event with this id").into());
    }
    Ok(HttpResponse::Accepted().json(Retried { id }))
}
