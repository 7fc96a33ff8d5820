//! Typed settings, read from the command line or `SWITCHBOARD_*` environment variables at
//! start-up (clap); a bad value stops the process before it serves anything.

use std::net::SocketAddr;
use std::time::Duration;

use std::collections::BTreeSet;

use clap::Args;

use crate::domain::{EventType, LocationGrid};
use crate::wire::Api;

mod limits;
mod proxy;
mod secret;

pub use limits::UserLimitSettings;
pub use proxy::ClientIpHeader;
pub use secret::Secret;
use secret::{parse_api_key, parse_webhook_secret};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans), for log shippers.
    Json,
}

/// Signs tokens when no secret is configured: fine on a laptop, refused on a public bind.
pub const DEV_SECRET: &str = "switchboard-dev-secret-never-use-in-production";

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Listen address.
    #[arg(long, env = "SWITCHBOARD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// `sqlite://PATH` (embedded, the default) or `postgres://…` (production, clusters).
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", default_value = "sqlite://switchboard.db")]
    pub database_url: String,

    /// `redis://…` turns on cluster mode: nodes bridged by Redis pub/sub.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,

    /// A Redis Cluster instead (Redis 7+, sharded pub/sub): some of its nodes, comma-separated
    /// (`redis://h1:6379,redis://h2:6379`); the others are discovered.
    #[arg(long, env = "SWITCHBOARD_REDIS_CLUSTER_NODES", value_delimiter = ',', conflicts_with = "redis_url")]
    pub redis_cluster_nodes: Vec<String>,

    /// Prefix of every Redis key and channel (several clusters can share one Redis).
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "sb")]
    pub redis_prefix: String,

    /// Pushes waiting to be published to Redis before new ones are dropped; the other nodes
    /// read the messages of a room whose push was dropped from the store once Redis takes
    /// publishes again.
    #[arg(long, env = "SWITCHBOARD_BUS_QUEUE", default_value_t = 65_536)]
    pub bus_queue: usize,

    /// Seconds without a heartbeat after which a node counts as dead and its users offline.
    #[arg(long, env = "SWITCHBOARD_NODE_TTL_SECS", default_value_t = 15)]
    pub node_ttl_secs: u64,

    /// HS256 secret shared with the app backend that issues tokens.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Key of the server API (`Authorization: Bearer …` on `/api/v1/`); the API is off
    /// without one.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<Secret>,

    /// Serve the server API on this address only (not on the main bind).
    #[arg(long, env = "SWITCHBOARD_API_BIND")]
    pub api_bind: Option<SocketAddr>,

    /// Serve the web demo at `/demo/` (its token endpoint mints only with the development
    /// secret, for loopback callers).
    #[arg(
        long,
        env = "SWITCHBOARD_DEMO",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub demo: bool,

    /// This node's name in logs, metrics and presence (random when unset).
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,

    /// `text` for a terminal, `json` for log shippers (one JSON object per line).
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The API dialect a connection gets when it names none.
    #[arg(long, env = "SWITCHBOARD_DEFAULT_API", default_value = "native", value_parser = parse_api)]
    pub default_api: Api,

    /// Largest inbound WebSocket frame, in bytes; a larger one closes with 1009.
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Largest message body, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Frames a connection may send per second, sustained.
    #[arg(long, env = "SWITCHBOARD_RATE_PER_SEC", default_value_t = 20)]
    pub rate_per_sec: u32,

    /// Frames a connection may send at once above the sustained rate.
    #[arg(long, env = "SWITCHBOARD_RATE_BURST", default_value_t = 50)]
    pub rate_burst: u32,

    /// Rate-limited frames allowed per 10 s before the connection is closed with 1008.
    #[arg(long, env = "SWITCHBOARD_FLOOD_STRIKES", default_value_t = 50)]
    pub flood_strikes: u32,

    /// Frames queued for one connection before it counts as too slow and closes with 1013.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,

    // --- connection admission ---
    /// Seconds a connection may stay unauthenticated (a Socket.IO client before its
    /// namespace connect, or after a refused one) before it is closed with 1008.
    #[arg(long, env = "SWITCHBOARD_LOGIN_TIMEOUT_SECS", default_value_t = 10)]
    pub login_timeout_secs: u64,

    /// Threads serving connections (unset: one per core this process may run on). With one,
    /// the node serves them on its own thread, beside its rooms and message writer, so that a
    /// message never crosses threads: the cheapest set-up for a node on one core.
    #[arg(long, env = "SWITCHBOARD_WORKERS")]
    pub workers: Option<usize>,

    /// Connections this node holds at most (unset: 90 % of the process's open-file limit);
    /// an upgrade past it gets HTTP 503.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Connections one source address may hold on this node, authenticated or not; an
    /// upgrade past it gets HTTP 429.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub max_connections_per_ip: usize,

    /// Connections one user may hold across the cluster; one more is refused (HTTP 429, or a
    /// Socket.IO connect error).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_USER", default_value_t = 10)]
    pub max_connections_per_user: usize,

    /// `Origin`s allowed to open a WebSocket from a browser, comma-separated (empty: any).
    /// A request without `Origin` (not a browser) is not affected.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',', default_value = "")]
    pub allowed_origins: Vec<String>,

    /// Proxies (addresses or CIDR blocks, comma-separated) whose `client_ip_header` names the
    /// client; from anyone else the peer address counts.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',', default_value = "")]
    pub trusted_proxies: Vec<String>,

    /// The header a trusted proxy names the client in: the one it writes itself, as a client
    /// may send either. Its last entry counts (a proxy appends to `X-Forwarded-For`).
    #[arg(long, env = "SWITCHBOARD_CLIENT_IP_HEADER", value_enum, default_value_t = ClientIpHeader::XForwardedFor)]
    pub client_ip_header: ClientIpHeader,

    /// Seconds between server pings.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,

    /// Seconds of client silence (no frame, no pong) before the connection is dropped.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_TIMEOUT_SECS", default_value_t = 45)]
    pub heartbeat_timeout_secs: u64,

    /// Seconds a socket may hold written data its client does not take (its receive window
    /// shut, or the network gone) before the kernel drops it (`TCP_USER_TIMEOUT`, Linux);
    /// 0 leaves the kernel's default, under which a shut window holds the socket for ever.
    /// Keep it at or above the heartbeat timeout, which a network gone for a while should
    /// meet first.
    #[arg(long, env = "SWITCHBOARD_SEND_TIMEOUT_SECS", default_value_t = 45)]
    pub send_timeout_secs: u64,

    /// Seconds after a Socket.IO v4 connection drops during which its client may recover it
    /// (missed messages replayed, `socket.recovered`); 0 turns recovery off.
    #[arg(long, env = "SWITCHBOARD_SOCKETIO_RECOVERY_SECS", default_value_t = 120)]
    pub socketio_recovery_secs: u64,

    /// Members a group may have besides its creator.
    #[arg(long, env = "SWITCHBOARD_GROUP_LIMIT", default_value_t = 8)]
    pub group_limit: usize,

    /// Seconds a call rings before it is missed.
    #[arg(long, env = "SWITCHBOARD_CALL_RING_SECS", default_value_t = 45)]
    pub call_ring_secs: u64,

    /// Seconds a call party may be gone (no connection anywhere) before they are dropped
    /// from the call as disconnected; reconnecting within it keeps the call.
    #[arg(long, env = "SWITCHBOARD_CALL_GRACE_SECS", default_value_t = 20)]
    pub call_grace_secs: u64,

    /// Most messages one group commit writes.
    #[arg(long, env = "SWITCHBOARD_WRITE_BATCH_MAX", default_value_t = 512)]
    pub write_batch_max: usize,

    /// Milliseconds a message may wait for others to join its group commit (0: none).
    #[arg(long, env = "SWITCHBOARD_WRITE_BATCH_WINDOW_MS", default_value_t = 2)]
    pub write_batch_window_ms: u64,

    /// Messages waiting for the writer before senders wait.
    #[arg(long, env = "SWITCHBOARD_WRITE_QUEUE", default_value_t = 8192)]
    pub write_queue: usize,

    /// Most connects, presence changes or room loads whose queries one lifecycle batch runs
    /// together.
    #[arg(long, env = "SWITCHBOARD_LIFECYCLE_BATCH_MAX", default_value_t = 512)]
    pub lifecycle_batch_max: usize,

    /// Connects (and, in queues of their own, presence changes and room loads) waiting for a
    /// lifecycle batch; a connect finding its queue full is refused (1011, the client
    /// reconnects); presence changes and room loads wait for room.
    #[arg(long, env = "SWITCHBOARD_LIFECYCLE_QUEUE", default_value_t = 16384)]
    pub lifecycle_queue: usize,

    /// Database connections per node.
    #[arg(long, env = "SWITCHBOARD_DB_POOL", default_value_t = 16)]
    pub db_pool: usize,

    /// Seconds a graceful shutdown waits for connections to close.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    // --- live sessions ---
    /// Seconds a live session waits for a host who lost every connection before it ends with
    /// `host_left` (also how long a viewer without connections stays counted).
    #[arg(long, env = "SWITCHBOARD_LIVE_HOST_GRACE_SECS", default_value_t = 30)]
    pub live_host_grace_secs: u64,

    /// Longest live comment, in characters.
    #[arg(long, env = "SWITCHBOARD_LIVE_COMMENT_MAX_CHARS", default_value_t = 500)]
    pub live_comment_max_chars: usize,

    /// Comments one user may post per second in one session, sustained (bursts of twice that).
    #[arg(long, env = "SWITCHBOARD_LIVE_COMMENT_RATE", default_value_t = 2)]
    pub live_comment_rate: u32,

    // --- social ---
    /// Metres: positions are stored only snapped to a grid whose cells are at least this
    /// many metres on each side, and nearby distances are rounded to it (100 to 100,000).
    #[arg(long, env = "SWITCHBOARD_LOCATION_PRECISION_M", default_value_t = 100)]
    pub location_precision_m: u32,

    #[command(flatten)]
    pub user_limits: UserLimitSettings,

    // --- webhooks (docs/webhooks.md) ---
    /// `https://…` (or `http://…`) of the app's back end that receives webhooks; unset: no
    /// webhooks, at no cost on the message path.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Signs every webhook (HMAC-SHA256), at least 32 bytes; required with the URL.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_webhook_secret)]
    pub webhook_secret: Option<Secret>,

    /// The event types sent, comma-separated; an unknown name refuses to start.
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOK_EVENTS",
        default_value = EventType::DEFAULT_LIST,
        value_parser = parse_event_types
    )]
    pub webhook_events: BTreeSet<EventType>,

    /// Milliseconds over which one recipient's `message.offline` events in one room collapse
    /// into one (with a count).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_COLLAPSE_MS", default_value_t = 3000)]
    pub webhook_collapse_ms: u64,

    /// Attempts per webhook before it is kept as failed (exponential backoff between them).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS", default_value_t = 12)]
    pub webhook_max_attempts: u32,

    /// Milliseconds before the first retry; each later one waits twice as long (tests shorten it).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_BACKOFF_MS", default_value_t = 1000, hide = true)]
    pub webhook_backoff_ms: u64,

    /// Characters of a text message's body in `message.offline` (0: none).
    #[arg(long, env = "SWITCHBOARD_PUSH_PREVIEW_CHARS", default_value_t = 100)]
    pub push_preview_chars: usize,
}

