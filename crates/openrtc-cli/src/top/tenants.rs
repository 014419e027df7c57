//! The tenant parts of `top`: the breaker, tenant-config, shared-state and failure-streak
//! lines of a worker's header, the tenant table of `--once`, a tenant's entry in the live
//! view's summary line, and one tenant's detail lines. Pure functions that return text in
//! [`Piece`]s, which `--once` joins plainly and the live view styles by their [`Tone`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use openrtc_proto::{
    BreakerSnapshot, BreakerState, PoolSnapshot, TenantConfigSnapshot, TenantSnapshot,
    WorkerSnapshot,
};

use super::columns::NAME_CELL_MAX_CHARS;
use super::format::{
    clean_text, format_bytes_compact, format_bytes_human, format_short_span, format_uptime,
    refusal_summary,
};
use super::table::render_table;
use super::tui::view::text::Align;

/// How many tenants the `--once` tenant table lists at most (those with the most sessions).
pub const TENANT_TABLE_ROWS: usize = 10;

/// The widest a config path gets before it is cut with `…`.
const CONFIG_PATH_MAX_CHARS: usize = 64;

/// The widest a config reload error gets before it is cut with `…`.
const CONFIG_ERROR_MAX_CHARS: usize = 160;

/// How much a piece of text matters, for the live view's styles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Ordinary figures.
    Plain,
    /// Context: settings, labels.
    Dim,
    /// Worth noticing: a cap reached, a half-open breaker, a failed reload.
    Warning,
    /// Something refuses sessions now: an open breaker, a heap over its budget.
    Alert,
}

/// A piece of a line with its tone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The text, already cleaned for a terminal.
    pub text: String,
    /// How much it matters.
    pub tone: Tone,
}

impl Piece {
    /// A piece of text with a tone.
    #[must_use]
    pub fn new(text: impl Into<String>, tone: Tone) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }
}

/// Joins pieces as `--once` prints them: separated by ` · `.
#[must_use]
pub fn join_pieces(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|piece| piece.text.as_str())
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A wait until something happens, rounded up to whole seconds above one: `400ms`, `24s`,
/// `1m05s`.
#[must_use]
pub fn format_wait(milliseconds: u64) -> String {
    if milliseconds < 1_000 {
        format!("{milliseconds}ms")
    } else {
        format_uptime(milliseconds.div_ceil(1_000) * 1_000)
    }
}

/// A tenant name, cleaned and bounded for a line or a cell.
fn tenant_name(name: &str) -> String {
    clean_text(name, NAME_CELL_MAX_CHARS)
}

/// `1 probe`, `2 probes`.
fn probes(count: u32) -> String {
    if count == 1 {
        "1 probe".to_owned()
    } else {
        format!("{count} probes")
    }
}

/// A breaker that is not closed, briefly: `open (retry 24s, 3/5 failed)`, `half_open (1
/// probe)`; `None` when it is closed or disabled.
#[must_use]
pub fn breaker_brief(breaker: &BreakerSnapshot) -> Option<Piece> {
    match breaker.state {
        BreakerState::Open => {
            let mut details = Vec::new();
            if let Some(retry_after_ms) = breaker.retry_after_ms {
                details.push(format!("retry {}", format_wait(retry_after_ms)));
            }
            if breaker.window_samples_count > 0 {
                details.push(format!(
                    "{}/{} failed",
                    breaker.window_failures_count, breaker.window_samples_count
                ));
            }
            let text = if details.is_empty() {
                "open".to_owned()
            } else {
                format!("open ({})", details.join(", "))
            };
            Some(Piece::new(text, Tone::Alert))
        }
        BreakerState::HalfOpen => Some(Piece::new(
            format!("half_open ({})", probes(breaker.probes_in_flight_count)),
            Tone::Warning,
        )),
        _ => None,
    }
}

