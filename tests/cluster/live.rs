//! Live sessions across nodes: viewers on any node are counted once and get every session
//! event exactly once; a node holding nobody in the session receives none of it; 2,000
//! viewers on two nodes all get every comment once.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::helpers::*;
use crate::{Cluster, metric, shared_redis};

async fn create(host: &mut Client, title: &str) -> String {
    host.ok("live.create", json!({"title": title})).await["session"]["id"].as_str().unwrap().to_owned()
}

/// Reads `live.viewers` pushes until one says `count`.
async fn viewers_reach(host: &mut Client, count: usize) {
    while host.event("live.viewers").await["viewers"] != count {}
}

#[actix_web::test]
async fn live_session_across_nodes() {
    let mut cluster = Cluster::start_with(3, shared_redis(), |s| {
        s.live_comment_rate = 50;
        s.live_host_grace_secs = 1;
    })
    .await;
    cluster.add_node(|_| {}).await; // n4 holds nobody in the session
    let nodes = &cluster.nodes;
    let mut host = nodes[0].connect("host").await;
    let mut ann = nodes[1].connect("ann").await;
    let mut ben = nodes[2].connect("ben").await;
    let mut ben_n1 = nodes[0].connect("ben").await;
    let _outsider = nodes[3].connect("outsider").await;
    let id = create(&mut host, "spread").await;
    let received_before = metric(nodes[3].port, "switchboard_bus_received_total").await;

    assert_eq!(ann.ok("live.join", json!({"session_id": id})).await["session"]["viewers"], 1);
    assert_eq!(ben.ok("live.join", json!({"session_id": id})).await["session"]["viewers"], 2);
    // ben's second device, on another node: still one viewer.
    assert_eq!(ben_n1.ok("live.join", json!({"session_id": id})).await["session"]["viewers"], 2);
    viewers_reach(&mut host, 2).await;

    ann.ok("live.comment", json!({"session_id": id, "text": "from n2"})).await;
    for client in [&mut host, &mut ben, &mut ben_n1] {
        let comment = client.event("live.comment").await;
        assert_eq!((comment["user_id"].as_str(), comment["text"].as_str()), (Some("ann"), Some("from n2")));
        client.no_event("live.comment", Duration::from_millis(300)).await;
    }
    ann.no_event("live.comment", Duration::from_millis(100)).await;

    ben.ok("live.raise_hand", json!({"session_id": id})).await;
    assert_eq!(host.event("live.hand_raised").await, json!({"session_id": id, "user_id": "ben"}));
    host.no_event("live.hand_raised", Duration::from_millis(300)).await;
    host.ok("live.accept_hand", json!({"session_id": id, "user_id": "ben"})).await;
    for client in [&mut ann, &mut ben, &mut ben_n1] {
        assert_eq!(client.event("live.hand_accepted").await, json!({"session_id": id, "user_id": "ben"}));
        client.no_event("live.hand_accepted", Duration::from_millis(300)).await;
    }

    let mut cat = nodes[2].connect("cat").await;
    host.ok("live.invite", json!({"session_id": id, "user_id": "cat"})).await;
    assert_eq!(cat.event("live.invited").await["session"]["id"], id.as_str());

    // ben leaves from one device: both of ben's nodes stop delivering to ben.
    assert_eq!(ben_n1.ok("live.leave", json!({"session_id": id})).await["session"]["viewers"], 1);
    viewers_reach(&mut host, 1).await;
    host.ok("live.comment", json!({"session_id": id, "text": "just us"})).await;
    assert_eq!(ann.event("live.comment").await["text"], "just us");
    ben.no_event("live.comment", Duration::from_millis(300)).await;
    ben_n1.no_event("live.comment", Duration::from_millis(100)).await;

    // The node holding nobody in the session received none of its traffic.
    assert_eq!(metric(nodes[3].port, "switchboard_bus_received_total").await, received_before);

    // The host's only connection closes: past the grace period the session ends for the
    // viewers on the other nodes.
    host.close().await;
    let ended = ann.event("live.ended").await;
    assert_eq!(ended["reason"], "host_left");
    ann.no_event("live.ended", Duration::from_millis(300)).await;
    assert_eq!(cat.fails("live.join", json!({"session_id": id})).await, "conflict");
}

