//! Start-up and shutdown: builds a node from its settings, binds (port 0 works, for tests),
//! serves until SIGTERM/SIGINT or a shutdown handle fires, then drains gracefully.

mod own_thread;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::{App, HttpServer, dev::Server};
use anyhow::Context as _;
use tokio::sync::{Notify, mpsc};

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::bus::{Bus, LocalBus, RedisBus};
use crate::config::{Settings, redact};
use crate::domain::NodeId;
use crate::metrics::Metrics;
use crate::presence::{LocalPresence, PresenceDirectory, PresenceNews, RedisPresence};
use crate::redis_link::Commands;
use crate::runtime::hub::{CameBack, CloseAll, WentOffline};
use crate::runtime::webhooks::Delivery;
use crate::runtime::{CallSweeper, Hub, Node, revocations};
use crate::service::{CallDevices, Services, UserLimits, Webhooks};
use crate::store::{Backend, Batching, Lifecycle, MessageWriter, Store};
use own_thread::OwnThread;

pub struct Application {
    serving: Serving,
    /// The server API's own server, on `SWITCHBOARD_API_BIND`.
    api_server: Option<(Server, u16)>,
    port: u16,
    node: Arc<Node>,
    shutdown: Arc<Notify>,
    /// Webhook delivery, when webhooks are on.
    delivery: Option<Delivery>,
}

/// Who serves the node's port.
enum Serving {
    /// actix-server's workers, each on a thread of its own.
    Workers(Server),
    /// The node itself, on its own thread (one worker).
    OwnThread(OwnThread),
}