impl Settings {
    /// Threads serving connections: as set, or one per core this process may run on.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.heartbeat_timeout_secs.max(self.heartbeat_secs + 1))
    }

    /// Where Redis is, in cluster mode.
    pub fn redis_target(&self) -> Option<RedisTarget> {
        match &self.redis_url {
            Some(url) => Some(RedisTarget::Single(url.clone())),
            None if !self.redis_cluster_nodes.is_empty() => {
                Some(RedisTarget::Cluster(self.redis_cluster_nodes.clone()))
            }
            None => None,
        }
    }

    pub fn node_ttl(&self) -> Duration {
        Duration::from_secs(self.node_ttl_secs.max(3))
    }

    /// How long written data may wait on a client; `None` for the kernel's default.
    pub fn send_timeout(&self) -> Option<Duration> {
        (self.send_timeout_secs > 0).then(|| Duration::from_secs(self.send_timeout_secs))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn live_host_grace(&self) -> Duration {
        Duration::from_secs(self.live_host_grace_secs)
    }

    pub fn socketio_recovery(&self) -> Duration {
        Duration::from_secs(self.socketio_recovery_secs)
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }

    /// The browser origins allowed to connect; empty allows any.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.allowed_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty())
    }

    /// The trusted proxies, parsed (a bare address is a block of one).
    pub fn proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("SWITCHBOARD_TRUSTED_PROXIES: `{p}` is not an address or CIDR block"))
            })
            .collect()
    }

    /// The grid positions are snapped to; `validate` keeps its size in range.
    pub fn location_grid(&self) -> LocationGrid {
        LocationGrid::new(self.location_precision_m)
    }

    /// The configured secret, or the development one.
    pub fn jwt_secret(&self) -> &str {
        self.jwt_secret.as_ref().map(Secret::expose).unwrap_or(DEV_SECRET)
    }

    /// Whether webhooks are on (a URL is set); `validate` makes sure a secret comes with it.
    pub fn webhooks_on(&self) -> bool {
        self.webhook_url.is_some()
    }

    /// Checks what clap cannot: the combinations that must not start.
    pub fn validate(&self) -> Result<(), String> {
        if self.jwt_secret.is_none() && !self.bind.ip().is_loopback() {
            return Err(format!(
                "refusing to bind {} with the development JWT secret: set SWITCHBOARD_JWT_SECRET",
                self.bind
            ));
        }
        if let Some(bind) = self.api_bind
            && self.api_key.is_none()
            && !bind.ip().is_loopback()
        {
            return Err(format!("refusing to serve the server API on {bind} without a key: set SWITCHBOARD_API_KEY"));
        }
        if self.redis_target().is_some() && !self.database_url.starts_with("postgres") {
            return Err("cluster mode (SWITCHBOARD_REDIS_URL or SWITCHBOARD_REDIS_CLUSTER_NODES) needs a shared PostgreSQL database: \
                 set SWITCHBOARD_DATABASE_URL=postgres://… (SQLite is a single node's file)"
                .into());
        }
        if self.redis_prefix.contains(['{', '}']) {
            return Err("SWITCHBOARD_REDIS_PREFIX must not contain braces (keys carry their own hash tags)".into());
        }
        if self.max_frame_bytes < 1024 {
            return Err("SWITCHBOARD_MAX_FRAME_BYTES must be at least 1024".into());
        }
        if self.rate_per_sec == 0 || self.rate_burst == 0 || self.flood_strikes == 0 {
            return Err("rate limits must be positive".into());
        }
        if self.outbound_queue == 0 || self.write_queue == 0 || self.bus_queue == 0 {
            return Err(
                "SWITCHBOARD_OUTBOUND_QUEUE, SWITCHBOARD_WRITE_QUEUE and SWITCHBOARD_BUS_QUEUE must be positive".into(),
            );
        }
        if self.login_timeout_secs == 0 {
            return Err("SWITCHBOARD_LOGIN_TIMEOUT_SECS must be positive".into());
        }
        if self.workers == Some(0) {
            return Err("SWITCHBOARD_WORKERS must be positive".into());
        }
        if self.max_connections == Some(0) || self.max_connections_per_ip == 0 || self.max_connections_per_user == 0 {
            return Err("connection caps must be positive".into());
        }
        self.proxies()?;
        if self.live_comment_rate == 0 || self.live_comment_max_chars == 0 {
            return Err("SWITCHBOARD_LIVE_COMMENT_RATE and SWITCHBOARD_LIVE_COMMENT_MAX_CHARS must be positive".into());
        }
        if !(LocationGrid::MIN_METRES..=LocationGrid::MAX_METRES).contains(&self.location_precision_m) {
            return Err(format!(
                "SWITCHBOARD_LOCATION_PRECISION_M must be {} to {} (metres)",
                LocationGrid::MIN_METRES,
                LocationGrid::MAX_METRES
            ));
        }
        self.user_limits.validate()?;
        self.validate_webhooks()
    }

    fn validate_webhooks(&self) -> Result<(), String> {
        let Some(url) = &self.webhook_url else {
            return Ok(());
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("SWITCHBOARD_WEBHOOK_URL must be an http:// or https:// URL".into());
        }
        if url.parse::<awc::http::Uri>().is_err() {
            return Err("SWITCHBOARD_WEBHOOK_URL is not a valid URL".into());
        }
        if self.webhook_secret.is_none() {
            return Err(
                "SWITCHBOARD_WEBHOOK_URL needs SWITCHBOARD_WEBHOOK_SECRET (at least 32 bytes) to sign with".into()
            );
        }
        if self.webhook_max_attempts == 0 || self.webhook_backoff_ms == 0 {
            return Err("SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS and SWITCHBOARD_WEBHOOK_BACKOFF_MS must be positive".into());
        }
        Ok(())
    }
}