/// The header line of the breakers that are not closed, open ones first:
/// `breakers: acme open (retry 24s, 3/5 failed), beta half_open (1 probe)`; `None` when every
/// breaker is closed or disabled.
#[must_use]
pub fn breakers_line(tenants: &BTreeMap<String, TenantSnapshot>) -> Option<Piece> {
    let mut tripped: Vec<(&String, &TenantSnapshot, Piece)> = tenants
        .iter()
        .filter_map(|(name, tenant)| {
            breaker_brief(&tenant.breaker).map(|brief| (name, tenant, brief))
        })
        .collect();
    if tripped.is_empty() {
        return None;
    }
    tripped.sort_by_key(|(name, tenant, _)| (tenant.breaker.state != BreakerState::Open, *name));
    let tone = if tripped
        .iter()
        .any(|(_, tenant, _)| tenant.breaker.state == BreakerState::Open)
    {
        Tone::Alert
    } else {
        Tone::Warning
    };
    let entries: Vec<String> = tripped
        .iter()
        .map(|(name, _, brief)| format!("{} {}", tenant_name(name), brief.text))
        .collect();
    Some(Piece::new(
        format!("breakers: {}", entries.join(", ")),
        tone,
    ))
}

/// The tenant config line, `config: tenants.toml v3f9a1c2e8b7d6a50`, and when its last reload
/// failed, the warning `reload failed: <error>; keeping v3f9a1c2e8b7d6a50`.
#[must_use]
pub fn config_pieces(config: &TenantConfigSnapshot) -> (Piece, Option<Piece>) {
    let version = clean_text(&config.version, 32);
    let line = Piece::new(
        format!(
            "config: {} v{version}",
            clean_text(&config.path, CONFIG_PATH_MAX_CHARS)
        ),
        Tone::Dim,
    );
    let error = config.last_error.as_ref().map(|error| {
        Piece::new(
            format!(
                "reload failed: {}; keeping v{version}",
                clean_text(error, CONFIG_ERROR_MAX_CHARS)
            ),
            Tone::Warning,
        )
    });
    (line, error)
}

/// The state the prewarm loaded once and every session shares, and what loading it once per
/// session would cost: `shared: 180.0 MiB prewarmed (one process per session would load it 4
/// times: ~720.0 MiB)`; `None` without a prewarm.
#[must_use]
pub fn shared_piece(worker: &WorkerSnapshot) -> Option<Piece> {
    let shared_bytes = worker.shared_bytes?;
    let mut text = format!("shared: {} prewarmed", format_bytes_human(shared_bytes));
    let sessions = worker.active_sessions;
    if sessions >= 2 {
        let _ = write!(
            text,
            " (one process per session would load it {sessions} times: ~{})",
            format_bytes_human(shared_bytes.saturating_mul(u64::from(sessions)))
        );
    }
    Some(Piece::new(text, Tone::Dim))
}

/// The shared state in fewer words, for a header line with little room: `shared: 180.0 MiB
/// prewarmed (~1.1 GiB as 6 processes)`, or `shared: 180.0 MiB prewarmed` below two sessions;
/// `None` without a prewarm.
#[must_use]
pub fn shared_brief(worker: &WorkerSnapshot) -> Option<Piece> {
    let shared_bytes = worker.shared_bytes?;
    let mut text = format!("shared: {} prewarmed", format_bytes_human(shared_bytes));
    let sessions = worker.active_sessions;
    if sessions >= 2 {
        let _ = write!(
            text,
            " (~{} as {sessions} processes)",
            format_bytes_human(shared_bytes.saturating_mul(u64::from(sessions)))
        );
    }
    Some(Piece::new(text, Tone::Dim))
}

/// The agent failures in a row, when there are any: `3 failures in a row (drains at 5)`.
#[must_use]
pub fn failure_streak(worker: &WorkerSnapshot) -> Option<Piece> {
    let count = worker.consecutive_failures_count;
    if count == 0 {
        return None;
    }
    let noun = if count == 1 { "failure" } else { "failures" };
    let mut text = format!("{count} {noun} in a row");
    if let Some(limit) = worker.consecutive_failure_limit {
        let _ = write!(text, " (drains at {limit})");
    }
    Some(Piece::new(text, Tone::Warning))
}

/// The tenants in the order they are listed: most sessions first, then most refusals, then by
/// name.
#[must_use]
pub fn tenants_by_sessions(
    tenants: &BTreeMap<String, TenantSnapshot>,
) -> Vec<(&String, &TenantSnapshot)> {
    let mut ordered: Vec<(&String, &TenantSnapshot)> = tenants.iter().collect();
    ordered.sort_by(|(left_name, left), (right_name, right)| {
        right
            .sessions_count
            .cmp(&left.sessions_count)
            .then_with(|| refused(right).cmp(&refused(left)))
            .then_with(|| left_name.cmp(right_name))
    });
    ordered
}

