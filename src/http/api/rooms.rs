//! Rooms through the server API: create, add and remove members, post messages (as a member
//! or as the system), read history.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::errors::{Body, Failures};
use super::{ApiError, idempotency, resource};
use crate::domain::{Error, Message, MessageKind, Room, RoomId, RoomKind, UserId};
use crate::runtime::Node;
use crate::service::backend::{self, Author};
use crate::store::HistoryQuery;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/rooms", "POST").route(web::post().to(create_room)))
        .service(resource("/rooms/{room_id}/members", "POST").route(web::post().to(add_member)))
        .service(resource("/rooms/{room_id}/members/{user_id}", "DELETE").route(web::delete().to(remove_member)))
        .service(
            resource("/rooms/{room_id}/messages", "GET, POST")
                .route(web::post().to(post_message))
                .route(web::get().to(history)),
        );
}

/// A direct room of two users, or a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CreateRoom {
    Direct {
        /// The other user.
        #[schema(min_items = 1, max_items = 1)]
        members: Vec<UserId>,
        created_by: UserId,
    },
    Group {
        /// The members besides `created_by` (at most the group limit, 8 unless set otherwise).
        #[schema(min_items = 1)]
        members: Vec<UserId>,
        /// 1 to 100 characters, not only spaces.
        #[schema(
            min_length = 1,
            max_length = 100,
            pattern = r"[^\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        name: String,
        created_by: UserId,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomAnswer {
    pub room: Room,
}

/// Creates a direct room or a group.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "rooms", request_body = CreateRoom,
    responses((status = 201, description = "created", body = RoomAnswer),
        (status = 200, description = "the direct room already existed", body = RoomAnswer), Failures),
    security(("api_key" = [])))]
pub async fn create_room(node: web::Data<Node>, Body(body): Body<CreateRoom>) -> Result<HttpResponse, ApiError> {
    let (kind, members, name, created_by) = match body {
        CreateRoom::Direct { members, created_by } => (RoomKind::Direct, members, None, created_by),
        CreateRoom::Group { members, name, created_by } => (RoomKind::Group, members, Some(name), created_by),
    };
    let (room, created) = backend::create_room(&node, kind, created_by, members, name).await?;
    let mut answer = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(answer.json(RoomAnswer { room }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: UserId,
}

/// Adds a member to a group (again: no change).
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/members", tag = "rooms", request_body = AddMember,
    params(("room_id" = RoomId, Path, description = "the group")),
    responses((status = 200, body = RoomAnswer), Failures), security(("api_key" = [])))]
pub async fn add_member(
    node: web::Data<Node>,
    path: web::Path<RoomId>,
    Body(body): Body<AddMember>,
) -> Result<HttpResponse, ApiError> {
    let room = backend::add_member(&node, path.into_inner(), body.user_id).await?;
    Ok(HttpResponse::Ok().json(RoomAnswer { room }))
}

/// Removes a member from a group.
#[utoipa::path(delete, path = "/api/v1/rooms/{room_id}/members/{user_id}", tag = "rooms",
    params(("room_id" = RoomId, Path, description = "the group"), ("user_id" = UserId, Path, description = "the member")),
    responses((status = 200, body = RoomAnswer), Failures), security(("api_key" = [])))]
pub async fn remove_member(node: web::Data<Node>, path: web::Path<(RoomId, UserId)>) -> Result<HttpResponse, ApiError> {
    let (room, user) = path.into_inner();
    let room = backend::remove_member(&node, room, user).await?;
    Ok(HttpResponse::Ok().json(RoomAnswer { room }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// The member it is from; none: a system message.
    pub sender_id: Option<UserId>,
    /// `text` by default from a member, `system` (the only kind) without `sender_id`.
    pub kind: Option<MessageKind>,
    /// Not only spaces and control characters; no NUL; at most 16 KiB of UTF-8 by default
    /// (the node's `SWITCHBOARD_MAX_BODY_BYTES`: over it, 413 `too_large`; `maxLength` counts
    /// characters, so it bounds a valid body without ensuring one); a URL or file key for
    /// media kinds.
    #[schema(
        min_length = 1,
        max_length = 16384,
        pattern = r"^[^\u0000]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub body: String,
    /// The sender's id for the message: a repeat returns the message stored first. Without
    /// one, a request with an `Idempotency-Key` is stored under an id made from the key.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")]
    pub client_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageAnswer {
    pub message: Message,
}

/// Posts a message, answered once it is durable; pushed to the members like any message.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/messages", tag = "rooms", request_body = PostMessage,
    params(("room_id" = RoomId, Path, description = "the room")),
    responses((status = 201, body = MessageAnswer), Failures), security(("api_key" = [])))]
pub async fn post_message(
    node: web::Data<Node>,
    path: web::Path<RoomId>,
    request: HttpRequest,
    Body(body): Body<PostMessage>,
) -> Result<HttpResponse, ApiError> {
    let PostMessage { sender_id, kind, body, client_id } = body;
    let client_id = client_id.or_else(|| idempotency::key_of(&request).map(|key| idempotency::client_id(&key)));
    let (author, kind) = match sender_id {
        Some(user) => (Author::User(user), kind.unwrap_or(MessageKind::Text)),
        None => (Author::System, kind.unwrap_or(MessageKind::System)),
    };
    crate::domain::check_client_id(client_id.as_deref())?;
    let message = backend::post_message(&node.services, path.into_inner(), author, kind, body, client_id).await?;
    Ok(HttpResponse::Created().json(MessageAnswer { message }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Messages after this seq, oldest first (with `before_seq` too: those between).
    pub after_seq: Option<i64>,
    /// Messages before this seq (the newest of them), oldest first.
    pub before_seq: Option<i64>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryAnswer {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// A page of a room's history, oldest first (the newest page without a cursor).
#[utoipa::path(get, path = "/api/v1/rooms/{room_id}/messages", tag = "rooms",
    params(("room_id" = RoomId, Path, description = "the room"), HistoryParams),
    responses((status = 200, body = HistoryAnswer), Failures), security(("api_key" = [])))]
pub async fn history(
    node: web::Data<Node>,
    path: web::Path<RoomId>,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let HistoryParams { after_seq, before_seq, limit } = params.into_inner();
    let query = match (after_seq, before_seq) {
        (Some(after), Some(before)) => HistoryQuery::Between(after, before),
        (Some(seq), None) => HistoryQuery::After(seq),
        (None, Some(seq)) => HistoryQuery::Before(seq),
        (None, None) => HistoryQuery::Newest,
    };
    let limit = limit.unwrap_or(50);
    if !(1..=backend::MAX_HISTORY_PAGE).contains(&limit) {
        return Err(Error::bad_request(format!("limit must be 1 to {}", backend::MAX_HISTORY_PAGE)).into());
    }
    let page = backend::history(&node, path.into_inner(), query, limit).await?;
    Ok(HttpResponse::Ok().json(HistoryAnswer { messages: page.messages, has_more: page.has_more }))
}
