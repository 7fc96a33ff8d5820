//! Users through the server API: app events to their devices, presence, their connections on
//! every node (list, close), token revocation, unread counts, deleting their data.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::errors::{self, Body, Failures};
use super::{ApiError, resource};
use crate::bus::{Answer, Question};
use crate::domain::{ConnectionInfo, Error, RoomId, Timestamp, UserId};
use crate::runtime::{Node, operator};
use crate::service::backend;
use crate::wire::{Event, PresenceState, Push};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/users/{user_id}/events", "POST").route(web::post().to(send_event)))
        .service(resource("/presence", "POST").route(web::post().to(presence)))
        .service(
            resource("/users/{user_id}/connections", "GET, DELETE")
                .route(web::get().to(connections))
                .route(web::delete().to(disconnect)),
        )
        .service(resource("/users/{user_id}/revoke", "POST").route(web::post().to(revoke)))
        .service(resource("/users/{user_id}/unread", "GET").route(web::get().to(unread)))
        .service(resource("/users/{user_id}", "DELETE").route(web::delete().to(delete_user)));
}

/// Longest app event name.
const MAX_EVENT_NAME: usize = 64;
/// Names a Socket.IO client reserves, or the native protocol uses outside its event tables.
const RESERVED_EVENTS: [&str; 9] =
    ["ack", "error", "hello", "auth.expiring", "connect", "connect_error", "disconnect", "disconnecting", "message"];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppEvent {
    /// The event's name on the client: 1 to 64 characters, no control character, not a native
    /// event's name.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\u0000-\u001F\u007F-\u009F]{1,64}$")]
    pub event: String,
    /// Any JSON value.
    pub data: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Delivered {
    /// How many live connections it went to (0: the user is offline).
    pub connections: usize,
}

/// Pushes an app event to every live connection of the user, on every node.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/events", tag = "users", request_body = AppEvent,
    params(("user_id" = UserId, Path)), responses((status = 202, body = Delivered), Failures),
    security(("api_key" = [])))]
pub async fn send_event(
    node: web::Data<Node>,
    path: web::Path<UserId>,
    Body(body): Body<AppEvent>,
) -> Result<HttpResponse, ApiError> {
    let AppEvent { event, data } = body;
    check_event_name(&event)?;
    let answers = operator::ask(&node, Question::Deliver { user_id: path.into_inner(), event, data }).await?;
    Ok(HttpResponse::Accepted().json(Delivered { connections: operator::reached(&answers) }))
}

fn check_event_name(event: &str) -> Result<(), Error> {
    if event.is_empty() || event.chars().count() > MAX_EVENT_NAME || event.chars().any(|c| c.is_control()) {
        return Err(Error::bad_request(format!("event must be 1 to {MAX_EVENT_NAME} visible characters")));
    }
    let native = event.parse::<Event>().is_ok()
        || <Push as strum::VariantNames>::VARIANTS.contains(&event)
        || RESERVED_EVENTS.contains(&event);
    if native {
        return Err(Error::bad_request(format!("`{event}` is a native event's name: choose another")));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// At most 1,000 users.
    #[schema(max_items = 1000)]
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceAnswer {
    pub users: Vec<PresenceState>,
}

/// Whether each user is online anywhere in the cluster, and when they were last seen.
#[utoipa::path(post, path = "/api/v1/presence", tag = "users", request_body = PresenceQuery,
    responses((status = 200, body = PresenceAnswer), Failures), security(("api_key" = [])))]