/// A tenant's refusals, all reasons together.
fn refused(tenant: &TenantSnapshot) -> u64 {
    tenant.refusals.values().sum()
}

/// Whether a tenant runs as many sessions as its cap allows.
fn cap_reached(tenant: &TenantSnapshot) -> bool {
    tenant
        .max_sessions
        .is_some_and(|cap| tenant.sessions_count >= cap)
}

/// Whether a tenant's sessions hold more heap than its budget.
fn over_heap_budget(tenant: &TenantSnapshot) -> bool {
    tenant
        .max_heap_bytes
        .is_some_and(|budget| tenant.heap_live_bytes > budget)
}

/// Bytes as MiB with one decimal and no unit, for the `_MB` columns.
fn mebibytes_figure(bytes: u64) -> String {
    // Precision loss only past 2^53 bytes, far beyond any heap.
    #[allow(clippy::cast_precision_loss)]
    let mebibytes = bytes as f64 / (1024.0 * 1024.0);
    format!("{mebibytes:.1}")
}

/// The `--once` tenant table of a worker: one row per tenant (only `only_tenant` when set),
/// most sessions first, at most [`TENANT_TABLE_ROWS`]; empty when the snapshot lists no
/// tenant. Heap figures are `-` without the tracking allocator.
#[must_use]
pub fn tenant_table(snapshot: &PoolSnapshot, only_tenant: Option<&str>) -> String {
    let tracked = snapshot.worker.mem_source.is_exact();
    let listed: Vec<(&String, &TenantSnapshot)> = tenants_by_sessions(&snapshot.tenants)
        .into_iter()
        .filter(|(name, _)| only_tenant.is_none_or(|wanted| name.as_str() == wanted))
        .collect();
    if listed.is_empty() {
        return String::new();
    }
    let columns = [
        ("TENANT", Align::Left),
        ("SESSIONS", Align::Right),
        ("CAP", Align::Right),
        ("HEAP_MB", Align::Right),
        ("BUDGET_MB", Align::Right),
        ("FAILED", Align::Right),
        ("REFUSED", Align::Right),
        ("BREAKER", Align::Left),
    ];
    let rows: Vec<Vec<String>> = listed
        .iter()
        .take(TENANT_TABLE_ROWS)
        .map(|(name, tenant)| {
            vec![
                tenant_name(name),
                tenant.sessions_count.to_string(),
                tenant
                    .max_sessions
                    .map_or_else(|| "-".to_owned(), |cap| cap.to_string()),
                if tracked {
                    mebibytes_figure(tenant.heap_live_bytes)
                } else {
                    "-".to_owned()
                },
                tenant
                    .max_heap_bytes
                    .map_or_else(|| "-".to_owned(), mebibytes_figure),
                tenant.failed_count.to_string(),
                refused(tenant).to_string(),
                tenant.breaker.state.as_str().to_owned(),
            ]
        })
        .collect();
    let mut table = render_table(&columns, &rows, "");
    if listed.len() > TENANT_TABLE_ROWS {
        let _ = writeln!(
            table,
            "(… and {} more tenants: --tenant NAME shows one)",
            listed.len() - TENANT_TABLE_ROWS
        );
    }
    table
}

/// A tenant's entry in the live view's one-line summary: `acme 12/12 48M open`: its sessions
/// and cap, its heap when tracked and not zero, and its breaker when not closed.
#[must_use]
pub fn summary_entry(name: &str, tenant: &TenantSnapshot, tracked: bool) -> Vec<Piece> {
    let mut pieces = vec![Piece::new(tenant_name(name), Tone::Plain)];
    let (sessions, tone) = match tenant.max_sessions {
        Some(cap) => (
            format!(" {}/{cap}", tenant.sessions_count),
            if cap_reached(tenant) {
                Tone::Warning
            } else {
                Tone::Plain
            },
        ),
        None => (format!(" {}", tenant.sessions_count), Tone::Plain),
    };
    pieces.push(Piece::new(sessions, tone));
    if tracked && tenant.heap_live_bytes > 0 {
        let tone = if over_heap_budget(tenant) {
            Tone::Alert
        } else {
            Tone::Dim
        };
        pieces.push(Piece::new(
            format!(" {}", format_bytes_compact(tenant.heap_live_bytes)),
            tone,
        ));
    }
    match tenant.breaker.state {
        BreakerState::Open => pieces.push(Piece::new(" open", Tone::Alert)),
        BreakerState::HalfOpen => pieces.push(Piece::new(" half_open", Tone::Warning)),
        _ => {}
    }
    pieces
}