/// 2,000 viewers on two in-process nodes need about 4,000 sockets in this one process (the
/// client end and the server end of each), plus database and Redis connections. A soft
/// open-files limit of 1,024 is common while the hard limit is far higher, and an
/// unprivileged process may raise its own soft limit up to the hard one: so the test does
/// that itself with setrlimit(2) (no helper process, no `prlimit`, no crate beyond libc).
/// nextest runs every test in a process of its own, so other tests are unaffected; under
/// `cargo test` the raised limit is merely shared. A hard limit that is too low fails here
/// with that explanation instead of with obscure connect errors. (A production node's
/// limit is the service manager's business: `LimitNOFILE`, `ulimit -n`.)
fn ensure_open_files(needed: libc::rlim_t) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read or write the struct they are given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit(RLIMIT_NOFILE) failed");
    if limit.rlim_cur >= needed {
        return;
    }
    assert!(
        limit.rlim_max >= needed,
        "this test needs {needed} open files, but the hard limit is {}: raise it (ulimit -Hn) to run it",
        limit.rlim_max
    );
    limit.rlim_cur = needed;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit(RLIMIT_NOFILE) to {needed} failed");
}

#[actix_web::test]
async fn live_two_thousand_viewers_on_two_nodes_get_every_comment_once() {
    const VIEWERS: usize = 2000;
    const COMMENTS: usize = 5;
    /// Connections opened (and joined) at once.
    const CONCURRENCY: usize = 100;
    ensure_open_files(2 * VIEWERS as libc::rlim_t + 2048);
    let cluster = Cluster::start_with(2, shared_redis(), |s| {
        s.live_comment_rate = 100;
        // Idle clients are not read while the others connect: keep pings out of the way.
        s.heartbeat_secs = 120;
        s.heartbeat_timeout_secs = 600;
    })
    .await;
    let nodes = &cluster.nodes;
    let mut host = nodes[0].connect("host").await;
    let id = create(&mut host, "big").await;

    let started = Instant::now();
    let urls: Vec<String> = (0..VIEWERS)
        .map(|i| {
            let node = &nodes[i % nodes.len()];
            node.ws_url(&node.token(&format!("viewer{i}")))
        })
        .collect();
    let mut viewers: Vec<Client> = futures_util::stream::iter(urls)
        .map(|url| {
            let id = id.clone();
            async move {
                let mut viewer = Client::connect_url(&url).await;
                viewer.ok("live.join", json!({"session_id": id})).await;
                viewer
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let joined = started.elapsed();
    // The count is exact across both nodes.
    viewers_reach(&mut host, VIEWERS).await;

    let texts: Vec<String> = (0..COMMENTS).map(|i| format!("comment {i}")).collect();
    for text in &texts {
        host.ok("live.comment", json!({"session_id": id, "text": text})).await;
    }
    let received = futures_util::future::join_all(viewers.iter_mut().map(|viewer| async move {
        let mut got = Vec::with_capacity(COMMENTS);
        for _ in 0..COMMENTS {
            got.push(viewer.event("live.comment").await["text"].as_str().unwrap().to_owned());
        }
        viewer.no_event("live.comment", Duration::from_millis(500)).await;
        got
    }))
    .await;
    for (i, got) in received.iter().enumerate() {
        assert_eq!(got, &texts, "viewer{i} did not get every comment exactly once, in order");
    }
    let total = started.elapsed();
    eprintln!("{VIEWERS} viewers connected and joined in {joined:?}; all comments delivered after {total:?}");
    assert!(total < Duration::from_secs(60), "took {total:?}");
}
