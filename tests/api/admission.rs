//! Who may connect, for how long: the connection caps (per user across the cluster, per
//! address, per node), allowed origins, the pre-login budget, token expiry and refresh,
//! revocation, and rate limits on pings.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The HTTP status of a refused upgrade.
async fn refused(request: impl IntoClientRequest + Unpin) -> u16 {
    match connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    }
}

fn token(user: &str, claims: Value) -> String {
    let mut claims = claims;
    claims["sub"] = json!(user);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Reads until the server closes: the close code (`None` if the socket just ends).
async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await.expect("the server closes in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// The next text frame.
async fn text(socket: &mut Socket) -> String {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

#[actix_web::test]
async fn a_user_holds_at_most_the_per_user_cap() {
    let app = spawn_with(Db::Sqlite, |s| s.max_connections_per_user = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(app.connect("alice").await);
    }
    assert_eq!(refused(app.ws_url(&app.token("alice"))).await, 429);
    // Socket.IO clients meet the same cap at their namespace connect.
    let (mut sio, _) =
        connect_async(format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", app.port)).await.unwrap();
    assert!(text(&mut sio).await.starts_with('0'));
    sio.send(Message::text(format!("40{}", json!({"token": app.token("alice")})))).await.unwrap();
    let answer = text(&mut sio).await;
    assert!(answer.starts_with("44") && answer.contains("too many connections"), "{answer}");
    assert_eq!(close_code(&mut sio, WAIT).await, Some(1008));
    // Others are not affected, and a place comes back when a connection closes.
    app.connect("bob").await;
    held.pop().unwrap().close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.connect("alice").await;
}

#[actix_web::test]
async fn an_address_and_a_node_hold_at_most_their_caps() {
    let app = spawn_with(Db::Sqlite, |s| s.max_connections_per_ip = 2).await;
    let sio = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", app.port);
    // Unauthenticated sockets count too.
    let _first = connect_async(&sio).await.unwrap();
    let _second = app.connect("alice").await;
    assert_eq!(refused(app.ws_url(&app.token("bob"))).await, 429);
    assert_eq!(refused(sio.as_str()).await, 429);

    let full = spawn_with(Db::Sqlite, |s| s.max_connections = Some(1)).await;
    let _only = full.connect("alice").await;
    assert_eq!(refused(full.ws_url(&full.token("bob"))).await, 503);
    let (_, metrics) = full.get("/metrics").await;
    assert!(metrics.contains(r#"switchboard_connections_refused_total{reason="node_full""#), "{metrics}");
}

#[actix_web::test]
async fn browsers_connect_only_from_allowed_origins() {
    let app = spawn_with(Db::Sqlite, |s| s.allowed_origins = vec!["https://app.example".into()]).await;
    let from = |origin: &str| {
        let mut request = app.ws_url(&app.token("alice")).into_client_request().unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        request
    };
    assert_eq!(refused(from("https://evil.example")).await, 403);
    connect_async(from("https://app.example")).await.expect("an allowed origin connects");
    // Not a browser: no Origin, no check.
    app.connect("bob").await;
}

/// A socket that never logs in is closed after the login budget, whatever it sends
/// meanwhile: no connect packet, a refused Engine.IO 3 token, an unknown API.
#[actix_web::test]
async fn unauthenticated_sockets_are_closed_after_the_login_budget() {
    let app = spawn_with(Db::Sqlite, |s| s.login_timeout_secs = 1).await;
    let base = format!("ws://127.0.0.1:{}/socket.io/?transport=websocket", app.port);
    for query in ["&EIO=4", "&EIO=3&token=bad", "&EIO=3", "&EIO=4&api=nope"] {
        let (mut socket, _) = connect_async(format!("{base}{query}")).await.unwrap();
        let started = std::time::Instant::now();
        // Keep talking: pings do not buy time.
        let pinging = async {
            loop {
                let _ = socket.send(Message::text("2")).await;
                match tokio::time::timeout(Duration::from_millis(200), socket.next()).await {
                    Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                    Ok(Some(Ok(_))) | Err(_) => continue,
                    Ok(Some(Err(_)) | None) => return None,
                }
            }
        };
        let code = tokio::time::timeout(Duration::from_secs(10), pinging).await.expect("closed in time");
        assert_eq!(code, Some(1008), "{query}");
        assert!(started.elapsed() < Duration::from_secs(5), "{query}: {:?}", started.elapsed());
    }
}

/// A connection is told before its token expires, closed with 4001 at `exp`, and kept open
/// by `auth.refresh` with a fresh token of the same user.
#[actix_web::test]
async fn expiring_tokens_are_announced_refreshed_or_closed() {
    let app = spawn_app(Db::Sqlite).await;
    let short = token("alice", json!({"exp": now() + 3, "iat": now()}));
    let mut expiring = Client::connect_url(&app.ws_url(&short)).await;
    let notice = expiring.event("auth.expiring").await;
    assert!(notice["expires_at"].is_string(), "{notice}");
    assert_eq!(expiring.close_code().await, Some(4001));

    let mut refreshed = Client::connect_url(&app.ws_url(&token("bob", json!({"exp": now() + 3})))).await;
    refreshed.event("auth.expiring").await;
    let other = token("mallory", json!({"exp": now() + 600}));
    assert_eq!(refreshed.fails("auth.refresh", json!({"token": other})).await, "forbidden");
    assert_eq!(refreshed.fails("auth.refresh", json!({"token": "garbage"})).await, "unauthorized");
    let fresh = token("bob", json!({"exp": now() + 600}));
    let reply = refreshed.ok("auth.refresh", json!({"token": fresh})).await;
    assert!(reply["expires_at"].is_string(), "{reply}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    refreshed.ok("presence.query", json!({"user_ids": []})).await;
}

/// Socket.IO clients refresh the same way, with an ack.
#[actix_web::test]
async fn socketio_clients_refresh_their_token() {
    let app = spawn_app(Db::Sqlite).await;
    let (mut socket, _) =
        connect_async(format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", app.port)).await.unwrap();
    assert!(text(&mut socket).await.starts_with('0'));
    let short = token("carol", json!({"exp": now() + 3}));
    socket.send(Message::text(format!("40{}", json!({"token": short})))).await.unwrap();
    assert!(text(&mut socket).await.starts_with("40"));
    let notice = text(&mut socket).await;
    assert!(notice.starts_with(r#"42["auth.expiring""#), "{notice}");
    let fresh = token("carol", json!({"exp": now() + 600}));
    socket.send(Message::text(format!("427{}", json!(["auth.refresh", {"token": fresh}])))).await.unwrap();
    let ack = text(&mut socket).await;
    assert!(ack.starts_with(r#"437[{"data":{"expires_at""#) && ack.contains(r#""ok":true"#), "{ack}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    socket.send(Message::text(format!("428{}", json!(["presence.query", {"user_ids": []}])))).await.unwrap();
    assert!(text(&mut socket).await.starts_with("438"));
}

#[actix_web::test]
async fn tokens_not_yet_valid_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let early = token("alice", json!({"exp": now() + 600, "nbf": now() + 300}));
    assert_eq!(refused(app.ws_url(&early)).await, 401);
    let (status, body) = app.get(&format!("/ws?token={early}")).await;
    assert_eq!(status, 401);
    assert!(body.contains("not yet valid"), "{body}");
}

/// WebSocket and Engine.IO pings count against the rate limit like any frame.
#[actix_web::test]
async fn ping_floods_are_rate_limited_and_closed() {
    let app = spawn_with(Db::Sqlite, |s| {
        s.rate_per_sec = 5;
        s.rate_burst = 5;
        s.flood_strikes = 20;
    })
    .await;
    let (mut socket, _) = connect_async(app.ws_url(&app.token("alice"))).await.unwrap();
    for _ in 0..2000 {
        if socket.send(Message::Ping(b"x".to_vec().into())).await.is_err() {
            break;
        }
    }
    let mut pongs = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("the server answers") {
            Some(Ok(Message::Pong(_))) => pongs += 1,
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(code, Some(1008));
    assert!(pongs <= 10, "{pongs} pongs");

    let (mut sio, _) = connect_async(format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=3&transport=websocket&token={}",
        app.port,
        app.token("bob")
    ))
    .await
    .unwrap();
    for _ in 0..2000 {
        if sio.send(Message::text("2")).await.is_err() {
            break;
        }
    }
    let mut answers = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, sio.next()).await.expect("the server answers") {
            Some(Ok(Message::Text(text))) if text.as_str() == "3" => answers += 1,
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(code, Some(1008));
    assert!(answers <= 10, "{answers} Engine.IO pongs");
}