/// One tenant's detail, for `--tenant NAME`: two lines of pieces. The first: its sessions
/// against its cap, its heap against its budget, its session memory cap, its sessions started
/// and failed. The second: its breaker in full and its refusals by reason. A tenant the
/// snapshot does not list gets one line saying so.
#[must_use]
pub fn tenant_detail(
    name: &str,
    tenant: Option<&TenantSnapshot>,
    tracked: bool,
) -> Vec<Vec<Piece>> {
    let title = format!("tenant {}:", tenant_name(name));
    let Some(tenant) = tenant else {
        return vec![vec![Piece::new(
            format!("{title} not seen by this worker"),
            Tone::Dim,
        )]];
    };
    let mut usage = Vec::new();
    let sessions = match tenant.max_sessions {
        Some(cap) if cap_reached(tenant) => Piece::new(
            format!(
                "{title} sessions {}/{cap} (cap reached)",
                tenant.sessions_count
            ),
            Tone::Warning,
        ),
        Some(cap) => Piece::new(
            format!("{title} sessions {}/{cap}", tenant.sessions_count),
            Tone::Plain,
        ),
        None => Piece::new(
            format!("{title} sessions {} (no cap)", tenant.sessions_count),
            Tone::Plain,
        ),
    };
    usage.push(sessions);
    let heap = if !tracked {
        Piece::new("heap untracked", Tone::Dim)
    } else {
        let live = format_bytes_human(tenant.heap_live_bytes);
        match tenant.max_heap_bytes {
            Some(budget) if over_heap_budget(tenant) => Piece::new(
                format!("heap {live} over its {} budget", format_bytes_human(budget)),
                Tone::Alert,
            ),
            Some(budget) => Piece::new(
                format!("heap {live} of {}", format_bytes_human(budget)),
                Tone::Plain,
            ),
            None => Piece::new(format!("heap {live}"), Tone::Plain),
        }
    };
    usage.push(heap);
    if let Some(limit) = tenant.session_memory_limit_bytes {
        usage.push(Piece::new(
            format!("session cap {}", format_bytes_human(limit)),
            Tone::Dim,
        ));
    }
    usage.push(Piece::new(
        format!(
            "started {} failed {}",
            tenant.started_count, tenant.failed_count
        ),
        Tone::Plain,
    ));
    if let Some(isolation) = &tenant.isolation {
        usage.push(Piece::new(
            format!("isolation {}", clean_text(isolation, 16)),
            Tone::Dim,
        ));
    }
    let (refused_total, reasons) = refusal_summary(&tenant.refusals);
    let refusals = match reasons {
        Some(reasons) => Piece::new(
            format!("refused {refused_total} ({reasons})"),
            Tone::Warning,
        ),
        None => Piece::new(format!("refused {refused_total}"), Tone::Plain),
    };
    vec![usage, vec![breaker_detail(&tenant.breaker), refusals]]
}

/// A breaker in full: `breaker open (retry in 24s, 3 of 5 failed in 60s, cooldown 30s,
/// opened 2×)`.
#[must_use]
pub fn breaker_detail(breaker: &BreakerSnapshot) -> Piece {
    let window = if breaker.window_samples_count == 0 {
        format!("no outcome in {}", format_short_span(breaker.window_ms))
    } else {
        format!(
            "{} of {} failed in {}",
            breaker.window_failures_count,
            breaker.window_samples_count,
            format_short_span(breaker.window_ms)
        )
    };
    let cooldown = format!("cooldown {}", format_short_span(breaker.cooldown_ms));
    let opened = format!("opened {}×", breaker.opened_count);
    let (details, tone) = match breaker.state {
        BreakerState::Open => {
            let mut details = Vec::new();
            if let Some(retry_after_ms) = breaker.retry_after_ms {
                details.push(format!("retry in {}", format_wait(retry_after_ms)));
            }
            details.extend([window, cooldown, opened]);
            (details, Tone::Alert)
        }
        BreakerState::HalfOpen => (
            vec![
                format!("{} in flight", probes(breaker.probes_in_flight_count)),
                cooldown,
                opened,
            ],
            Tone::Warning,
        ),
        BreakerState::Disabled => (Vec::new(), Tone::Dim),
        _ => (vec![window, opened], Tone::Plain),
    };
    let state = breaker.state.as_str();
    if details.is_empty() {
        Piece::new(format!("breaker {state}"), tone)
    } else {
        Piece::new(format!("breaker {state} ({})", details.join(", ")), tone)
    }
}

