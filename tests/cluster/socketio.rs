//! Socket.IO connection-state recovery across nodes: a stock v4 client that loses its
//! transport on one node and reconnects to another gets what it missed, from the database.

use std::path::PathBuf;
use std::time::Duration;

use crate::Cluster;

#[actix_web::test]
async fn socketio_client_recovers_on_another_node() {
    let cluster = Cluster::start(2).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio");
    assert!(dir.join("node_modules/socket.io-client").exists(), "run `npm ci` in tests/socketio");
    let output = tokio::process::Command::new("node")
        .arg(dir.join("drive.mjs"))
        .arg("v4-recover-on-another-node")
        .env("URL", format!("http://127.0.0.1:{}", n1.port))
        .env("URL2", format!("http://127.0.0.1:{}", n2.port))
        .env("TOKEN_A", n1.token("alice"))
        .env("TOKEN_B", n1.token("bob"))
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(60), output).await.expect("the driver finishes").expect("node runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
