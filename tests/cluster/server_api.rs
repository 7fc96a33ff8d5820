//! The server API acts cluster-wide whichever node receives the call: connections listed and
//! closed, app events delivered, tokens revoked and messages posted on the other nodes too.

use serde_json::json;

use super::Cluster;
use crate::helpers::*;

#[actix_web::test]
async fn a_call_on_one_node_reaches_the_users_connections_on_every_node() {
    let cluster = Cluster::start_with(2, super::shared_redis(), with_api).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut here = n1.connect("alice").await;
    let mut there = n2.connect("alice").await;
    let mut bob = n2.connect("bob").await;

    let listed = api(n1.port, "GET", "/api/v1/users/alice/connections", None, &[]).await;
    let nodes: Vec<&str> =
        listed.body["connections"].as_array().unwrap().iter().map(|c| c["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, vec!["n1", "n2"], "{listed:?}");

    let presence = api(n1.port, "POST", "/api/v1/presence", Some(json!({"user_ids": ["bob", "carol"]})), &[]).await;
    assert_eq!(presence.body["users"][0]["online"], true, "bob is online on n2: {presence:?}");
    assert_eq!(presence.body["users"][1]["online"], false);

    let sent =
        api(n1.port, "POST", "/api/v1/users/alice/events", Some(json!({"event": "ping.app", "data": 1})), &[]).await;
    assert_eq!(sent.body["connections"], 2);
    assert_eq!(here.event("ping.app").await, json!(1));
    assert_eq!(there.event("ping.app").await, json!(1));

    // A message posted through n1 reaches a member connected to n2.
    let room = api(
        n1.port,
        "POST",
        "/api/v1/rooms",
        Some(json!({"kind": "direct", "members": ["bob"], "created_by": "alice"})),
        &[],
    )
    .await;
    let room = room.body["room"]["id"].as_str().unwrap().to_owned();
    let posted = api(
        n1.port,
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(json!({"body": "from the back end"})),
        &[],
    )
    .await;
    assert_eq!(posted.status, 201);
    assert_eq!(bob.event("message.new").await["message"]["body"], "from the back end");

    let closed = api(n1.port, "DELETE", "/api/v1/users/alice/connections", None, &[]).await;
    assert_eq!(closed.body["closed"], 2);
    assert_eq!(here.close_code().await, Some(4003));
    assert_eq!(there.close_code().await, Some(4003));

    let revoked = api(n1.port, "POST", "/api/v1/users/bob/revoke", Some(json!({})), &[]).await;
    assert_eq!(revoked.body["closed"], 1);
    assert_eq!(bob.close_code().await, Some(4003));
}