/// The lines `--once` adds under a worker's two header lines: breakers not closed, the tenant
/// config (and its failed reload), the shared state, the chosen tenant's detail, then the
/// tenant table followed by a blank line. Empty for a snapshot without any of these.
#[must_use]
pub fn once_lines(snapshot: &PoolSnapshot, only_tenant: Option<&str>) -> String {
    let mut lines = String::new();
    if let Some(breakers) = breakers_line(&snapshot.tenants) {
        let _ = writeln!(lines, "{}", breakers.text);
    }
    if let Some(config) = &snapshot.tenant_config {
        let (line, error) = config_pieces(config);
        let _ = writeln!(lines, "{}", line.text);
        if let Some(error) = error {
            let _ = writeln!(lines, "{}", error.text);
        }
    }
    if let Some(shared) = shared_piece(&snapshot.worker) {
        let _ = writeln!(lines, "{}", shared.text);
    }
    let tracked = snapshot.worker.mem_source.is_exact();
    if let Some(name) = only_tenant.filter(|_| !snapshot.tenants.is_empty()) {
        for line in tenant_detail(name, snapshot.tenants.get(name), tracked) {
            let _ = writeln!(lines, "{}", join_pieces(&line));
        }
    }
    let table = tenant_table(snapshot, only_tenant);
    if !table.is_empty() {
        lines.push_str(&table);
        lines.push('\n');
    }
    lines
}

#[cfg(test)]
mod tests {
    use openrtc_proto::RefusalReason;

    use super::*;

    /// A breaker in `state` with these figures.
    fn breaker(state: BreakerState, failures: u32, samples: u32) -> BreakerSnapshot {
        let mut breaker = BreakerSnapshot::default();
        breaker.state = state;
        breaker.window_failures_count = failures;
        breaker.window_samples_count = samples;
        breaker.window_ms = 60_000;
        breaker.cooldown_ms = 30_000;
        breaker
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(format_wait(400), "400ms");
        assert_eq!(format_wait(1_000), "1s");
        assert_eq!(format_wait(23_001), "24s");
        assert_eq!(format_wait(64_500), "1m05s");
    }

    #[test]
    fn only_breakers_that_are_not_closed_are_listed_open_first() {
        let mut tenants = BTreeMap::new();
        let mut closed = TenantSnapshot::default();
        closed.breaker = breaker(BreakerState::Closed, 1, 9);
        tenants.insert("calm".to_owned(), closed);
        let mut disabled = TenantSnapshot::default();
        disabled.breaker.state = BreakerState::Disabled;
        tenants.insert("off".to_owned(), disabled);
        assert_eq!(breakers_line(&tenants), None);

        let mut half_open = TenantSnapshot::default();
        half_open.breaker = breaker(BreakerState::HalfOpen, 0, 0);
        half_open.breaker.probes_in_flight_count = 1;
        tenants.insert("beta".to_owned(), half_open);
        assert_eq!(
            breakers_line(&tenants),
            Some(Piece::new(
                "breakers: beta half_open (1 probe)",
                Tone::Warning
            ))
        );
        let mut open = TenantSnapshot::default();
        open.breaker = breaker(BreakerState::Open, 3, 5);
        open.breaker.retry_after_ms = Some(23_400);
        tenants.insert("zeta\u{1b}[2J".to_owned(), open);
        assert_eq!(
            breakers_line(&tenants),
            Some(Piece::new(
                "breakers: zeta\\u{1b}[2J open (retry 24s, 3/5 failed), beta half_open (1 probe)",
                Tone::Alert
            ))
        );
    }

    #[test]
    fn a_failed_reload_says_which_version_stays() {
        let mut config = TenantConfigSnapshot::default();
        config.path = "tenants.toml".into();
        config.version = "3f9a1c2e8b7d6a50".into();
        let (line, error) = config_pieces(&config);
        assert_eq!(line.text, "config: tenants.toml v3f9a1c2e8b7d6a50");
        assert_eq!(error, None);
        config.last_error = Some("line 4: expected a number\n".into());
        let (_, error) = config_pieces(&config);
        assert_eq!(
            error,
            Some(Piece::new(
                "reload failed: line 4: expected a number\\n; keeping v3f9a1c2e8b7d6a50",
                Tone::Warning
            ))
        );
    }

