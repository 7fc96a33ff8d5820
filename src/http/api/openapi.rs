//! The OpenAPI 3.1 document of the server API, generated from the handlers and their types
//! (utoipa) and served at `/api/v1/openapi.json`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::errors::ErrorBody;
use super::{rooms, users, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard server API", description = "For the app's own back end: rooms, messages, \
        presence, connections, tokens and users, cluster-wide. Every POST and DELETE honours an \
        `Idempotency-Key` header (1 to 128 visible ASCII characters; a repeat within 24 h gets the first \
        answer, marked `Idempotent-Replayed: true`; the key reused for another request: 409)."),
    paths(
        rooms::create_room,
        rooms::add_member,
        rooms::remove_member,
        rooms::post_message,
        rooms::history,
        users::send_event,
        users::presence,
        users::connections,
        users::disconnect,
        users::revoke,
        users::unread,
        users::delete_user,
        webhooks::counts,
        webhooks::failed,
        webhooks::retry,
    ),
    components(schemas(ErrorBody)),
    modifiers(&ApiKeyScheme),
    tags((name = "rooms", description = "Rooms, members, messages and history"),
        (name = "users", description = "Users' devices, presence, connections, tokens and data"),
        (name = "webhooks", description = "The webhook outbox: counts, dead letters, retries"))
)]
pub struct ApiDoc;

/// `Authorization: Bearer <API key>` on every call.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("the API key")).build();
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
