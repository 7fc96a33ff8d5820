//! Prometheus metrics for one node, rendered at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub frames_in: IntCounterVec,
    pub frames_out: IntCounterVec,
    pub errors: IntCounterVec,
    pub write_batch_size: Histogram,
    pub commit_seconds: Histogram,
    /// Batches written again because the database refused a resent message.
    pub write_resend_retries: IntCounter,
    /// Messages not written because their sender had been answered `unavailable` already.
    pub write_abandoned: IntCounter,
    /// Connects, presence changes or room loads per lifecycle batch, by `kind`.
    pub lifecycle_batch_size: HistogramVec,
    pub lifecycle_seconds: HistogramVec,
    /// Frames not queued because a connection's outbound queue was full.
    pub outbound_dropped: IntCounter,
    /// Connections closed with 1013 for reading too slowly.
    pub slow_closes: IntCounter,
    /// Messages replayed to recovering Socket.IO connections.
    pub socketio_replayed: IntCounter,
    pub bus_published: IntCounter,
    pub bus_received: IntCounter,
    pub subscriptions: IntGauge,
    /// Envelopes not sent to Redis (queue full or Redis unreachable).
    pub bus_dropped: IntCounter,
    pub redis: RedisLinkMetrics,
    pub redis_reconnects: IntCounter,
    /// Upgrades and logins refused or connections closed by admission rules, by `reason`
    /// (`origin`, `node_full`, `address_full`, `user_full`, `login_timeout`, `token_expired`).
    pub refused: IntCounterVec,
    pub webhooks: WebhookMetrics,
}

impl Metrics {
    pub fn new(node: &str) -> Self {
        let registry =
            Registry::new_custom(Some("switchboard".into()), Some([("node".to_owned(), node.to_owned())].into()))
                .expect("valid registry labels");
        let r = &registry;
        Self {
            connections: add(r, IntGauge::new("connections", "Open WebSocket connections")),
            frames_in: add(
                r,
                IntCounterVec::new(Opts::new("frames_in_total", "Frames received, by event"), &["event"]),
            ),
            frames_out: add(r, IntCounterVec::new(Opts::new("frames_out_total", "Frames sent, by event"), &["event"])),
            errors: add(r, IntCounterVec::new(Opts::new("errors_total", "Error replies, by code"), &["code"])),
            write_batch_size: add(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("write_batch_size", "Messages per group commit").buckets(size_buckets()),
                ),
            ),
            commit_seconds: add(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("commit_seconds", "Group commit latency").buckets(second_buckets()),
                ),
            ),
            write_resend_retries: add(
                r,
                IntCounter::new(
                    "write_resend_retries_total",
                    "Message batches written again after finding a resent message already stored",
                ),
            ),
            write_abandoned: add(
                r,
                IntCounter::new(
                    "write_abandoned_total",
                    "Messages dropped before writing: the database had not answered in time and the sender was told so",
                ),
            ),
            lifecycle_batch_size: add(
                r,
                HistogramVec::new(
                    HistogramOpts::new("lifecycle_batch_size", "Items per lifecycle batch, by kind")
                        .buckets(size_buckets()),
                    &["kind"],
                ),
            ),
            lifecycle_seconds: add(
                r,
                HistogramVec::new(
                    HistogramOpts::new("lifecycle_seconds", "Lifecycle batch latency").buckets(second_buckets()),
                    &["kind"],
                ),
            ),
            outbound_dropped: add(
                r,
                IntCounter::new("outbound_dropped_total", "Frames dropped for a full outbound queue"),
            ),
            slow_closes: add(r, IntCounter::new("slow_consumer_closes_total", "Connections closed with 1013")),
            socketio_replayed: add(r, IntCounter::new("socketio_replayed_messages_total", "Messages replayed")),
            bus_published: add(r, IntCounter::new("bus_published_total", "Envelopes published on the bus")),
            bus_received: add(r, IntCounter::new("bus_received_total", "Envelopes received from the bus")),
            subscriptions: add(r, IntGauge::new("bus_subscriptions", "Bus topics this node subscribes to")),
            bus_dropped: add(r, IntCounter::new("bus_dropped_total", "Envelopes not sent to Redis")),
            redis: RedisLinkMetrics::new(r),
            redis_reconnects: add(r, IntCounter::new("redis_reconnects_total", "Redis subscription connection losses")),
            refused: add(
                r,
                IntCounterVec::new(
                    Opts::new("connections_refused_total", "Connections refused by admission rules, by reason"),
                    &["reason"],
                ),
            ),
            webhooks: WebhookMetrics::new(r),
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding into memory cannot fail");
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Buckets of batch sizes.
fn size_buckets() -> Vec<f64> {
    vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
}

/// Buckets of latencies, 0.5 ms to 4 s.
fn second_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")
}

/// The webhook outbox's metrics.
pub struct WebhookMetrics {
    /// Webhook outbox rows by `state` (`pending`, `failed`), cluster-wide (every node reads
    /// the shared outbox).
    pub outbox: IntGaugeVec,
    /// Webhook delivery attempts by `outcome` (`delivered`, `retried`, `failed`).
    pub deliveries: IntCounterVec,
    /// Webhook events never written to the outbox, by `reason` (`queue_full`, `store`).
    pub dropped: IntCounterVec,
    /// Time from sending a webhook to its receiver's answer.
    pub seconds: Histogram,
}

/// What this node's Redis link carries: messages read from its subscriptions (its own echoes
/// included) and their bytes, and bytes published. Divided by the messages addressed to this
/// node's users, the first shows what targeted delivery saves.
pub struct RedisLinkMetrics {
    pub received: IntCounter,
    pub received_bytes: IntCounter,
    pub published_bytes: IntCounter,
}

impl RedisLinkMetrics {
    fn new(r: &Registry) -> Self {
        Self {
            received: add(r, IntCounter::new("redis_received_total", "Messages read from Redis subscriptions")),
            received_bytes: add(
                r,
                IntCounter::new("redis_received_bytes_total", "Payload bytes read from Redis subscriptions"),
            ),
            published_bytes: add(r, IntCounter::new("redis_published_bytes_total", "Payload bytes published")),
        }
    }
}

impl WebhookMetrics {
    fn new(r: &Registry) -> Self {
        Self {
            outbox: add(
                r,
                IntGaugeVec::new(Opts::new("webhook_outbox", "Webhook outbox events, by state"), &["state"]),
            ),
            deliveries: add(
                r,
                IntCounterVec::new(
                    Opts::new("webhook_deliveries_total", "Webhook delivery attempts, by outcome"),
                    &["outcome"],
                ),
            ),
            dropped: add(
                r,
                IntCounterVec::new(
                    Opts::new("webhook_dropped_total", "Webhook events not written to the outbox, by reason"),
                    &["reason"],
                ),
            ),
            seconds: add(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("webhook_seconds", "Webhook delivery latency, to the receiver's answer")
                        .buckets(prometheus::exponential_buckets(0.005, 2.0, 12).expect("valid buckets")),
                ),
            ),
        }
    }
}

/// Registers `metric` with `registry` and returns it: every metric is registered where it is
/// made, so none can be left out of the exposition.
fn add<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<C>) -> C {
    let metric = metric.expect("metric options are valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}
