//! Process metrics for Prometheus (`GET /metrics`, text exposition format), with
//! `prometheus-client`: explicit types, no global macros, and an encoder that follows the
//! OpenMetrics text rules.
//!
//! One process-wide set ([`metrics()`]): a scrape describes the process, and the places that
//! count (the HTTP layer, the engine, the SQLite writer) are far apart, so threading a handle
//! through every constructor would buy nothing. Updating is a few atomic operations (a label
//! set's counter is found under a read lock once it exists), cheap enough for the status GET's
//! tens of thousands of requests a second.
//!
//! Label values are bounded: routes are the router's templates (`/instances/{instanceId}`, never
//! a raw path), and orchestration names, which come from users, are kept for the first
//! [`MAX_NAMES`] distinct names; later ones are counted as `other`.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `taskhub_http_requests_total` | counter | route, method, status | HTTP requests answered |
//! | `taskhub_http_request_duration_seconds` | histogram | route, method | time to answer |
//! | `taskhub_instances_started_total` | counter | name | instances created (starts, sub-orchestrations, restarts; not continue-as-new) |
//! | `taskhub_instances_finished_total` | counter | name, status | instances that reached a terminal status (Completed, Failed, Terminated) in an episode of this process |
//! | `taskhub_work_items_waiting` | gauge | kind | orchestration and activity work items waiting for an SDK worker (gRPC), at scrape time |
//! | `taskhub_grpc_workers_connected` | gauge | | SDK workers with an open work-item stream, at scrape time |
//! | `taskhub_episode_duration_seconds` | histogram | | an orchestration episode in this process, from lock to commit |
//! | `taskhub_sqlite_commit_duration_seconds` | histogram | | one SQLite group commit (the transaction and its fsync) |
//! | `taskhub_sqlite_commit_batch_size` | histogram | | writes in one group commit |

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Distinct orchestration names kept as label values; later names count as `other`.
pub const MAX_NAMES: usize = 200;

// Request labels are `&'static str`: a lookup builds its label set on the stack, with no
// allocation, on the hottest path there is (see `http::route_label`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: &'static str,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NameLabels {
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FinishedLabels {
    pub name: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub kind: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub(crate) http_requests: Family<RequestLabels, Counter>,
    pub(crate) http_duration: Histograms<RouteLabels>,
    pub(crate) started: Family<NameLabels, Counter>,
    pub(crate) finished: Family<FinishedLabels, Counter>,
    pub(crate) waiting: Family<KindLabels, Gauge>,
    pub(crate) workers: Gauge,
    pub(crate) episode_duration: Histogram,
    pub(crate) commit_duration: Histogram,
    pub(crate) commit_batch: Histogram,
    names: Mutex<HashSet<String>>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "taskhub_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: Histograms<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "taskhub_http_request_duration_seconds",
            "Time to answer an HTTP request",
            http_duration.clone(),
        );
        let started = Family::<NameLabels, Counter>::default();
        registry.register(
            "taskhub_instances_started",
            "Orchestration instances created, by orchestration name",
            started.clone(),
        );
        let finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "taskhub_instances_finished",
            "Orchestration instances that reached a terminal status here, by name and status",
            finished.clone(),
        );
        let waiting = Family::<KindLabels, Gauge>::default();
        registry.register(
            "taskhub_work_items_waiting",
            "Work items waiting for an SDK worker, by kind",
            waiting.clone(),
        );
        let workers = Gauge::default();
        registry.register(
            "taskhub_grpc_workers_connected",
            "SDK workers with an open work-item stream",
            workers.clone(),
        );
        let episode_duration = latency_histogram();
        registry.register(
            "taskhub_episode_duration_seconds",
            "An orchestration episode run in this process, from lock to commit",
            episode_duration.clone(),
        );
        let commit_duration = latency_histogram();
        registry.register(
            "taskhub_sqlite_commit_duration_seconds",
            "One SQLite group commit, with its fsync",
            commit_duration.clone(),
        );
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "taskhub_sqlite_commit_batch_size",
            "Writes in one SQLite group commit",
            commit_batch.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            started,
            finished,
            waiting,
            workers,
            episode_duration,
            commit_duration,
            commit_batch,
            names: Mutex::new(HashSet::new()),
        }
    }

    /// `name` as a label value: itself while fewer than [`MAX_NAMES`] names are known.
    fn name_label(&self, name: &str) -> String {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.contains(name) {
            return name.to_string();
        }
        if names.len() < MAX_NAMES {
            names.insert(name.to_string());
            return name.to_string();
        }
        "other".to_string()
    }

    pub(crate) fn instance_started(&self, name: &str) {
        let name = self.name_label(name);
        self.started.get_or_create(&NameLabels { name }).inc();
    }

    pub(crate) fn instance_finished(&self, name: &str, status: &str) {
        let name = self.name_label(name);
        self.finished
            .get_or_create(&FinishedLabels {
                name,
                status: status.to_string(),
            })
            .inc();
    }

    pub(crate) fn request(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        took: Duration,
    ) {
        self.http_requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { route, method })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn set_waiting(&self, orchestrations: usize, activities: usize) {
        let set = |kind, n: usize| {
            self.waiting
                .get_or_create(&KindLabels { kind })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("orchestration", orchestrations);
        set("activity", activities);
    }

    pub(crate) fn set_workers(&self, n: usize) {
        self.workers.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_beyond_the_bound_count_as_other() {
        let m = Metrics::new();
        for i in 0..MAX_NAMES {
            m.instance_started(&format!("n{i}"));
        }
        m.instance_started("n0");
        m.instance_started("one-too-many");
        let text = m.encode();
        assert!(
            text.contains("taskhub_instances_started_total{name=\"n0\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("taskhub_instances_started_total{name=\"other\"} 1"),
            "{text}"
        );
        assert!(!text.contains("one-too-many"));
    }
}
