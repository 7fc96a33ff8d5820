//! The web demo (`SWITCHBOARD_DEMO`): off by default, its embedded files served with their
//! types and nothing else, and its token endpoint minting only with the development secret
//! for a caller on this machine that no proxy relayed.

use serde_json::json;
use switchboard::auth::Authenticator;
use switchboard::config::DEV_SECRET;

use crate::helpers::{Db, raw_http, spawn_with};

#[actix_web::test]
async fn demo_is_off_by_default() {
    let app = spawn_with(Db::Sqlite, |_| {}).await;
    assert_eq!(app.get("/demo/").await.0, 404);
    assert_eq!(
        raw_http(app.port, "POST", "/demo/token", Some(json!({"user_id": "a"}).to_string()), "").await.status,
        404
    );
    app.stop().await;
}

#[actix_web::test]
async fn demo_serves_its_embedded_files_only() {
    let app = spawn_with(Db::Sqlite, |s| s.demo = true).await;
    let page = raw_http(app.port, "GET", "/demo/", None, "").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.header("content-security-policy").is_some_and(|csp| csp.contains("default-src 'self'")));
    assert_eq!(raw_http(app.port, "GET", "/demo", None, "").await.header("location"), Some("/demo/"));
    for (path, content_type) in [
        ("/demo/app.js", "text/javascript; charset=utf-8"),
        ("/demo/style.css", "text/css; charset=utf-8"),
        ("/demo/vendor/switchboard/index.js", "text/javascript; charset=utf-8"),
    ] {
        let answer = raw_http(app.port, "GET", path, None, "").await;
        assert_eq!((answer.status, answer.header("content-type")), (200, Some(content_type)), "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
    for path in [
        "/demo/../Cargo.toml",
        "/demo/%2e%2e/Cargo.toml",
        "/demo/..%2fCargo.toml",
        "/demo//etc/passwd",
        "/demo/vendor/../../src/main.rs",
        "/demo/assets/index.html",
        "/demo/test/demo.test.mjs",
    ] {
        let status = raw_http(app.port, "GET", path, None, "").await.status;
        assert!(status == 404 || status == 400, "{path} answered {status}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn demo_mints_only_with_the_dev_secret_for_local_unproxied_callers() {
    let body = || Some(json!({"user_id": "alice"}).to_string());
    let secret = spawn_with(Db::Sqlite, |s| s.demo = true).await;
    let refused = raw_http(secret.port, "POST", "/demo/token", body(), "").await;
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (403, Some("forbidden")));
    secret.stop().await;

    let dev = spawn_with(Db::Sqlite, |s| {
        s.demo = true;
        s.jwt_secret = None;
    })
    .await;
    let minted = raw_http(dev.port, "POST", "/demo/token", body(), "").await;
    assert_eq!(minted.status, 200, "{:?}", minted.body);
    let token = minted.body["token"].as_str().expect("a token");
    assert_eq!(Authenticator::new(DEV_SECRET).verify(token).expect("valid").user.to_string(), "alice");
    for header in ["X-Forwarded-For: 203.0.113.9\r\n", "Forwarded: for=203.0.113.9\r\n", "X-Real-IP: 203.0.113.9\r\n"] {
        assert_eq!(raw_http(dev.port, "POST", "/demo/token", body(), header).await.status, 403, "{header}");
    }
    for bad in [json!({"user_id": ""}), json!({"user": "alice"}), json!({"user_id": "a\u{0}b"})] {
        let answer = raw_http(dev.port, "POST", "/demo/token", Some(bad.to_string()), "").await;
        assert_eq!((answer.status, answer.body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}");
    }
    dev.stop().await;
}
