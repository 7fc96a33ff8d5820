//! HTTP routes: the WebSocket upgrade, health, readiness and metrics.

mod health;
mod socketio;
mod websocket;

use std::sync::Arc;

use actix_web::web;

use crate::runtime::Node;

pub fn routes(node: Arc<Node>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(node))
            .route("/ws", web::get().to(websocket::upgrade))
            .route("/socket.io/", web::route().to(socketio::upgrade))
            .route("/socket.io", web::route().to(socketio::upgrade))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route("/metrics", web::get().to(health::metrics));
    }
}
