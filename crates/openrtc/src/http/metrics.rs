//! `/metrics`: a snapshot rendered as Prometheus text exposition (format 0.0.4, which every
//! Prometheus and `promtool check metrics` read), encoded by the `prometheus-client` crate
//! (OpenMetrics text) and converted by [`to_prometheus_text`]. Pure: built from the snapshot at scrape time, nothing counted
//! on the poll path for it. Labels are tenants, agents, outcomes, reasons and tracked calls'
//! labels, never a session id (one series per session would grow without bound); each is
//! bounded where it is counted (64 call labels, then `other`; 1024 tenant and agent pairs,
//! then tenant `other`). Label values are escaped as the text format asks (a backslash, a
//! double quote and a line feed as `\\`, `\"` and `\n`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use openrtc_proto::{
    BreakerState, CallBucket, CallStatsSnapshot, PoolSnapshot, SessionTotals, StallBucket,
};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Labels of one series.
type Labels = Vec<(&'static str, String)>;

/// A label pair, its value escaped for the text format (prometheus-client writes values as
/// they are).
fn label(key: &'static str, value: &str) -> (&'static str, String) {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    (key, escaped)
}

/// A histogram whose buckets are already counted (the snapshot's stall or call buckets).
#[derive(Debug)]
struct CountedHistogram {
    sum: f64,
    count: u64,
    /// Upper bound (`f64::MAX` for `+Inf`) and count, per bucket.
    buckets: Vec<(f64, u64)>,
}

impl CountedHistogram {
    /// From per-bucket counts, each bucket's bound in seconds (`None`: `+Inf`).
    fn new(sum_s: f64, buckets: impl Iterator<Item = (Option<f64>, u64)>) -> Self {
        let buckets: Vec<(f64, u64)> = buckets
            .map(|(le_s, count)| (le_s.unwrap_or(f64::MAX), count))
            .collect();
        Self {
            sum: sum_s,
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
        }
    }

    fn from_stall_buckets(buckets: &[StallBucket], sum_ns: u64) -> Self {
        let bounds = buckets
            .iter()
            .map(|bucket| (bucket.le_ms.map(|ms| ms as f64 / 1e3), bucket.count));
        Self::new(sum_ns as f64 / 1e9, bounds)
    }

    /// A label's calls: its buckets' bounds are exact edges of the histogram the calls were
    /// counted in, in seconds (1 024 µs is `le="0.001024"`), each holding the calls under it.
    fn from_call_buckets(buckets: &[CallBucket], sum_us: u64) -> Self {
        let bounds = buckets
            .iter()
            .map(|bucket| (bucket.le_us.map(|us| us as f64 / 1e6), bucket.count));
        Self::new(sum_us as f64 / 1e6, bounds)
    }
}

/// Histograms with labels, one per label set, in the order given.
#[derive(Debug, Default)]
struct HistogramFamily(Vec<(Labels, CountedHistogram)>);

impl EncodeMetric for HistogramFamily {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (labels, histogram) in &self.0 {
            histogram.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
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
            .get_or_create(&vec![label("tenant", tenant), label("agent", agent)])
            .set(count);
    }
    registry.register(
        "sessions_active",
        "Live sessions, by tenant and agent",
        active,
    );

    register_session_totals(&mut registry, snapshot);

    let started = Family::<Labels, Counter>::default();
    let failed = Family::<Labels, Counter>::default();
    let heap = Family::<Labels, Gauge>::default();
    let breaker = Family::<Labels, Gauge>::default();
    for (tenant, figures) in &snapshot.tenants {
        let labels = vec![label("tenant", tenant)];
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
                .get_or_create(&vec![label("tenant", tenant), label("state", name)])
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

    register_call_media(&mut registry, snapshot);
    register_calls(&mut registry, &snapshot.calls);

    let refusals = Family::<Labels, Counter>::default();
    for (reason, count) in &worker.refusals {
        let name = serde_json::to_value(reason)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{reason:?}"));
        refusals
            .get_or_create(&vec![label("reason", &name)])
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
    if let Some(livekit) = &worker.livekit {
        register_livekit(&mut registry, livekit);
    }

    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    to_prometheus_text(&text)
}

/// Phone calls' media health by tenant (never by call): frames missing and dropped since the
/// worker started, and over the live calls the worst outbound lateness p99 and how many are
/// degrading.
fn register_call_media(registry: &mut Registry, snapshot: &PoolSnapshot) {
    let missing = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let degrading = Family::<Labels, Gauge>::default();
    let lateness = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (tenant, figures) in &snapshot.tenants {
        let labels = vec![label("tenant", tenant)];
        missing
            .get_or_create(&labels)
            .inc_by(figures.call_frames_missing_count);
        dropped
            .get_or_create(&labels)
            .inc_by(figures.call_frames_dropped_count);
        degrading.get_or_create(&labels).set(0);
    }
    for row in &snapshot.sessions {
        let Some(media) = &row.media else { continue };
        let labels = vec![label("tenant", &row.tenant)];
        degrading
            .get_or_create(&labels)
            .inc_by(i64::from(media.degrading));
        let worst = lateness.get_or_create(&labels);
        let seconds = media.outbound_lateness_p99_ms / 1e3;
        if seconds > worst.get() {
            worst.set(seconds);
        }
    }
    registry.register(
        "phone_call_frames_missing",
        "Inbound audio frames missing from phone calls' sequences since the worker started, by tenant",
        missing,
    );
    registry.register(
        "phone_call_frames_dropped",
        "Inbound call events dropped because the session was too slow to take them, by tenant",
        dropped,
    );
    registry.register_with_unit(
        "phone_call_outbound_lateness",
        "The worst outbound audio lateness p99 over each tenant's live calls (last 10 s)",
        Unit::Seconds,
        lateness,
    );
    registry.register(
        "phone_calls_degrading",
        "Live calls whose audio is degrading (lateness, jitter, missing or dropped frames), by tenant",
        degrading,
    );
}

/// The LiveKit worker's registration and offers (only for a worker that takes LiveKit jobs).
fn register_livekit(registry: &mut Registry, livekit: &openrtc_proto::LiveKitWorkerSnapshot) {
    registry.register(
        "livekit_connected",
        "1 while the worker is registered with its LiveKit server",
        gauge(u64::from(livekit.connected)),
    );
    let load = Gauge::<f64, AtomicU64>::default();
    load.set(livekit.load);
    registry.register(
        "livekit_load",
        "The load last reported to the LiveKit server: sessions over capacity",
        load,
    );
    registry.register(
        "livekit_jobs_running",
        "LiveKit jobs running",
        gauge(livekit.jobs_running_count),
    );
    let offers = Family::<Labels, Counter>::default();
    for (result, count) in [
        ("accepted", livekit.offers_accepted_count),
        ("refused", livekit.offers_refused_count),
    ] {
        offers
            .get_or_create(&vec![label("result", result)])
            .inc_by(count);
    }
    registry.register(
        "livekit_offers",
        "Job offers from the LiveKit server, by whether the worker accepted them",
        offers,
    );
    registry.register(
        "livekit_assignment_timeouts",
        "Accepted LiveKit offers whose assignment never came (their places released)",
        counter(livekit.assignment_timeout_count),
    );
    registry.register(
        "livekit_reconnects",
        "Registrations with the LiveKit server after the first",
        counter(livekit.reconnect_count),
    );
}

/// How a pair's ended sessions ended, by outcome label.
fn outcome_counts(totals: &SessionTotals) -> [(&'static str, u64); 5] {
    [
        ("completed", totals.completed_count),
        ("failed", totals.failed_count),
        ("panicked", totals.panicked_count),
        ("cancelled", totals.cancelled_count),
        ("killed", totals.killed_count),
    ]
}

/// `sessions_started{tenant,agent}` and `sessions_ended{tenant,agent,outcome}`: every pair
/// that started a session, every outcome listed (0 included). Summed over the series, each
/// is the worker's `totals`.
fn register_session_totals(registry: &mut Registry, snapshot: &PoolSnapshot) {
    let started = Family::<Labels, Counter>::default();
    let ended = Family::<Labels, Counter>::default();
    for entry in &snapshot.totals_by_tenant_agent {
        let pair = vec![label("tenant", &entry.tenant), label("agent", &entry.agent)];
        started
            .get_or_create(&pair)
            .inc_by(entry.totals.started_count);
        for (outcome, count) in outcome_counts(&entry.totals) {
            let mut labels = pair.clone();
            labels.push(label("outcome", outcome));
            ended.get_or_create(&labels).inc_by(count);
        }
    }
    registry.register(
        "sessions_started",
        "Sessions started since the worker started, by tenant and agent",
        started,
    );
    registry.register(
        "sessions_ended",
        "Sessions ended since the worker started, by tenant, agent and outcome",
        ended,
    );
}

/// One of a label's counters, read from its row.
type CallFigure = fn(&CallStatsSnapshot) -> u64;

/// The tracked calls' counters and duration histograms, by call label.
fn register_calls(registry: &mut Registry, calls: &BTreeMap<String, CallStatsSnapshot>) {
    let families: [(&str, &str, CallFigure); 4] = [
        ("calls", "Tracked calls completed, by call label", |stats| {
            stats.count
        }),
        (
            "calls_failed",
            "Tracked calls whose output was a failure, by call label",
            |stats| stats.failed_count,
        ),
        (
            "calls_slow",
            "Tracked calls over the slow call threshold, by call label",
            |stats| stats.slow_count,
        ),
        (
            "calls_blocking",
            "Tracked calls that blocked a worker thread past the stall threshold, by call label",
            |stats| stats.blocking_count,
        ),
    ];
    for (name, help, figure) in families {
        let family = Family::<Labels, Counter>::default();
        for (call_label, stats) in calls {
            family
                .get_or_create(&vec![label("label", call_label)])
                .inc_by(figure(stats));
        }
        registry.register(name, help, family);
    }
    let durations = HistogramFamily(
        calls
            .iter()
            .filter(|(_, stats)| !stats.duration_buckets.is_empty())
            .map(|(call_label, stats)| {
                (
                    vec![label("label", call_label)],
                    CountedHistogram::from_call_buckets(
                        &stats.duration_buckets,
                        stats.duration_sum_us,
                    ),
                )
            })
            .collect(),
    );
    registry.register_with_unit(
        "call_duration",
        "How long tracked calls took, by call label (each bucket's bound an exact edge of the \
         worker's histogram)",
        Unit::Seconds,
        durations,
    );
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
    use openrtc_proto::{SessionSnapshot, TenantAgentTotals, TenantSnapshot};

    use super::*;

    /// Fails with the whole text unless every line is in it, exactly.
    fn assert_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(
                text.lines().any(|candidate| candidate == *line),
                "{line} missing from:\n{text}"
            );
        }
    }

    fn pair(
        tenant: &str,
        agent: &str,
        started: u64,
        completed: u64,
        failed: u64,
    ) -> TenantAgentTotals {
        let mut entry = TenantAgentTotals::default();
        entry.tenant = tenant.into();
        entry.agent = agent.into();
        entry.totals.started_count = started;
        entry.totals.completed_count = completed;
        entry.totals.failed_count = failed;
        entry
    }

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
        snapshot.totals_by_tenant_agent = vec![pair("acme", "echo", 7, 4, 0)];
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
        assert_lines(
            &text,
            &[
                "openrtc_sessions_active{tenant=\"acme\",agent=\"echo\"} 3",
                "openrtc_sessions_ended_total{tenant=\"acme\",agent=\"echo\",outcome=\"completed\"} 4",
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
            ],
        );
        assert!(!text.contains("s-1"), "no session id: {text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
    }

    #[test]
    fn call_media_health_is_exported_by_tenant_only() {
        let mut snapshot = PoolSnapshot::default();
        for (key, late_ms, degrading) in [(1, 12.0, false), (2, 180.0, true), (3, 30.0, true)] {
            let mut row = SessionSnapshot::default();
            row.id = crate::session::session_id(key);
            row.tenant = "acme".into();
            let mut media = openrtc_proto::CallMediaSnapshot::default();
            media.outbound_lateness_p99_ms = late_ms;
            media.degrading = degrading;
            row.media = Some(media);
            snapshot.sessions.push(row);
        }
        let mut row = SessionSnapshot::default();
        row.tenant = "globex".into();
        snapshot.sessions.push(row);
        let mut acme = TenantSnapshot::default();
        acme.call_frames_missing_count = 5;
        acme.call_frames_dropped_count = 2;
        snapshot.tenants.insert("acme".into(), acme);
        snapshot
            .tenants
            .insert("globex".into(), TenantSnapshot::default());
        let text = render(&snapshot);
        assert_lines(
            &text,
            &[
                "# TYPE openrtc_phone_call_frames_missing_total counter",
                "openrtc_phone_call_frames_missing_total{tenant=\"acme\"} 5",
                "openrtc_phone_call_frames_dropped_total{tenant=\"acme\"} 2",
                "openrtc_phone_call_frames_missing_total{tenant=\"globex\"} 0",
                "# TYPE openrtc_phone_call_outbound_lateness_seconds gauge",
                "openrtc_phone_call_outbound_lateness_seconds{tenant=\"acme\"} 0.18",
                "openrtc_phone_calls_degrading{tenant=\"acme\"} 2",
                "openrtc_phone_calls_degrading{tenant=\"globex\"} 0",
            ],
        );
        assert!(
            !text.contains("openrtc_phone_call_outbound_lateness_seconds{tenant=\"globex\"}"),
            "no lateness for a tenant without calls: {text}"
        );
    }

    #[test]
    fn a_livekit_worker_exports_its_registration_and_offers() {
        let mut snapshot = PoolSnapshot::default();
        assert!(
            !render(&snapshot).contains("livekit"),
            "none without LiveKit"
        );
        let mut livekit = openrtc_proto::LiveKitWorkerSnapshot::default();
        livekit.connected = true;
        livekit.load = 0.25;
        livekit.jobs_running_count = 3;
        livekit.offers_accepted_count = 7;
        livekit.offers_refused_count = 2;
        livekit.assignment_timeout_count = 1;
        snapshot.worker.livekit = Some(livekit);
        assert_lines(
            &render(&snapshot),
            &[
                "openrtc_livekit_connected 1",
                "openrtc_livekit_load 0.25",
                "openrtc_livekit_jobs_running 3",
                "openrtc_livekit_offers_total{result=\"accepted\"} 7",
                "openrtc_livekit_offers_total{result=\"refused\"} 2",
                "openrtc_livekit_assignment_timeouts_total 1",
                "openrtc_livekit_reconnects_total 0",
            ],
        );
    }

    #[test]
    fn label_values_are_escaped_for_the_text_format() {
        assert_eq!(
            label("tenant", "a\\b\"c\nd"),
            ("tenant", "a\\\\b\\\"c\\nd".to_owned())
        );
        assert_eq!(label("tenant", "acme"), ("tenant", "acme".to_owned()));
    }

    #[test]
    fn sessions_are_counted_by_tenant_agent_and_outcome_summing_to_the_totals() {
        let mut snapshot = PoolSnapshot::default();
        snapshot.totals_by_tenant_agent = vec![
            pair("acme", "echo", 5, 3, 1),
            pair("acme", "hot", 2, 0, 2),
            pair("globex", "echo", 1, 1, 0),
        ];
        snapshot.totals_by_tenant_agent[1].totals.killed_count = 1;
        let text = render(&snapshot);
        assert_lines(
            &text,
            &[
                "# TYPE openrtc_sessions_started_total counter",
                "openrtc_sessions_started_total{tenant=\"acme\",agent=\"echo\"} 5",
                "openrtc_sessions_started_total{tenant=\"acme\",agent=\"hot\"} 2",
                "openrtc_sessions_started_total{tenant=\"globex\",agent=\"echo\"} 1",
                "# TYPE openrtc_sessions_ended_total counter",
                "openrtc_sessions_ended_total{tenant=\"acme\",agent=\"echo\",outcome=\"completed\"} 3",
                "openrtc_sessions_ended_total{tenant=\"acme\",agent=\"echo\",outcome=\"failed\"} 1",
                "openrtc_sessions_ended_total{tenant=\"acme\",agent=\"echo\",outcome=\"killed\"} 0",
                "openrtc_sessions_ended_total{tenant=\"acme\",agent=\"hot\",outcome=\"failed\"} 2",
                "openrtc_sessions_ended_total{tenant=\"acme\",agent=\"hot\",outcome=\"killed\"} 1",
                "openrtc_sessions_ended_total{tenant=\"globex\",agent=\"echo\",outcome=\"completed\"} 1",
            ],
        );
        // Every outcome of every pair, and nothing else: the sum is the worker's totals'.
        let ended: Vec<u64> = text
            .lines()
            .filter(|line| line.starts_with("openrtc_sessions_ended_total{"))
            .map(|line| {
                line.rsplit_once(' ')
                    .and_then(|(_, v)| v.parse().ok())
                    .expect("a count")
            })
            .collect();
        assert_eq!(ended.len(), 3 * 5);
        assert_eq!(ended.iter().sum::<u64>(), 3 + 1 + 2 + 1 + 1);
        assert!(
            !text.contains("{outcome="),
            "no outcome-only series:\n{text}"
        );
    }

    #[test]
    fn tracked_calls_render_counters_and_a_histogram_per_label() {
        let table = crate::calls::CallTable::default();
        let record = |label: &'static str, duration_us, failed, slow| {
            table.record(
                &crate::calls::CallLabel::from(label),
                crate::calls::CallRecord {
                    duration_us,
                    failed,
                    slow,
                    blocking: false,
                },
            );
        };
        // `llm`: 1 023 µs (under the first bound), 1 024 µs (the next), and 3 s.
        record("llm", 1_023, false, false);
        record("llm", 1_024, true, false);
        record("llm", 3_000_000, false, true);
        record("db \"main\"", 10, false, false);
        let mut snapshot = PoolSnapshot::default();
        snapshot.calls = table.snapshot(crate::calls::Buckets::With);
        let text = render(&snapshot);
        assert_lines(
            &text,
            &[
                "# TYPE openrtc_calls_total counter",
                "openrtc_calls_total{label=\"llm\"} 3",
                "openrtc_calls_failed_total{label=\"llm\"} 1",
                "openrtc_calls_slow_total{label=\"llm\"} 1",
                "openrtc_calls_blocking_total{label=\"llm\"} 0",
                "openrtc_calls_total{label=\"db \\\"main\\\"\"} 1",
                "# TYPE openrtc_call_duration_seconds histogram",
                "openrtc_call_duration_seconds_sum{label=\"llm\"} 3.002047",
                "openrtc_call_duration_seconds_count{label=\"llm\"} 3",
                "openrtc_call_duration_seconds_bucket{le=\"0.001024\",label=\"llm\"} 1",
                "openrtc_call_duration_seconds_bucket{le=\"0.00256\",label=\"llm\"} 2",
                "openrtc_call_duration_seconds_bucket{le=\"2.097152\",label=\"llm\"} 2",
                "openrtc_call_duration_seconds_bucket{le=\"5.24288\",label=\"llm\"} 3",
                "openrtc_call_duration_seconds_bucket{le=\"58.720256\",label=\"llm\"} 3",
                "openrtc_call_duration_seconds_bucket{le=\"+Inf\",label=\"llm\"} 3",
                "openrtc_call_duration_seconds_bucket{le=\"0.001024\",label=\"db \\\"main\\\"\"} 1",
            ],
        );
        let bounds: Vec<&str> = text
            .lines()
            .filter(|line| line.contains(",label=\"llm\"}"))
            .filter_map(|line| line.strip_prefix("openrtc_call_duration_seconds_bucket{le=\""))
            .filter_map(|rest| rest.split_once('"').map(|(le, _)| le))
            .collect();
        assert_eq!(
            bounds,
            [
                "0.001024",
                "0.00256",
                "0.00512",
                "0.01024",
                "0.024576",
                "0.049152",
                "0.098304",
                "0.262144",
                "0.524288",
                "1.048576",
                "2.097152",
                "5.24288",
                "10.48576",
                "29.360128",
                "58.720256",
                "+Inf"
            ]
        );
    }
}
