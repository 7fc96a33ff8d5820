//! HTTP routes: the WebSocket upgrade, health, readiness, metrics, the server API and, when
//! enabled, the web demo.

pub mod api;
mod demo;
mod health;
mod socketio;
mod websocket;

use std::sync::Arc;

use actix_web::web;

use crate::runtime::Node;

/// The main bind's routes; the server API among them unless it has a bind of its own.
pub fn routes(node: Arc<Node>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if node.settings.api_bind.is_none() {
            api::configure(&node, cfg);
        }
        if node.settings.demo {
            demo::configure(cfg);
        }
        cfg.app_data(web::Data::from(node))
            .route("/ws", web::get().to(websocket::upgrade))
            .route("/socket.io/", web::route().to(socketio::upgrade))
            .route("/socket.io", web::route().to(socketio::upgrade))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route("/metrics", web::get().to(health::metrics));
    }
}

/// The routes of the server API's own bind (`SWITCHBOARD_API_BIND`).
pub fn api_routes(node: Arc<Node>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        api::configure(&node, cfg);
        cfg.app_data(web::Data::from(node));
    }
}
