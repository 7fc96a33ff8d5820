//! The shipped nginx config (deploy/nginx/switchboard.conf.template), run for real by
//! Debian's nginx in front of two nodes.

use std::path::Path;
use std::time::Duration;

use crate::Cluster;
use crate::helpers::*;

struct Nginx {
    port: u16,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGQUIT lets the master take its workers down with it.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-QUIT", &pid.to_string()]).status();
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

async fn start_nginx(upstreams: &[u16]) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/switchboard.conf.template"))
            .expect("the nginx template ships with the project");
    let servers: String = upstreams.iter().map(|p| format!("    server 127.0.0.1:{p};\n")).collect();
    let site =
        template.replace("    # UPSTREAM_SERVERS\n", &servers).replace("LISTEN_PORT", &format!("127.0.0.1:{port}"));
    let d = dir.path().display();
    let config = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}\n}}\n"
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| !p.starts_with('/') || Path::new(p).exists())
        .unwrap();
    let child = tokio::process::Command::new(nginx)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config_path)
        .kill_on_drop(true)
        .spawn()
        .expect("nginx is installed (deploy/local/test.sh installs it)");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Nginx { port, child, _dir: dir };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not start: {}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
}

#[actix_web::test]
async fn nginx_spreads_websockets_over_nodes_and_chat_works_through_it() {
    let cluster = Cluster::start(2).await;
    let nginx = start_nginx(&[cluster.nodes[0].port, cluster.nodes[1].port]).await;
    let app = &cluster.nodes[0];
    let url = |user: &str| format!("ws://127.0.0.1:{}/ws?token={}", nginx.port, app.token(user));

    let mut clients = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        clients.push(Client::connect_url(&url(user)).await);
    }
    let nodes: std::collections::HashSet<String> =
        clients.iter().map(|c| c.hello["node"].as_str().unwrap().to_owned()).collect();
    assert_eq!(nodes.len(), 2, "least_conn spreads connections over both nodes");

    let (first, rest) = clients.split_at_mut(1);
    let other = rest.iter_mut().find(|c| c.hello["node"] != first[0].hello["node"]).unwrap();
    let room = direct_room(&mut first[0], other).await;
    let message = send(&mut first[0], &room, "through nginx").await;
    assert_eq!(other.event("message.new").await["message"], message);

    // Plain HTTP goes through too.
    let (status, _) = http_get(nginx.port, "/readyz").await;
    assert_eq!(status, 200);
    // And an idle WebSocket survives the server's heartbeat pings through the proxy.
    other.ok("presence.query", serde_json::json!({"user_ids": []})).await;
}
