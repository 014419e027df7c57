//! `/metrics`: a snapshot rendered as Prometheus text exposition (format 0.0.4, which every
//! Prometheus and `promtool check metrics` read), encoded by the `prometheus-client` crate
//! (OpenMetrics text) and converted by [`to_prometheus_text`]. Pure: built from the snapshot at scrape time, nothing counted
//! on the poll path for it. Labels are tenants, agents, outcomes and reasons, never a session
//! id (one series per session would grow without bound).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use openrtc_proto::{BreakerState, PoolSnapshot, StallBucket};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Labels of one series.
type Labels = Vec<(&'static str, String)>;

/// A histogram whose buckets are already counted (the snapshot's stall buckets).
#[derive(Debug)]
struct CountedHistogram {
    sum: f64,
    count: u64,
    /// Upper bound (`f64::MAX` for `+Inf`) and count, per bucket.
    buckets: Vec<(f64, u64)>,
}

impl CountedHistogram {
    fn from_stall_buckets(buckets: &[StallBucket], sum_ns: u64) -> Self {
        Self {
            sum: sum_ns as f64 / 1e9,
            count: buckets.iter().map(|bucket| bucket.count).sum(),
            buckets: buckets
                .iter()
                .map(|bucket| {
                    let bound = bucket.le_ms.map_or(f64::MAX, |ms| ms as f64 / 1e3);
                    (bound, bucket.count)
                })
                .collect(),
        }
    }
}

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

fn float_counter(value: f64) -> Counter<f64, AtomicU64> {
    let counter = Counter::<f64, AtomicU64>::default();
    counter.inc_by(value);
    counter
}

fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

/// Renders `snapshot` as Prometheus text exposition.
pub(crate) fn render(snapshot: &PoolSnapshot) -> String {
    let worker = &snapshot.worker;
    let mut registry = Registry::with_prefix("openrtc");

    let active = Family::<Labels, Gauge>::default();
    let mut by_tenant_agent: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for row in &snapshot.sessions {
        *by_tenant_agent
            .entry((&row.tenant, &row.agent))
            .or_default() += 1;
    }
    for ((tenant, agent), count) in by_tenant_agent {
        active
            .get_or_create(&vec![
                ("tenant", tenant.to_owned()),
                ("agent", agent.to_owned()),
            ])
            .set(count);
    }
    registry.register(
        "sessions_active",
        "Live sessions, by tenant and agent",
        active,
    );

    let ended = Family::<Labels, Counter>::default();
    for (outcome, count) in [
        ("completed", worker.totals.completed_count),
        ("failed", worker.totals.failed_count),
        ("panicked", worker.totals.panicked_count),
        ("cancelled", worker.totals.cancelled_count),
        ("killed", worker.totals.killed_count),
    ] {
        ended
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc_by(count);
    }
    registry.register(
        "sessions_ended",
        "Sessions ended since the worker started, by outcome",
        ended,
    );

    let started = Family::<Labels, Counter>::default();
    let failed = Family::<Labels, Counter>::default();
    let heap = Family::<Labels, Gauge>::default();
    let breaker = Family::<Labels, Gauge>::default();
    for (tenant, figures) in &snapshot.tenants {
        let labels = vec![("tenant", tenant.clone())];
        started.get_or_create(&labels).inc_by(figures.started_count);
        failed.get_or_create(&labels).inc_by(figures.failed_count);
        if worker.mem_source.is_exact() {
            heap.get_or_create(&labels)
                .set(i64::try_from(figures.heap_live_bytes).unwrap_or(i64::MAX));
        }
        for (state, name) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half_open"),
            (BreakerState::Disabled, "disabled"),
        ] {
            breaker
                .get_or_create(&vec![
                    ("tenant", tenant.clone()),
                    ("state", name.to_owned()),
                ])
                .set(i64::from(figures.breaker.state == state));
        }
    }
    registry.register(
        "tenant_sessions_started",
        "Sessions started since the worker started, by tenant",
        started,
    );
    registry.register(
        "tenant_sessions_failed",
        "Sessions that failed (error, panic, own memory cap) since the worker started, by tenant",
        failed,
    );
    registry.register(
        "tenant_breaker_state",
        "1 for the state each tenant's circuit breaker is in, 0 for the others",
        breaker,
    );
    if worker.mem_source.is_exact() {
        registry.register_with_unit(
            "tenant_heap",
            "Live heap held by each tenant's live sessions (tracking allocator)",
            Unit::Bytes,
            heap,
        );
    }

    let refusals = Family::<Labels, Counter>::default();
    for (reason, count) in &worker.refusals {
        let name = serde_json::to_value(reason)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{reason:?}"));
        refusals
            .get_or_create(&vec![("reason", name)])
            .inc_by(*count);
    }
    registry.register("refusals", "Launches refused, by reason", refusals);

    registry.register(
        "stalls",
        "Polls that blocked a worker thread past the stall threshold",
        counter(worker.stalls_total_count),
    );
    registry.register(
        "stalls_preempted",
        "Stalls classed as preemption (the host's, not a session's)",
        counter(worker.stalls_preempted_count),
    );
    registry.register_with_unit(
        "stall_duration",
        "How long each stall blocked its worker thread",
        Unit::Seconds,
        CountedHistogram::from_stall_buckets(
            &worker.stall_duration_buckets,
            worker.stall_duration_sum_ns,
        ),
    );
    let live_busy_ns: u64 = snapshot.sessions.iter().map(|row| row.busy_ns).sum();
    registry.register_with_unit(
        "busy",
        "Time worker threads spent polling sessions",
        Unit::Seconds,
        float_counter(worker.ended_busy_ns.saturating_add(live_busy_ns) as f64 / 1e9),
    );
    registry.register_with_unit(
        "resident_memory",
        "Resident set size of the worker process",
        Unit::Bytes,
        gauge(worker.rss_bytes),
    );
    registry.register(
        "open_fds",
        "Open file descriptors of the worker process",
        gauge(u64::from(worker.open_fds_count)),
    );
    let blocked = worker
        .worker_thread_states
        .iter()
        .filter(|state| state.blocked)
        .count();
    registry.register(
        "worker_threads_blocked",
        "Worker threads polling one session past blocked_after",
        gauge(u64::try_from(blocked).unwrap_or(u64::MAX)),
    );
    registry.register(
        "draining",
        "1 while the worker drains",
        gauge(u64::from(worker.draining)),
    );
    registry.register(
        "max_sessions",
        "The worker's cap on concurrent sessions",
        gauge(u64::from(worker.max_sessions)),
    );

    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    to_prometheus_text(&text)
}

