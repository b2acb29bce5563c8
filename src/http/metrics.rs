//! Prometheus metrics: `GET /metrics` in the text exposition format.
//!
//! Each `Application` owns its own recorder instead of installing a global
//! one: several services in one process (the integration tests run dozens)
//! then never mix their figures, and nothing depends on who installed a
//! global recorder first. Code that records a metric goes through
//! [`Metrics`], which lives in the app state.
//!
//! Label values that clients choose (operation names) are cleaned and
//! capped, so that a client cannot grow the series without bound.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::db::Db;

/// Latency buckets (seconds): a cached read is ~1 ms, a statistic on a miss
/// tens of milliseconds, anything past a few seconds is an incident.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Distinct operation names kept as labels; later ones count as `other`.
const MAX_OPERATION_LABELS: usize = 200;
/// Longest operation name kept as a label.
const MAX_OPERATION_LEN: usize = 64;

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Names of the metrics the service exports.
pub mod names {
    pub const HTTP_REQUESTS: &str = "kairos_http_requests_total";
    pub const GRAPHQL_REQUESTS: &str = "kairos_graphql_requests_total";
    pub const GRAPHQL_DURATION: &str = "kairos_graphql_request_duration_seconds";
    pub const GRAPHQL_ERRORS: &str = "kairos_graphql_errors_total";
    pub const RATE_LIMITED: &str = "kairos_rate_limited_total";
    pub const MONGODB_COMMANDS: &str = "kairos_mongodb_commands_total";
    pub const MONGODB_POOL_MAX: &str = "kairos_mongodb_pool_max_size";
    pub const MONGODB_POOL_MIN: &str = "kairos_mongodb_pool_min_size";
    pub const MONGODB_POOL_OPEN: &str = "kairos_mongodb_pool_connections_open";
    pub const MONGODB_POOL_IN_USE: &str = "kairos_mongodb_pool_connections_in_use";
    pub const MONGODB_POOL_CHECKOUT_FAILURES: &str = "kairos_mongodb_pool_checkout_failures_total";
    pub const CACHE_HITS: &str = "kairos_cache_hits_total";
    pub const CACHE_MISSES: &str = "kairos_cache_misses_total";
    pub const CACHE_ERRORS: &str = "kairos_cache_redis_errors_total";
    pub const CACHE_BACKEND: &str = "kairos_cache_backend";
    pub const CACHE_BREAKER_OPEN: &str = "kairos_cache_breaker_open";
    pub const CACHE_MEMORY_ENTRIES: &str = "kairos_cache_memory_entries";
    /// Notification fan-out jobs per live state (gauge).
    pub const NOTIFICATION_JOBS: &str = "kairos_notification_jobs";
    pub const NOTIFICATIONS_FANNED_OUT: &str = "kairos_notifications_fanned_out_total";
    pub const NOTIFICATION_JOBS_FINISHED: &str = "kairos_notification_jobs_finished_total";
    pub const NOTIFICATION_JOB_RETRIES: &str = "kairos_notification_job_retries_total";
    /// Open subscription sockets (gauge).
    pub const WS_CONNECTIONS: &str = "kairos_ws_connections";
    /// Active subscriptions over all sockets (gauge).
    pub const WS_SUBSCRIPTIONS: &str = "kairos_ws_subscriptions";
    /// Sockets closed by the server, by close code.
    pub const WS_CLOSED: &str = "kairos_ws_closed_total";
    /// Live events handed to a subscriber's socket.
    pub const LIVE_DELIVERED: &str = "kairos_live_events_delivered_total";
    /// Live events lost, by reason (lagged, redis_publish, redis_backlog).
    pub const LIVE_DROPPED: &str = "kairos_live_events_dropped_total";
}