fn parse_event_types(raw: &str) -> Result<BTreeSet<EventType>, String> {
    EventType::parse_list(raw).map_err(|e| e.to_string())
}

fn parse_api(raw: &str) -> Result<Api, String> {
    Api::parse(raw).map_err(|e| e.to_string())
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`redis://…`).
    Single(String),
    /// A Redis Cluster, by some of its nodes (the rest are discovered).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The addresses, for logs (without passwords).
    pub fn describe(&self) -> String {
        match self {
            Self::Single(url) => redact(url),
            Self::Cluster(seeds) => {
                format!("the Redis Cluster of {}", seeds.iter().map(|s| redact(s)).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// A URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(flags: &[&str]) -> Settings {
        Cli::parse_from(std::iter::once("switchboard").chain(flags.iter().copied())).settings
    }

    #[test]
    fn location_and_group_settings_are_checked_at_start_up() {
        let defaults = parse(&[]);
        assert!(defaults.validate().is_ok());
        assert_eq!(defaults.location_grid().metres(), 100);
        for refused in [
            &["--location-precision-m", "99"][..],
            &["--location-precision-m", "0"],
            &["--location-precision-m", "100001"],
            &["--location-updates-per-min", "0"],
            &["--group-creates-per-min", "0"],
            &["--direct-opens-per-min", "0"],
            &["--live-creates-per-min", "0"],
            &["--live-sessions-per-host", "0"],
            &["--reports-per-min", "0"],
        ] {
            assert!(parse(refused).validate().is_err(), "{refused:?} must not start");
        }
        assert!(parse(&["--location-precision-m", "250"]).validate().is_ok());
    }

    #[test]
    fn workers_are_one_per_core_unless_set() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(parse(&[]).workers(), cores);
        assert_eq!(parse(&["--workers", "1"]).workers(), 1);
        assert!(parse(&["--workers", "0"]).validate().is_err());
    }

    #[test]
    fn the_demo_is_off_unless_asked_for() {
        assert!(!parse(&[]).demo);
        assert!(parse(&["--demo"]).demo);
        assert!(parse(&["--demo", "true"]).demo);
        assert!(!parse(&["--demo", "false"]).demo);
        assert!(try_parse(&["--demo", "maybe"]).is_err());
    }

    #[test]
    fn logs_are_text_unless_json_is_asked_for() {
        assert_eq!(parse(&[]).log_format, LogFormat::Text);
        assert_eq!(parse(&["--log-format", "json"]).log_format, LogFormat::Json);
        assert!(try_parse(&["--log-format", "yaml"]).is_err());
    }

    fn try_parse(flags: &[&str]) -> Result<Settings, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchboard").chain(flags.iter().copied())).map(|cli| cli.settings)
    }

    #[test]
    fn webhook_settings_are_checked_at_start_up() {
        let defaults = parse(&[]);
        assert!(!defaults.webhooks_on());
        assert_eq!(defaults.webhook_events, EventType::parse_list(EventType::DEFAULT_LIST).unwrap());
        assert_eq!((defaults.webhook_collapse_ms, defaults.webhook_max_attempts), (3000, 12));
        assert_eq!(defaults.push_preview_chars, 100);
        let secret = "0123456789abcdef0123456789abcdef";
        let on = parse(&["--webhook-url", "https://backend.example/hooks", "--webhook-secret", secret]);
        assert!(on.webhooks_on() && on.validate().is_ok());
        assert!(!format!("{on:?}").contains(secret), "the secret is never printed");
        assert!(parse(&["--webhook-url", "https://backend.example/hooks"]).validate().is_err(), "no secret");
        assert!(parse(&["--webhook-url", "ftp://x", "--webhook-secret", secret]).validate().is_err());
        assert!(try_parse(&["--webhook-secret", "short"]).is_err(), "secrets under 32 bytes");
        assert!(try_parse(&["--webhook-events", "follow.request,message.sent"]).is_err(), "unknown names");
        let chosen = parse(&["--webhook-events", "user.online,user.offline"]).webhook_events;
        assert_eq!(chosen.into_iter().collect::<Vec<_>>(), [EventType::UserOnline, EventType::UserOffline]);
    }

    #[test]
    fn the_server_api_needs_a_long_key_and_a_public_bind_needs_one() {
        let cli = |flags: &[&str]| Cli::try_parse_from(std::iter::once("switchboard").chain(flags.iter().copied()));
        assert!(cli(&["--api-key", "short"]).is_err(), "a key under 32 bytes is refused");
        let key = "k".repeat(32);
        assert!(parse(&["--api-key", &key]).api_key.is_some_and(|k| k.matches(key.as_bytes())));
        assert!(parse(&["--api-bind", "0.0.0.0:9090"]).validate().is_err(), "a public API bind without a key");
        assert!(parse(&["--api-bind", "127.0.0.1:9090"]).validate().is_ok());
        let jwt = "j".repeat(32);
        assert!(parse(&["--api-bind", "0.0.0.0:9090", "--api-key", &key, "--jwt-secret", &jwt]).validate().is_ok());
    }
}
