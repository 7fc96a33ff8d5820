//! Webhook delivery: one task per node claims due events from the outbox (under a lease, so
//! several nodes never send the same attempt) and POSTs each, signed, to the app's back end,
//! at most [`IN_FLIGHT`] at once. A 2xx answer within [`ANSWER_WITHIN`] is delivered; anything
//! else is retried with exponential backoff, and kept as failed after the last attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use crate::domain::Timestamp;
use crate::service::Services;
use crate::store::{Attempt, WebhookEvent};

/// Deliveries one node has in flight at most.
const IN_FLIGHT: usize = 16;
/// A receiver that has not answered by then has failed the attempt.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long a claimed event is this node's: past it (the node died mid-attempt), another node
/// claims it. Longer than an attempt can take.
const LEASE: Duration = Duration::from_secs(60);
/// How often an idle node looks for due events (collapsed ones and retries come due by time).
const POLL: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(600);
/// How often the outbox gauges are refreshed, and delivered events older than [`KEEP`] purged.
const HOUSEKEEPING: Duration = Duration::from_secs(10);
const PURGE_EVERY: u32 = 360;
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest receiver answer read (then dropped), and longest error kept on a row.
const ANSWER_BYTES: usize = 4096;
const ERROR_CHARS: usize = 300;

/// The running delivery of one node; [`Delivery::stop`] lets the attempts in flight finish.
pub struct Delivery {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Delivery {
    /// Starts delivery and housekeeping on the current actix arbiter; `None` when webhooks
    /// are off.
    pub fn start(services: Arc<Services>) -> Option<Self> {
        let written = services.webhooks.written()?;
        let url = services.settings.webhook_url.clone()?;
        let secret = services.settings.webhook_secret.as_ref()?.expose().as_bytes().to_vec();
        let (stop, stopped) = watch::channel(false);
        let target = Target { url, secret };
        let tasks = vec![
            actix::spawn(deliver_all(services.clone(), target, written, stopped.clone())),
            actix::spawn(housekeeping(services, stopped)),
        ];
        Some(Self { stop, tasks })
    }

    /// Stops claiming, and waits for the attempts in flight to be answered and recorded.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(ANSWER_WITHIN * 2, task).await;
        }
    }
}

/// Where webhooks go and what signs them.
struct Target {
    url: String,
    secret: Vec<u8>,
}

/// The body of every webhook.
#[derive(Serialize)]
struct Body<'a> {
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: &'static str,
    created_at: Timestamp,
    data: &'a Value,
}

/// `v1=` and the hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before attempt `failures + 1`: `base` doubled per failure after the first,
/// capped at [`BACKOFF_CAP`], each drawn from 75–125 % of that.
pub fn backoff(base: Duration, failures: u32) -> Duration {
    let doubled = base.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1))).min(BACKOFF_CAP);
    doubled.mul_f64(rand::random_range(0.75..1.25)).min(BACKOFF_CAP)
}

/// The HTTP client: https through rustls (ring, Mozilla's roots), no redirects followed.
fn client() -> Result<awc::Client, rustls::Error> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = awc::Connector::new().rustls_0_23(Arc::new(tls)).timeout(ANSWER_WITHIN);
    Ok(awc::Client::builder().connector(connector).timeout(ANSWER_WITHIN).disable_redirects().finish())
}

/// Claims due events whenever a slot is free and delivers them, until stopped.
async fn deliver_all(services: Arc<Services>, target: Target, written: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let client = match client() {
        Ok(client) => client,
        Err(e) => return tracing::error!(error = %e, "webhook delivery cannot start its TLS client"),
    };
    let mut in_flight = FuturesUnordered::new();
    let (mut stopping, mut failing) = (false, false);
    loop {
        let free = IN_FLIGHT - in_flight.len();
        let mut idle = true;
        if !stopping && free > 0 {
            match services.store.claim_webhooks(Timestamp::now(), LEASE, free).await {
                Ok(events) => {
                    failing = false;
                    idle = events.len() < free;
                    in_flight.extend(events.into_iter().map(|event| deliver(&services, &client, &target, event)));
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "cannot claim webhook events; trying again");
                    }
                }
            }
        }
        if stopping && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            _ = tokio::time::sleep(POLL), if idle && !stopping => {}
            _ = written.notified(), if idle && !stopping => {}
            _ = stop.changed(), if !stopping => stopping = true,
        }
    }
}

