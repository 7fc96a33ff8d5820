//! Limits: frame size, flood, slow readers. Each closes only the offender.

use std::time::Duration;

use serde_json::json;

use crate::both;
use crate::helpers::*;

async fn oversize_frames_close_with_1009(db: Db) {
    let app = spawn_with(db, |s| s.max_frame_bytes = 4096).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let room = direct_room(&mut bob, &alice).await;
    alice.send_text("x".repeat(5000)).await;
    assert_eq!(alice.close_code().await, Some(1009));
    // Others are unaffected.
    send(&mut bob, &room, "fine").await;
}

async fn floods_get_rate_limited_then_closed_with_1008(db: Db) {
    let app = spawn_with(db, |s| {
        s.rate_per_sec = 5;
        s.rate_burst = 5;
        s.flood_strikes = 20;
    })
    .await;
    let mut alice = app.connect("alice").await;
    for id in 0..10 {
        alice.send_text(json!({"event": "presence.query", "id": id, "data": {"user_ids": []}}).to_string()).await;
    }
    let mut limited = 0;
    for id in 0..10 {
        let ack = alice.ack(id).await;
        if ack["ok"] == false {
            assert_eq!(ack["error"]["code"], "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 4, "a burst over the limit is refused: {limited} refused");
    for id in 10..60 {
        alice.send_text(json!({"event": "presence.query", "id": id, "data": {"user_ids": []}}).to_string()).await;
    }
    assert_eq!(alice.close_code().await, Some(1008));
    // Others are unaffected.
    let mut bob = app.connect("bob").await;
    bob.ok("presence.query", json!({"user_ids": []})).await;
}

async fn slow_readers_are_closed_with_1013(db: Db) {
    let app = spawn_with(db, |s| {
        s.outbound_queue = 16;
        s.rate_per_sec = 10_000;
        s.rate_burst = 10_000;
    })
    .await;
    let (mut slow, _) = tokio_tungstenite::connect_async(app.ws_url(&app.token("slow"))).await.unwrap();
    let mut talker = app.connect("talker").await;
    let room = talker.ok("room.direct", json!({"user_id": "slow"})).await["room"]["id"].as_str().unwrap().to_owned();
    // The slow client never reads while ~5 MB is pushed at it.
    let body = "y".repeat(8000);
    let mut closed = false;
    for round in 0..40 {
        for i in 0..16 {
            talker
                .send_text(json!({"event": "message.send", "data": {"room_id": room, "body": body, "client_id": format!("{round}-{i}")}}).to_string())
                .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, metrics) = app.get("/metrics").await;
        if metrics.lines().any(|l| l.starts_with("switchboard_slow_consumer_closes_total") && !l.ends_with(" 0")) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow reader was not closed");
    // Now it reads: some messages, then a 1013 close.
    use futures_util::StreamExt;
    let mut code = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(15), slow.next()).await {
        if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = frame {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(1013));
    let _ = slow.close(None).await;
    // The talker was never affected.
    send(&mut talker, &room, "still fine").await;
}

both!(
    oversize_frames_close_with_1009,
    floods_get_rate_limited_then_closed_with_1008,
    slow_readers_are_closed_with_1013
);
