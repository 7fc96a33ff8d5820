//! The web demo at `/demo/` (`SWITCHBOARD_DEMO`): files embedded in the binary, served by exact
//! name from a fixed table (no path reaches the file system), and `POST /demo/token`, which
//! mints a token only with the development secret for a caller on this machine.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::domain::UserId;
use crate::runtime::Node;
use crate::store::Profile;

/// Lifetime of a token the demo mints; the page mints a new one when it runs out.
const TOKEN_TTL_SECS: u64 = 12 * 3600;

/// What the page may load: itself, its scripts and styles, and sockets to this host.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
     media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

macro_rules! asset {
    ($path:literal) => {
        ($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/assets/", $path)) as &[u8])
    };
}

/// Every file under `demo/assets/`, by its path there (a test keeps the two in step).
const ASSETS: &[(&str, &[u8])] = &[
    asset!("index.html"),
    asset!("style.css"),
    asset!("app.js"),
    asset!("dom.js"),
    asset!("chat.js"),
    asset!("call.js"),
    asset!("live.js"),
    asset!("vendor/switchboard/index.js"),
    asset!("vendor/switchboard/client.js"),
    asset!("vendor/switchboard/connection.js"),
    asset!("vendor/switchboard/options.js"),
    asset!("vendor/switchboard/resync.js"),
    asset!("vendor/switchboard/sends.js"),
    asset!("vendor/switchboard/calls.js"),
    asset!("vendor/switchboard/backoff.js"),
    asset!("vendor/switchboard/emitter.js"),
    asset!("vendor/switchboard/errors.js"),
    asset!("vendor/switchboard/types.js"),
];

/// The demo's routes, on the main bind.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/demo", web::get().to(to_index))
        .route("/demo/token", web::post().to(token))
        .route("/demo/{file:.*}", web::get().to(file));
}

async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/demo/")).finish()
}

async fn file(path: web::Path<String>) -> HttpResponse {
    let name = path.into_inner();
    let name = if name.is_empty() { "index.html" } else { name.as_str() };
    let Some((_, bytes)) = ASSETS.iter().find(|(asset, _)| *asset == name) else {
        return error(HttpResponse::NotFound(), "not_found", "no such file in the demo");
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type(name))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if name.ends_with(".html") {
        response.insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY));
    }
    response.body(*bytes)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    user_id: String,
}

/// `POST /demo/token {"user_id"}` → `{"token"}`; 403 unless [`may_mint`].
async fn token(req: HttpRequest, body: web::Bytes, node: web::Data<Node>) -> HttpResponse {
    if !may_mint(&req, &node) {
        return error(
            HttpResponse::Forbidden(),
            "forbidden",
            "this node mints demo tokens only with the development secret, for requests from this machine: \
             paste a token from your back end",
        );
    }
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return error(HttpResponse::BadRequest(), "bad_request", "expected {\"user_id\": \"…\"}"),
    };
    let user = match UserId::parse(request.user_id.trim()) {
        Ok(user) => user,
        Err(e) => return error(HttpResponse::BadRequest(), "bad_request", &e.to_string()),
    };
    let token = node.auth.mint(&user, &Profile::default(), TOKEN_TTL_SECS);
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"token": token, "user_id": user.to_string()}))
}

/// Minting for anyone is safe only where anyone could mint anyway: the public development
/// secret, a caller on the loopback interface, and no proxy in between (a proxy on this host
/// would make remote callers look local).
fn may_mint(req: &HttpRequest, node: &Node) -> bool {
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|name| req.headers().contains_key(*name));
    let local = req.peer_addr().is_some_and(|addr| addr.ip().to_canonical().is_loopback());
    node.settings.jwt_secret.is_none() && local && !proxied
}

fn error(mut response: actix_web::HttpResponseBuilder, code: &str, message: &str) -> HttpResponse {
    response.json(serde_json::json!({"error": {"code": code, "message": message}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_asset_file_is_embedded_and_typed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/assets");
        let mut on_disk = Vec::new();
        files_under(&root, "", &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|(name, _)| (*name).to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "list every file of demo/assets/ in ASSETS, and only those");
        for (name, _) in ASSETS {
            assert_ne!(content_type(name), "application/octet-stream", "{name} has no content type");
        }
    }
}
