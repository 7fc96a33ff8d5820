//! Prometheus metrics for one node, rendered at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
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
    pub bus_published: IntCounter,
    pub bus_received: IntCounter,
    pub subscriptions: IntGauge,
    /// Envelopes not sent to Redis (queue full or Redis unreachable).
    pub bus_dropped: IntCounter,
    pub redis_reconnects: IntCounter,
    /// Upgrades and logins refused or connections closed by admission rules, by `reason`
    /// (`origin`, `node_full`, `address_full`, `user_full`, `login_timeout`, `token_expired`).
    pub refused: IntCounterVec,
}

impl Metrics {
    pub fn new(node: &str) -> Self {
        let registry =
            Registry::new_custom(Some("switchboard".into()), Some([("node".to_owned(), node.to_owned())].into()))
                .expect("valid registry labels");
        let metrics = Self {
            connections: IntGauge::new("connections", "Open WebSocket connections").unwrap(),
            frames_in: IntCounterVec::new(Opts::new("frames_in_total", "Frames received, by event"), &["event"])
                .unwrap(),
            frames_out: IntCounterVec::new(Opts::new("frames_out_total", "Frames sent, by event"), &["event"]).unwrap(),
            errors: IntCounterVec::new(Opts::new("errors_total", "Error replies, by code"), &["code"]).unwrap(),
            write_batch_size: Histogram::with_opts(
                HistogramOpts::new("write_batch_size", "Messages per group commit")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            )
            .unwrap(),
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new("commit_seconds", "Group commit latency")
                    .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).unwrap()),
            )
            .unwrap(),
            write_resend_retries: IntCounter::new(
                "write_resend_retries_total",
                "Message batches written again after finding a resent message already stored",
            )
            .unwrap(),
            write_abandoned: IntCounter::new(
                "write_abandoned_total",
                "Messages dropped before writing: the database had not answered in time and the sender was told so",
            )
            .unwrap(),
            lifecycle_batch_size: HistogramVec::new(
                HistogramOpts::new(
                    "lifecycle_batch_size",
                    "Connects, presence changes or room loads per lifecycle batch",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
                &["kind"],
            )
            .unwrap(),
            lifecycle_seconds: HistogramVec::new(
                HistogramOpts::new("lifecycle_seconds", "Lifecycle batch latency")
                    .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).unwrap()),
                &["kind"],
            )
            .unwrap(),
            outbound_dropped: IntCounter::new("outbound_dropped_total", "Frames dropped for a full outbound queue")
                .unwrap(),
            slow_closes: IntCounter::new("slow_consumer_closes_total", "Connections closed with 1013").unwrap(),
            bus_published: IntCounter::new("bus_published_total", "Envelopes published on the bus").unwrap(),
            bus_received: IntCounter::new("bus_received_total", "Envelopes received from the bus").unwrap(),
            subscriptions: IntGauge::new("bus_subscriptions", "Bus topics this node subscribes to").unwrap(),
            bus_dropped: IntCounter::new("bus_dropped_total", "Envelopes not sent to Redis").unwrap(),
            redis_reconnects: IntCounter::new("redis_reconnects_total", "Redis subscription connection losses")
                .unwrap(),
            refused: IntCounterVec::new(
                Opts::new("connections_refused_total", "Connections refused or closed by admission rules, by reason"),
                &["reason"],
            )
            .unwrap(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.connections.clone()),
            Box::new(metrics.frames_in.clone()),
            Box::new(metrics.frames_out.clone()),
            Box::new(metrics.errors.clone()),
            Box::new(metrics.write_batch_size.clone()),
            Box::new(metrics.commit_seconds.clone()),
            Box::new(metrics.write_resend_retries.clone()),
            Box::new(metrics.write_abandoned.clone()),
            Box::new(metrics.lifecycle_batch_size.clone()),
            Box::new(metrics.lifecycle_seconds.clone()),
            Box::new(metrics.outbound_dropped.clone()),
            Box::new(metrics.slow_closes.clone()),
            Box::new(metrics.bus_published.clone()),
            Box::new(metrics.bus_received.clone()),
            Box::new(metrics.subscriptions.clone()),
            Box::new(metrics.bus_dropped.clone()),
            Box::new(metrics.redis_reconnects.clone()),
            Box::new(metrics.refused.clone()),
        ];
        for collector in collectors {
            metrics.registry.register(collector).expect("metric names are unique");
        }
        metrics
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding into memory cannot fail");
        String::from_utf8(buffer).unwrap_or_default()
    }
}
