//! Authentication before the upgrade, and the hello frame.

use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::both;
use crate::helpers::*;

async fn rejected_status(url: String) -> u16 {
    match connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    }
}

async fn missing_bad_and_expired_tokens_get_401(db: Db) {
    let app = spawn_app(db).await;
    assert_eq!(rejected_status(format!("ws://127.0.0.1:{}/ws", app.port)).await, 401);
    assert_eq!(rejected_status(app.ws_url("not-a-jwt")).await, 401);

    let other = switchboard::auth::Authenticator::new("some-other-secret-entirely");
    let user = switchboard::domain::UserId::parse("alice").unwrap();
    let forged = other.mint(&user, &Default::default(), 3600);
    assert_eq!(rejected_status(app.ws_url(&forged)).await, 401);

    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": 1_000_000}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(rejected_status(app.ws_url(&expired)).await, 401);

    let (status, body) = app.get("/ws").await;
    assert_eq!(status, 401);
    assert!(body.contains("unauthorized"), "{body}");
}

async fn hello_names_user_node_and_connection(db: Db) {
    let app = spawn_app(db).await;
    // An audience claim (set by many app backends) does not get in the way.
    let with_audience = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "carol", "exp": jsonwebtoken::get_current_timestamp() + 600, "aud": "my-app"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(Client::connect_url(&app.ws_url(&with_audience)).await.hello["user_id"], "carol");
    let client = app.connect("alice").await;
    assert_eq!(client.hello["user_id"], "alice");
    assert!(client.hello["node"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(client.hello["connection_id"].as_str().is_some_and(|c| !c.is_empty()));
}

async fn bearer_header_authenticates(db: Db) {
    let app = spawn_app(db).await;
    let mut request = format!("ws://127.0.0.1:{}/ws", app.port).into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {}", app.token("bob")).parse().unwrap());
    let (mut socket, _) = connect_async(request).await.expect("bearer token accepted");
    use futures_util::StreamExt;
    let hello = socket.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"bob\""));
}

async fn identity_fields_must_match_the_token(db: Db) {
    let app = spawn_app(db).await;
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    let code = alice.fails("message.send", json!({"room_id": room, "body": "hi", "sender_id": "bob"})).await;
    assert_eq!(code, "forbidden");
    // Agreeing with the token is fine.
    alice.ok("message.send", json!({"room_id": room, "body": "hi", "sender_id": "alice"})).await;
}

both!(
    missing_bad_and_expired_tokens_get_401,
    hello_names_user_node_and_connection,
    bearer_header_authenticates,
    identity_fields_must_match_the_token,
);