/// Triggers the same graceful shutdown as SIGTERM.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Notify>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.notify_one();
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        if settings.jwt_secret.is_none() {
            tracing::warn!(
                "SWITCHBOARD_JWT_SECRET is not set: tokens are signed with the PUBLIC DEVELOPMENT SECRET. \
                 Anyone can mint tokens for any user. Never run this way in production."
            );
        }
        let node = settings.node_id.clone().map(NodeId::new).unwrap_or_else(NodeId::random);
        let metrics = Arc::new(Metrics::new(node.as_str()));
        let store = open_store(&settings).await?;
        let writer = MessageWriter::start(
            store.clone(),
            Batching { max: settings.write_batch_max, window: Duration::from_millis(settings.write_batch_window_ms) },
            settings.write_queue,
            metrics.clone(),
        );
        let lifecycle =
            Lifecycle::start(store.clone(), settings.lifecycle_batch_max, settings.lifecycle_queue, metrics.clone());
        let auth = Authenticator::new(settings.jwt_secret());
        let (news_sender, news) = mpsc::unbounded_channel();
        let (bus, presence, redis) = connect_cluster(&settings, &node, &store, &metrics, news_sender).await?;
        let admission =
            Arc::new(Admission::new(&settings, default_max_connections(), presence.clone(), metrics.clone()));
        tracing::info!(max_connections = admission.max_connections(), "connection caps set");
        let listener = TcpListener::bind(settings.bind).with_context(|| format!("binding {}", settings.bind))?;
        set_send_timeout(&listener, settings.send_timeout())?;
        let address = listener.local_addr()?;
        let grace = settings.shutdown_grace();
        let limits = UserLimits::new(&settings.user_limits);
        let webhooks = Webhooks::start(&settings, store.clone(), presence.clone(), metrics.clone());
        let mut hub_address = None;
        let services = Hub::start_with(|hub| {
            hub_address = Some(hub.clone());
            Arc::new(Services {
                settings,
                node,
                store,
                writer,
                lifecycle,
                call_devices: CallDevices::default(),
                bus,
                presence,
                metrics,
                limits,
                webhooks,
                actors: Arc::new(hub),
            })
        });
        let hub = hub_address.context("the hub starts at once")?;
        let node = Arc::new(Node {
            services,
            hub,
            auth,
            admission,
            connections: Default::default(),
            asks: Default::default(),
            redis,
        });
        crate::runtime::operator::Desk::start(&node);
        tokio::spawn(forward_presence_news(news, node.hub.clone()));
        revocations::load(&node).await.context("reading token revocations")?;
        tokio::spawn(revocations::watch(node.clone()));
        CallSweeper::new(node.services.clone()).start();
        let delivery = Delivery::start(node.services.clone());
        let workers = node.settings.workers();
        let serving = if workers == 1 {
            Serving::OwnThread(OwnThread::serve(listener, node.clone()).await?)
        } else {
            let routes = node.clone();
            let server = HttpServer::new(move || App::new().configure(crate::http::routes(routes.clone())))
                .workers(workers)
                // actix leaves Nagle on: a push written while the previous one is unacknowledged
                // would wait for the client's delayed ACK (40 ms on Linux).
                .tcp_nodelay(true)
                .listen(listener)?
                .disable_signals()
                .shutdown_timeout(grace.as_secs())
                .run();
            Serving::Workers(server)
        };
        tracing::info!(node = %node.node, workers, "listening on {address}");
        let api_server = serve_api(&node)?;
        Ok(Self { serving, api_server, port: address.port(), node, shutdown: Arc::new(Notify::new()), delivery })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server API's port: its own bind's, or the main one.
    pub fn api_port(&self) -> u16 {
        self.api_server.as_ref().map_or(self.port, |(_, port)| *port)
    }

    /// The node's runtime and services: in-process harnesses (the `dialect_inbound` fuzzer)
    /// register connections with its hub and run commands as a connection would, without a
    /// socket.
    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Serves until a signal or the shutdown handle, then: stop accepting, close every
    /// connection with 1012 (clients reconnect elsewhere), wait for them, and commit every
    /// queued message before returning.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { serving, api_server, node, shutdown, delivery, .. } = self;
        let api_handle = api_server.map(|(api, _)| {
            let handle = api.handle();
            actix_web::rt::spawn(api);
            handle
        });
        match serving {
            Serving::Workers(server) => {
                let handle = server.handle();
                let mut server = std::pin::pin!(server);
                tokio::select! {
                    result = &mut server => return Ok(result?),
                    _ = shutdown.notified() => {}
                    _ = terminate_signal() => {}
                }
                tracing::info!("shutting down: draining connections");
                // The stop command is sent now; the server future (polled below) carries it
                // out: no new connections, then wait up to the grace period for open ones.
                drop(handle.stop(true));
                stop_api(api_handle);
                ask_to_reconnect(&node).await;
                server.await?;
            }
            Serving::OwnThread(own) => {
                tokio::select! {
                    _ = shutdown.notified() => {}
                    _ = terminate_signal() => {}
                }
                tracing::info!("shutting down: draining connections");
                own.stop_accepting();
                stop_api(api_handle);
                ask_to_reconnect(&node).await;
                let left = own.drained(node.settings.shutdown_grace()).await;
                if left > 0 {
                    tracing::warn!(left, "connections still open at the end of the grace period are dropped");
                }
            }
        }
        node.writer.flush().await;
        node.webhooks.flush().await;
        if let Some(delivery) = delivery {
            delivery.stop().await;
        }
        node.presence.retire().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The server API's own server stops taking connections and ends once its open ones have.
fn stop_api(api: Option<actix_web::dev::ServerHandle>) {
    if let Some(api) = api {
        drop(api.stop(true));
    }
}

/// Every connection is closed with 1012: its client reconnects elsewhere.
async fn ask_to_reconnect(node: &Node) {
    let open = node.hub.send(CloseAll).await.unwrap_or(0);
    tracing::info!(open, "asked connections to reconnect elsewhere");
}

/// The server API's own server when it has a bind of its own (and a key); its port. Starts the
/// idempotency keys' sweeper whenever the API is on.
fn serve_api(node: &Arc<Node>) -> anyhow::Result<Option<(Server, u16)>> {
    if node.settings.api_key.is_none() {
        return Ok(None);
    }
    crate::http::api::sweep_idempotency_keys(node.clone());
    let Some(bind) = node.settings.api_bind else { return Ok(None) };
    let listener = TcpListener::bind(bind).with_context(|| format!("binding the server API to {bind}"))?;
    set_send_timeout(&listener, node.settings.send_timeout())?;
    let port = listener.local_addr()?.port();
    let routes = node.clone();
    let server = HttpServer::new(move || App::new().configure(crate::http::api_routes(routes.clone())))
        .workers(1)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(node.settings.shutdown_grace().as_secs())
        .run();
    tracing::info!("server API listening on {bind}");
    Ok(Some((server, port)))
}

