//! The tenant parts of `top`: the breaker, tenant-config, shared-state and failure-streak
//! lines of a worker's header, and (in `per_tenant`) the tenant summary line of
//! `--once`, a tenant's entry in the live view's summary line and one tenant's detail lines. Pure
//! functions that return text in [`Piece`]s, which `--once` joins plainly and the live view
//! styles by their [`Tone`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use openrtc_proto::{
    BreakerSnapshot, BreakerState, PoolSnapshot, TenantConfigSnapshot, TenantSnapshot,
    WorkerSnapshot,
};

use super::columns::NAME_CELL_MAX_CHARS;
use super::format::{clean_text, format_bytes_human, format_uptime};

mod per_tenant;

pub use per_tenant::{
    SUMMARY_TENANTS, breaker_detail, summary_entry, summary_text, tenant_detail,
    tenants_by_sessions,
};

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
    shared(worker, |sessions, total| {
        format!(" (one process per session would load it {sessions} times: ~{total})")
    })
}

/// The shared state in fewer words, for a header line with little room: `shared: 180.0 MiB
/// prewarmed (~1.1 GiB as 6 processes)`, or `shared: 180.0 MiB prewarmed` below two sessions;
/// `None` without a prewarm.
#[must_use]
pub fn shared_brief(worker: &WorkerSnapshot) -> Option<Piece> {
    shared(worker, |sessions, total| {
        format!(" (~{total} as {sessions} processes)")
    })
}

/// `shared: <size> prewarmed`, and from two sessions on the cost of one copy per session as
/// `estimate(sessions, total)` words it.
fn shared(worker: &WorkerSnapshot, estimate: impl FnOnce(u32, String) -> String) -> Option<Piece> {
    let shared_bytes = worker.shared_bytes?;
    let mut text = format!("shared: {} prewarmed", format_bytes_human(shared_bytes));
    let sessions = worker.active_sessions;
    if sessions >= 2 {
        let total = format_bytes_human(shared_bytes.saturating_mul(u64::from(sessions)));
        text.push_str(&estimate(sessions, total));
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

/// The lines `--once` adds under a worker's two header lines: breakers not closed, the tenant
/// config (and its failed reload), the shared state, the chosen tenant's detail, then the
/// tenant summary line. Empty for a snapshot without any of these.
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
    if let Some(livekit) = crate::top::livekit::livekit_piece(&snapshot.worker) {
        let _ = writeln!(lines, "{}", livekit.text);
    }
    let tracked = snapshot.worker.mem_source.is_exact();
    if let Some(name) = only_tenant.filter(|_| !snapshot.tenants.is_empty()) {
        for line in tenant_detail(name, snapshot.tenants.get(name), tracked) {
            let _ = writeln!(lines, "{}", join_pieces(&line));
        }
    }
    // Filtered to one tenant, its detail says all; else the summary line names the busiest.
    if let Some(summary) = summary_text(snapshot).filter(|_| only_tenant.is_none()) {
        let _ = writeln!(lines, "{summary}");
    }
    lines
}

/// A breaker in `state` with these figures, for the tests of this module and `per_tenant`.
#[cfg(test)]
fn test_breaker(state: BreakerState, failures: u32, samples: u32) -> BreakerSnapshot {
    let mut breaker = BreakerSnapshot::default();
    breaker.state = state;
    breaker.window_failures_count = failures;
    breaker.window_samples_count = samples;
    breaker.window_ms = 60_000;
    breaker.cooldown_ms = 30_000;
    breaker
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(state: BreakerState, failures: u32, samples: u32) -> BreakerSnapshot {
        test_breaker(state, failures, samples)
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
}