    #[test]
    fn shared_state_is_multiplied_only_by_two_sessions_or_more() {
        let mut worker = WorkerSnapshot::default();
        assert_eq!(shared_piece(&worker), None);
        worker.shared_bytes = Some(180 * 1_048_576);
        worker.active_sessions = 1;
        assert_eq!(
            shared_piece(&worker).map(|piece| piece.text),
            Some("shared: 180.0 MiB prewarmed".to_owned())
        );
        assert_eq!(
            shared_brief(&worker).map(|piece| piece.text),
            Some("shared: 180.0 MiB prewarmed".to_owned())
        );
        worker.active_sessions = 4;
        assert_eq!(
            shared_brief(&worker).map(|piece| piece.text),
            Some("shared: 180.0 MiB prewarmed (~720.0 MiB as 4 processes)".to_owned())
        );
        assert_eq!(
            shared_piece(&worker).map(|piece| piece.text),
            Some(
                "shared: 180.0 MiB prewarmed (one process per session would load it 4 times: \
                 ~720.0 MiB)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_failure_streak_names_its_limit() {
        let mut worker = WorkerSnapshot::default();
        assert_eq!(failure_streak(&worker), None);
        worker.consecutive_failures_count = 1;
        assert_eq!(
            failure_streak(&worker).map(|piece| piece.text),
            Some("1 failure in a row".to_owned())
        );
        worker.consecutive_failures_count = 3;
        worker.consecutive_failure_limit = Some(5);
        assert_eq!(
            failure_streak(&worker).map(|piece| piece.text),
            Some("3 failures in a row (drains at 5)".to_owned())
        );
    }

    #[test]
    fn a_tenant_s_detail_names_caps_heap_breaker_and_refusals() {
        let mut tenant = TenantSnapshot::default();
        tenant.sessions_count = 12;
        tenant.max_sessions = Some(12);
        tenant.heap_live_bytes = 70 * 1_048_576;
        tenant.max_heap_bytes = Some(64 * 1_048_576);
        tenant.started_count = 40;
        tenant.failed_count = 3;
        tenant.refusals.insert(RefusalReason::BreakerOpen, 3);
        tenant.refusals.insert(RefusalReason::TenantCap, 12);
        tenant.breaker = breaker(BreakerState::Open, 3, 5);
        tenant.breaker.retry_after_ms = Some(24_000);
        tenant.breaker.opened_count = 2;
        let lines: Vec<String> = tenant_detail("acme", Some(&tenant), true)
            .iter()
            .map(|line| join_pieces(line))
            .collect();
        assert_eq!(
            lines,
            [
                "tenant acme: sessions 12/12 (cap reached) · heap 70.0 MiB over its 64.0 MiB \
                 budget · started 40 failed 3",
                "breaker open (retry in 24s, 3 of 5 failed in 60s, cooldown 30s, opened 2×) · \
                 refused 15 (tenant_cap 12, breaker_open 3)",
            ]
        );
        let untracked = tenant_detail("acme", Some(&tenant), false);
        assert_eq!(untracked[0][1], Piece::new("heap untracked", Tone::Dim));
        let unknown = tenant_detail("nobody", None, true);
        assert_eq!(
            join_pieces(&unknown[0]),
            "tenant nobody: not seen by this worker"
        );
    }

    #[test]
    fn a_summary_entry_marks_a_reached_cap_and_a_tripped_breaker() {
        let mut tenant = TenantSnapshot::default();
        tenant.sessions_count = 3;
        tenant.max_sessions = Some(3);
        tenant.heap_live_bytes = 10_276_044;
        tenant.breaker.state = BreakerState::HalfOpen;
        let entry = summary_entry("acme", &tenant, true);
        let text: String = entry.iter().map(|piece| piece.text.as_str()).collect();
        assert_eq!(text, "acme 3/3 9.8M half_open");
        assert_eq!(entry[1].tone, Tone::Warning, "the cap is reached");
        let untracked: String = summary_entry("acme", &tenant, false)
            .iter()
            .map(|piece| piece.text.as_str())
            .collect();
        assert_eq!(untracked, "acme 3/3 half_open");
    }
}
