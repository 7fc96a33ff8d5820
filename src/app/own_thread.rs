//! A node with one worker serves its connections on its own thread, the one its hub, rooms and
//! message writer run on: a message is then read, committed, fanned out and written without
//! crossing threads. actix-server always runs its workers on threads of their own, and at a
//! light load waking a thread costs more than the work it is woken for, so for one worker the
//! node accepts and serves its port itself, with actix-web's own HTTP service.

use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_service::{IntoServiceFactory, ServiceFactoryExt, map_config};
use actix_web::App;
use actix_web::dev::{AppConfig, Service, ServiceFactory};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::runtime::Node;

/// How long the loop waits after a failed accept (out of file descriptors, most often) before
/// the next: long enough for connections to close, short enough not to leave clients waiting.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// HTTP timeouts, as actix-web's `HttpServer` sets them: a request's head must arrive within
/// `REQUEST`, an idle keep-alive connection closes after `KEEP_ALIVE`, and a closing one is
/// given `DISCONNECT` to shut down.
const REQUEST: Duration = Duration::from_secs(5);
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const DISCONNECT: Duration = Duration::from_secs(1);

/// The node's port, served on this thread.
pub struct OwnThread {
    stop: Arc<Notify>,
    connections: TaskTracker,
}

impl OwnThread {
    /// Starts serving `listener` on the current thread, which must be an actix one: the
    /// accept loop and every accepted connection are tasks of their own there.
    pub async fn serve(listener: TcpListener, node: Arc<Node>) -> anyhow::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = actix_rt::net::TcpListener::from_std(listener)?;
        let app = App::new().configure(crate::http::routes(node));
        // The node builds no URLs, so the app's configuration (host, local address) is the default.
        let service = actix_http::HttpService::build()
            .client_request_timeout(REQUEST)
            .keep_alive(KEEP_ALIVE)
            .client_disconnect_timeout(DISCONNECT)
            .finish(map_config(app.into_factory().map_err(|e: actix_web::Error| e.error_response()), |_| {
                AppConfig::default()
            }))
            .tcp()
            .new_service(())
            .await
            .map_err(|()| anyhow::anyhow!("the HTTP service did not start"))?;
        let stop = Arc::new(Notify::new());
        let connections = TaskTracker::new();
        actix_rt::spawn(accept(listener, Rc::new(service), stop.clone(), connections.clone()));
        Ok(Self { stop, connections })
    }

    /// Takes no more connections.
    pub fn stop_accepting(&self) {
        self.stop.notify_one();
        self.connections.close();
    }

    /// Waits until every connection has ended or `grace` has passed; how many were still
    /// open then (the runtime's end drops them).
    pub async fn drained(self, grace: Duration) -> usize {
        let _ = tokio::time::timeout(grace, self.connections.wait()).await;
        self.connections.len()
    }
}

/// Accepts until stopped; each connection is served by `service` in a task of its own.
async fn accept<S>(listener: actix_rt::net::TcpListener, service: Rc<S>, stop: Arc<Notify>, connections: TaskTracker)
where
    S: Service<actix_rt::net::TcpStream> + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                // actix leaves Nagle on: a push written while the previous one is
                // unacknowledged would wait for the client's delayed ACK (40 ms on Linux).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted socket");
                }
                let service = service.clone();
                connections.spawn_local(async move {
                    // A connection's end, clean or not, is its own business (actix-server
                    // likewise drops the dispatcher's error).
                    let _ = service.call(stream).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