/// Sockets accepted from `listener` inherit its `TCP_USER_TIMEOUT`: the kernel drops one whose
/// client has not taken written data for `timeout`, which ends its connection. A client that
/// never reads otherwise holds its socket (and the server's buffers) for ever.
#[cfg(target_os = "linux")]
fn set_send_timeout(listener: &TcpListener, timeout: Option<Duration>) -> std::io::Result<()> {
    socket2::SockRef::from(listener).set_tcp_user_timeout(timeout)
}

#[cfg(not(target_os = "linux"))]
fn set_send_timeout(_: &TcpListener, _: Option<Duration>) -> std::io::Result<()> {
    Ok(())
}

/// The database, migrated; positions stored before they were snapped (or on a finer grid)
/// are moved to their cell's centre in the background (nearby answers snap them as they
/// read them anyway).
async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let backend = Backend::from_url(&settings.database_url)?;
    let store = Store::connect(&backend, settings.db_pool)
        .await
        .with_context(|| format!("connecting to {}", redact(&settings.database_url)))?;
    let (resnap, grid) = (store.clone(), settings.location_grid());
    tokio::spawn(async move {
        match resnap.snap_stored_locations(grid).await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, metres = grid.metres(), "stored positions snapped to the grid"),
            Err(e) => tracing::warn!(error = %e, "could not snap stored positions to the grid"),
        }
    });
    Ok(store)
}

type Cluster = (Arc<dyn Bus>, Arc<dyn PresenceDirectory>, Option<Commands>);

/// The bus and presence: in-process on a single node, Redis in cluster mode (which must
/// answer at start-up). What cluster presence learns by itself goes to `news`.
async fn connect_cluster(
    settings: &Settings,
    node: &NodeId,
    store: &Store,
    metrics: &Arc<Metrics>,
    news: mpsc::UnboundedSender<PresenceNews>,
) -> anyhow::Result<Cluster> {
    let Some(target) = settings.redis_target() else {
        // A single node starts with nobody connected: calls left going by an earlier run end
        // after the grace period.
        store.mark_all_call_parties_away(crate::domain::Timestamp::now()).await?;
        return Ok((Arc::new(LocalBus::new(node.clone(), metrics.clone())), Arc::new(LocalPresence::default()), None));
    };
    let (bus, redis) =
        RedisBus::connect(&target, &settings.redis_prefix, node.clone(), settings.bus_queue, metrics.clone())
            .await
            .with_context(|| format!("connecting to Redis at {}", target.describe()))?;
    let presence = RedisPresence::start(redis.clone(), &settings.redis_prefix, node, settings.node_ttl(), news)
        .await
        .context("starting cluster presence")?;
    tracing::info!(%node, redis = target.describe(), "cluster mode: nodes bridged by Redis");
    Ok((bus, Arc::new(presence), Some(redis)))
}

/// The node's connection cap when none is set: 90 % of the open files this process may hold
/// (raised to its hard limit first), leaving the rest for the database, Redis and logs.
fn default_max_connections() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read the open-file limit; assuming 1024");
        1024
    });
    usize::try_from(limit / 10 * 9).unwrap_or(usize::MAX)
}

/// What cluster presence learned by itself goes to the hub to announce.
async fn forward_presence_news(mut news: mpsc::UnboundedReceiver<PresenceNews>, hub: actix::Addr<Hub>) {
    while let Some(news) = news.recv().await {
        match news {
            PresenceNews::WentOffline(user) => hub.do_send(WentOffline { user }),
            PresenceNews::CameBack(user) => hub.do_send(CameBack { user }),
        }
    }
}

async fn terminate_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