/// The metrics of one service; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    /// Operation names already used as labels (bounded).
    operations: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            recorder.describe_counter(name.into(), unit, help.into());
        };
        describe(
            names::HTTP_REQUESTS,
            None,
            "HTTP requests by route and status",
        );
        describe(
            names::GRAPHQL_REQUESTS,
            None,
            "GraphQL requests by operation name",
        );
        describe(
            names::GRAPHQL_ERRORS,
            None,
            "GraphQL errors by extensions.code",
        );
        describe(
            names::RATE_LIMITED,
            None,
            "requests refused by a rate limit, by scope (http, auth)",
        );
        describe(
            names::MONGODB_COMMANDS,
            None,
            "MongoDB commands sent, by command name",
        );
        describe(
            names::LIVE_DELIVERED,
            None,
            "live events sent to a subscription socket",
        );
        describe(
            names::LIVE_DROPPED,
            None,
            "live events lost (at most once), by reason",
        );
        describe(
            names::WS_CLOSED,
            None,
            "subscription sockets closed by the server, by close code",
        );
        describe(
            names::NOTIFICATIONS_FANNED_OUT,
            None,
            "learners notified by this instance's fan-out worker",
        );
        describe(
            names::NOTIFICATION_JOBS_FINISHED,
            None,
            "fan-out jobs this instance finished, by state (done, failed, cancelled)",
        );
        describe(
            names::NOTIFICATION_JOB_RETRIES,
            None,
            "fan-out rounds that failed and were queued again",
        );
        recorder.describe_gauge(
            names::NOTIFICATION_JOBS.into(),
            None,
            "fan-out jobs by state (queued, running, failed), as the worker last saw them".into(),
        );
        recorder.describe_histogram(
            names::GRAPHQL_DURATION.into(),
            Some(Unit::Seconds),
            "GraphQL request latency by operation name".into(),
        );
        Metrics(Arc::new(Inner {
            recorder,
            operations: Mutex::new(HashSet::new()),
        }))
    }

    /// A counter of this service's recorder (for other modules' metrics,
    /// e.g. the cache's hits and misses).
    pub fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.0
            .recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// A gauge of this service's recorder.
    pub fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.0
            .recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    /// A histogram of this service's recorder.
    pub fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.0
            .recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    /// One HTTP request, by matched route and status.
    pub fn http_request(&self, route: &str, status: u16) {
        self.counter(
            names::HTTP_REQUESTS,
            vec![
                Label::new("route", route.to_string()),
                Label::new("status", status.to_string()),
            ],
        )
        .increment(1);
    }

    /// One GraphQL request and its latency.
    pub fn graphql_request(&self, operation: &str, seconds: f64) {
        let operation = self.operation_label(operation);
        let labels = vec![Label::new("operation", operation)];
        self.counter(names::GRAPHQL_REQUESTS, labels.clone())
            .increment(1);
        self.histogram(names::GRAPHQL_DURATION, labels)
            .record(seconds);
    }

    /// One error sent to a client, by its public code.
    pub fn graphql_error(&self, code: &str) {
        self.counter(
            names::GRAPHQL_ERRORS,
            vec![Label::new("code", code.to_string())],
        )
        .increment(1);
    }

    /// One request refused by a rate limit (`http` or `auth`).
    pub fn rate_limited(&self, scope: &'static str) {
        self.counter(names::RATE_LIMITED, vec![Label::new("scope", scope)])
            .increment(1);
    }

    /// The operation name as a label: cleaned, bounded in length and in the
    /// number of distinct values.
    fn operation_label(&self, name: &str) -> String {
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(MAX_OPERATION_LEN)
            .collect();
        if clean.is_empty() {
            return "anonymous".into();
        }
        let mut seen = self
            .0
            .operations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(&clean) {
            clean
        } else if seen.len() < MAX_OPERATION_LABELS {
            seen.insert(clean.clone());
            clean
        } else {
            "other".into()
        }
    }

    /// The exposition text, with the figures that are read at scrape time
    /// (database commands, pool settings) brought up to date first.
    pub fn render(&self, db: &Db, pool: (u32, u32), cache: &crate::cache::CacheReport) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        self.gauge(names::MONGODB_POOL_OPEN, vec![])
            .set(db.pool.open.load(Relaxed) as f64);
        self.gauge(names::MONGODB_POOL_IN_USE, vec![])
            .set(db.pool.in_use.load(Relaxed) as f64);
        self.counter(names::MONGODB_POOL_CHECKOUT_FAILURES, vec![])
            .absolute(db.pool.checkout_failures.load(Relaxed));
        for (class, hits, misses) in &cache.per_class {
            self.counter(names::CACHE_HITS, vec![Label::new("class", *class)])
                .absolute(*hits);
            self.counter(names::CACHE_MISSES, vec![Label::new("class", *class)])
                .absolute(*misses);
        }
        self.counter(names::CACHE_ERRORS, vec![])
            .absolute(cache.errors);
        for backend in ["redis", "memory"] {
            self.gauge(names::CACHE_BACKEND, vec![Label::new("backend", backend)])
                .set(if cache.backend == backend { 1.0 } else { 0.0 });
        }
        self.gauge(names::CACHE_BREAKER_OPEN, vec![]).set(
            if cache.breaker == crate::cache::BreakerState::Open && cache.redis_configured {
                1.0
            } else {
                0.0
            },
        );
        self.gauge(names::CACHE_MEMORY_ENTRIES, vec![])
            .set(cache.memory_entries as f64);
        for (command, count) in db.commands.snapshot() {
            self.counter(
                names::MONGODB_COMMANDS,
                vec![Label::new("command", command)],
            )
            .absolute(count);
        }
        self.gauge(names::MONGODB_POOL_MAX, vec![]).set(pool.0);
        self.gauge(names::MONGODB_POOL_MIN, vec![]).set(pool.1);
        let handle = self.0.recorder.handle();
        handle.run_upkeep();
        handle.render()
    }
}

/// `GET /metrics`: Prometheus text format, rendered from `text`.
pub fn text_response(text: String) -> Response {
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_cleaned_and_bounded() {
        let m = Metrics::new();
        assert_eq!(m.operation_label(""), "anonymous");
        assert_eq!(m.operation_label("Get\"Modules}{"), "GetModules");
        for i in 0..MAX_OPERATION_LABELS {
            m.operation_label(&format!("op{i}"));
        }
        assert_eq!(m.operation_label("op0"), "op0");
        assert_eq!(m.operation_label("oneTooMany"), "other");
    }

    #[test]
    fn two_services_keep_separate_figures() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.rate_limited("http");
        let text_a = a.0.recorder.handle().render();
        let text_b = b.0.recorder.handle().render();
        assert!(text_a.contains("kairos_rate_limited_total{scope=\"http\"} 1"));
        assert!(!text_b.contains("kairos_rate_limited_total"));
    }
}