pub async fn presence(node: web::Data<Node>, Body(body): Body<PresenceQuery>) -> Result<HttpResponse, ApiError> {
    let users = backend::presence(&node, body.user_ids).await?;
    Ok(HttpResponse::Ok().json(PresenceAnswer { users }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionsAnswer {
    pub connections: Vec<ConnectionInfo>,
}

/// The user's live connections on every node, oldest first.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/connections", tag = "users",
    params(("user_id" = UserId, Path)), responses((status = 200, body = ConnectionsAnswer), Failures),
    security(("api_key" = [])))]
pub async fn connections(node: web::Data<Node>, path: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    let answers = operator::ask(&node, Question::Connections { user_id: path.into_inner() }).await?;
    let mut connections: Vec<ConnectionInfo> = answers
        .into_iter()
        .flat_map(|answer| match answer {
            Answer::Connections { connections } => connections,
            Answer::Reached { .. } => Vec::new(),
        })
        .collect();
    connections.sort_by_key(|c| c.connected_at);
    Ok(HttpResponse::Ok().json(ConnectionsAnswer { connections }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DisconnectParams {
    /// Close with 4000 (the client reconnects) instead of 4003 (it must not, with this token).
    pub reconnect: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Closed {
    /// How many connections were closed.
    pub closed: usize,
}

/// Closes every connection of the user, on every node.
#[utoipa::path(delete, path = "/api/v1/users/{user_id}/connections", tag = "users",
    params(("user_id" = UserId, Path), DisconnectParams), responses((status = 200, body = Closed), Failures),
    security(("api_key" = [])))]
pub async fn disconnect(
    node: web::Data<Node>,
    path: web::Path<UserId>,
    params: web::Query<DisconnectParams>,
) -> Result<HttpResponse, ApiError> {
    let reconnect = params.reconnect.unwrap_or(false);
    let answers = operator::ask(&node, Question::Close { user_id: path.into_inner(), reconnect }).await?;
    Ok(HttpResponse::Ok().json(Closed { closed: operator::reached(&answers) }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// Tokens issued (`iat`) before this are refused; default now.
    pub before: Option<Timestamp>,
}

/// Refuses the user's tokens issued before a time, and closes the connections holding one
/// (4003) on every node.
#[utoipa::path(post, path = "/api/v1/users/{user_id}/revoke", tag = "users",
    request_body(content = Option<Revoke>, description = "optional: no body revokes the tokens issued until now"),
    params(("user_id" = UserId, Path)), responses((status = 200, body = Closed), Failures),
    security(("api_key" = [])))]
pub async fn revoke(
    node: web::Data<Node>,
    path: web::Path<UserId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let user = path.into_inner();
    let now = Timestamp::now();
    // No body (or `null`) revokes what was issued until now.
    let asked: Option<Revoke> = if body.is_empty() {
        None
    } else {
        let value = serde_json::from_slice(&body).map_err(|e| Error::bad_request(format!("invalid body: {e}")))?;
        errors::parse_body(value)?
    };
    let asked = asked.unwrap_or_default();
    let before = asked.before.unwrap_or(now);
    if before.millis() > now.millis() + 60_000 {
        return Err(Error::bad_request("before must not be in the future").into());
    }
    let closed = revoke_tokens(&node, user, before).await?;
    Ok(HttpResponse::Ok().json(Closed { closed }))
}

/// Stores the revocation (every node also reads it within seconds, and at start-up), then
/// has the nodes holding the user's connections apply it at once; how many it closed.
async fn revoke_tokens(node: &Node, user: UserId, before: Timestamp) -> Result<usize, Error> {
    node.store.revoke(&user, before).await?;
    let answers = operator::ask(node, Question::Revoke { user_id: user, before }).await?;
    Ok(operator::reached(&answers))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadAnswer {
    pub total: i64,
    /// Rooms with unread messages, most first.
    pub rooms: Vec<RoomUnread>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomUnread {
    pub room_id: RoomId,
    pub unread: i64,
}

/// The user's unread messages: the total (a badge) and per room.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/unread", tag = "users",
    params(("user_id" = UserId, Path)), responses((status = 200, body = UnreadAnswer), Failures),
    security(("api_key" = [])))]
pub async fn unread(node: web::Data<Node>, path: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    let (total, rooms) = backend::unread(&node, &path.into_inner()).await?;
    let rooms = rooms.into_iter().map(|(room_id, unread)| RoomUnread { room_id, unread }).collect();
    Ok(HttpResponse::Ok().json(UnreadAnswer { total, rooms }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub user_id: UserId,
    /// How many connections were closed.
    pub closed: usize,
}

/// Deletes the user's data (their messages stay as `deleted` placeholders without a body),
/// refuses their tokens issued until now and closes their connections (4003). The live
/// sessions they host end (`host_left`); those they watch stop counting them.
#[utoipa::path(delete, path = "/api/v1/users/{user_id}", tag = "users",
    params(("user_id" = UserId, Path)), responses((status = 200, body = Deleted), Failures),
    security(("api_key" = [])))]
pub async fn delete_user(node: web::Data<Node>, path: web::Path<UserId>) -> Result<HttpResponse, ApiError> {
    let user = path.into_inner();
    let closed = revoke_tokens(&node, user.clone(), Timestamp::now()).await?;
    backend::delete_user(&node, &user).await?;
    Ok(HttpResponse::Ok().json(Deleted { user_id: user, closed }))
}