/// OpenMetrics text to Prometheus text format 0.0.4: a counter family is named as its
/// samples are (`x_total`) in its `# HELP` and `# TYPE` lines, and the `# UNIT` and `# EOF`
/// lines, which that format does not have, are left out.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|kind| {
            let rest = line.strip_prefix(kind)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{kind}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => text.push_str(&line),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use openrtc_proto::{SessionSnapshot, TenantSnapshot};

    use super::*;

    #[test]
    fn a_snapshot_renders_every_family_without_session_ids() {
        let mut snapshot = PoolSnapshot::default();
        for key in 1..=3 {
            let mut row = SessionSnapshot::default();
            row.id = crate::session::session_id(key);
            row.tenant = "acme".into();
            row.agent = "echo".into();
            row.busy_ns = 500_000_000;
            snapshot.sessions.push(row);
        }
        let mut tenant = TenantSnapshot::default();
        tenant.breaker.state = BreakerState::Open;
        tenant.started_count = 7;
        snapshot.tenants.insert("acme".into(), tenant);
        snapshot.worker.totals.completed_count = 4;
        snapshot.worker.ended_busy_ns = 500_000_000;
        let (buckets, sum_ns) = {
            let histogram = crate::stall_histogram::StallHistogram::default();
            histogram.observe(60_000_000);
            histogram.observe(70_000_000_000);
            histogram.read()
        };
        snapshot.worker.stall_duration_buckets = buckets;
        snapshot.worker.stall_duration_sum_ns = sum_ns;
        snapshot.worker.stalls_total_count = 2;
        let text = render(&snapshot);
        for line in [
            "openrtc_sessions_active{tenant=\"acme\",agent=\"echo\"} 3",
            "openrtc_sessions_ended_total{outcome=\"completed\"} 4",
            "openrtc_tenant_sessions_started_total{tenant=\"acme\"} 7",
            "openrtc_tenant_breaker_state{tenant=\"acme\",state=\"open\"} 1",
            "openrtc_tenant_breaker_state{tenant=\"acme\",state=\"closed\"} 0",
            "openrtc_stalls_total 2",
            "openrtc_stall_duration_seconds_bucket{le=\"0.1\"} 1",
            "openrtc_stall_duration_seconds_bucket{le=\"60.0\"} 1",
            "openrtc_stall_duration_seconds_bucket{le=\"+Inf\"} 2",
            "openrtc_stall_duration_seconds_count 2",
            "openrtc_busy_seconds_total 2.0",
            "# TYPE openrtc_stalls_total counter",
            "# TYPE openrtc_stall_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(!text.contains("s-1"), "no session id: {text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
    }
}
