//! PostgreSQL faults (stopped, crashed, hung): while the database is out of reach, sends fail
//! promptly with `unavailable` and are never acknowledged, `/readyz` says so, and once it
//! returns the nodes carry on by themselves; resends by `client_id` store each message once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::services::{OwnPostgres, PgStop};
use crate::{Cluster, chatting_across};

/// How long a send may take to fail while the database is down.
const PROMPT: Duration = Duration::from_secs(11);

async fn database_down_then_back(how: PgStop) {
    let pg = OwnPostgres::start().await;
    let cluster = Cluster::start_on(pg.url(), 2, crate::shared_redis(), |_| {}).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (mut alice, mut bob, room) = chatting_across(n1, n2).await;

    pg.stop(how).await;
    for attempt in 0..3 {
        let started = Instant::now();
        let during = json!({"room_id": room, "body": format!("during {attempt}"), "client_id": format!("d{attempt}")});
        assert_eq!(alice.fails("message.send", during).await, "unavailable", "a send while the database is down");
        assert!(started.elapsed() < PROMPT, "failed after {:?}", started.elapsed());
    }
    let (status, body) = n1.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""database":"unreachable""#), "{body}");

    pg.run().await;
    // The nodes reconnect by themselves. The client resends what was not acknowledged, with
    // the same client_id, until it is: a write that timed out may have committed after all,
    // and then its resend answers the stored message instead of storing it twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0..3 {
        let resend = json!({"room_id": room, "body": format!("during {attempt}"), "client_id": format!("d{attempt}")});
        loop {
            let ack = alice.request("message.send", resend.clone()).await;
            if ack["ok"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "no send acknowledged 30 s after the database returned: {ack}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    send(&mut alice, &room, "after").await;
    bob.event_matching(|frame| frame["event"] == "message.new" && frame["data"]["message"]["body"] == "after").await;
    assert_eq!(n1.get("/readyz").await.0, 200);
    let history = bob.ok("message.history", json!({"room_id": room, "after_seq": 0, "limit": 100})).await;
    let messages = history["messages"].as_array().unwrap();
    let seqs: Vec<i64> = messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "every message once, no gap");
    let mut bodies: Vec<&str> = messages.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!((bodies[0], bodies[4]), ("before", "after"));
    bodies.sort();
    assert_eq!(bodies, ["after", "before", "during 0", "during 1", "during 2"]);
}

#[actix_web::test]
async fn database_fast_shutdown_fails_sends_promptly_and_recovers() {
    database_down_then_back(PgStop::Fast).await;
}

#[actix_web::test]
async fn database_crash_fails_sends_promptly_and_recovers() {
    database_down_then_back(PgStop::Immediate).await;
}

#[actix_web::test]
async fn database_hang_fails_sends_promptly_and_recovers() {
    database_down_then_back(PgStop::Freeze).await;
}