/// One attempt at one event, and its outcome recorded.
async fn deliver(services: &Services, client: &awc::Client, target: &Target, event: WebhookEvent) {
    let metrics = &services.metrics;
    let started = Instant::now();
    let answer = attempt(client, target, &event).await;
    metrics.webhooks.seconds.observe(started.elapsed().as_secs_f64());
    let settings = &services.settings;
    let outcome = match answer {
        Ok(()) => Attempt::Delivered,
        Err(error) if event.attempts + 1 >= settings.webhook_max_attempts => Attempt::Failed { error },
        Err(error) => {
            let wait = backoff(Duration::from_millis(settings.webhook_backoff_ms), event.attempts + 1);
            Attempt::Retry { at: Timestamp::from_millis(Timestamp::now().millis() + wait.as_millis() as i64), error }
        }
    };
    let counted = match &outcome {
        Attempt::Delivered => "delivered",
        Attempt::Retry { .. } => "retried",
        Attempt::Failed { error } => {
            tracing::warn!(id = %event.id, r#type = event.event_type.as_str(), %error, "webhook failed after its last attempt");
            "failed"
        }
    };
    metrics.webhooks.deliveries.with_label_values(&[counted]).inc();
    if let Err(e) = services.store.record_webhook_attempt(event.id, Timestamp::now(), &outcome).await {
        // The lease runs out and the event is attempted again: at least once.
        tracing::warn!(id = %event.id, error = %e, "webhook attempt not recorded");
    }
}

/// Sends the event once; why it failed, if it did.
async fn attempt(client: &awc::Client, target: &Target, event: &WebhookEvent) -> Result<(), String> {
    let body =
        Body { id: event.id, event_type: event.event_type.as_str(), created_at: event.created_at, data: &event.data };
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let timestamp = chrono::Utc::now().timestamp();
    let answer = client
        .post(&target.url)
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("Switchboard-Event-Id", event.id.to_string()))
        .insert_header(("Switchboard-Timestamp", timestamp.to_string()))
        .insert_header(("Switchboard-Signature", signature(&target.secret, timestamp, &body)))
        .send_body(body)
        .await;
    let mut answer = answer.map_err(|e| truncated(&e.to_string()))?;
    // Read (a little of) the answer so the connection can be kept for the next one.
    let _ = answer.body().limit(ANSWER_BYTES).await;
    if answer.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", answer.status())) }
}

fn truncated(error: &str) -> String {
    error.chars().take(ERROR_CHARS).collect()
}

/// Refreshes the outbox gauges and, now and then, deletes delivered events past [`KEEP`].
async fn housekeeping(services: Arc<Services>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    for round in 0u32.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match services.store.webhook_counts().await {
            Ok(counts) => {
                let gauge = &services.metrics.webhooks.outbox;
                gauge.with_label_values(&["pending"]).set(counts.pending);
                gauge.with_label_values(&["failed"]).set(counts.failed);
            }
            Err(e) => tracing::debug!(error = %e, "webhook outbox not counted"),
        }
        if round % PURGE_EVERY == 0 {
            let before = Timestamp::from_millis(Timestamp::now().millis() - KEEP.as_millis() as i64);
            match services.store.purge_delivered_webhooks(before).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "delivered webhook events purged"),
                Err(e) => tracing::warn!(error = %e, "delivered webhook events not purged"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Computed apart with Python's hmac module.
        let expected = "v1=9d6dab48e301f728160010b3eee384195a3291008784fa43631227c70c052eb8";
        assert_eq!(signature(b"whsec-0123456789abcdef0123456789abcdef", 1700000000, br#"{"id":"x"}"#), expected);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let base = Duration::from_secs(1);
        for failures in 1..=30 {
            let nominal = base.saturating_mul(2u32.saturating_pow(failures - 1)).min(BACKOFF_CAP);
            let wait = backoff(base, failures);
            assert!(
                wait >= nominal.mul_f64(0.75) && wait <= nominal.mul_f64(1.25).min(BACKOFF_CAP),
                "{failures}: {wait:?}"
            );
        }
        assert!(backoff(base, 1) <= Duration::from_millis(1250));
        assert!(backoff(base, 40) <= BACKOFF_CAP);
    }
}
