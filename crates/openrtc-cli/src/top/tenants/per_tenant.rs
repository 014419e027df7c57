//! One tenant's figures in `top`: the order tenants are listed in, the `--once` summary line,
//! a tenant's entry in the live view's summary line, and its detail lines under `--tenant`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use openrtc_proto::{BreakerSnapshot, BreakerState, PoolSnapshot, TenantSnapshot};

use super::{Piece, Tone, format_wait, probes, tenant_name};
use crate::top::format::{
    clean_text, format_bytes_compact, format_bytes_human, format_short_span, refusal_summary,
};

/// How many tenants the `--once` summary line names at most (those with the most sessions).
pub const SUMMARY_TENANTS: usize = 8;

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

/// The `--once` tenant summary line: `tenants: acme 8/10 open · globex 7 · +3 more`, the
/// [`SUMMARY_TENANTS`] tenants with the most sessions; `None` when the snapshot lists none.
#[must_use]
pub fn summary_text(snapshot: &PoolSnapshot) -> Option<String> {
    let tracked = snapshot.worker.mem_source.is_exact();
    let ordered = tenants_by_sessions(&snapshot.tenants);
    if ordered.is_empty() {
        return None;
    }
    let entries: Vec<String> = ordered
        .iter()
        .take(SUMMARY_TENANTS)
        .map(|(name, tenant)| {
            summary_entry(name, tenant, tracked)
                .iter()
                .map(|piece| piece.text.as_str())
                .collect()
        })
        .collect();
    let mut line = format!("tenants: {}", entries.join(" · "));
    if ordered.len() > SUMMARY_TENANTS {
        let _ = write!(line, " · +{} more", ordered.len() - SUMMARY_TENANTS);
    }
    Some(line)
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
    if let Some(piece) = tenant
        .auto_isolation
        .as_ref()
        .and_then(auto_isolation_piece)
    {
        usage.push(piece);
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

/// Automatic isolation, when it says something: `isolated in processes (back in 4m 10s
/// without offences, moved 1×)` while the tenant is moved, `offences 2/3 in 30s` while it
/// collects them, nothing with none.
#[must_use]
pub(super) fn auto_isolation_piece(auto: &openrtc_proto::AutoIsolationSnapshot) -> Option<Piece> {
    if auto.isolated {
        let back = auto
            .release_in_ms
            .map_or_else(String::new, |release_in_ms| {
                format!("back in {} without offences, ", format_wait(release_in_ms))
            });
        return Some(Piece::new(
            format!("isolated in processes ({back}moved {}×)", auto.moves_count),
            Tone::Warning,
        ));
    }
    (auto.offences_count > 0).then(|| {
        Piece::new(
            format!(
                "offences {}/{} in {}s",
                auto.offences_count, auto.offences_limit, auto.window_s
            ),
            Tone::Dim,
        )
    })
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

#[cfg(test)]
mod tests {
    use openrtc_proto::RefusalReason;

    use super::*;
    use crate::top::tenants::join_pieces;

    use crate::top::tenants::test_breaker as breaker;

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

    #[test]
    fn the_summary_line_names_the_busiest_tenants_and_counts_the_rest() {
        let mut snapshot = PoolSnapshot::default();
        assert_eq!(summary_text(&snapshot), None, "no tenants, no line");
        for number in 0..10_u32 {
            let mut tenant = TenantSnapshot::default();
            tenant.sessions_count = number;
            snapshot.tenants.insert(format!("t{number:02}"), tenant);
        }
        snapshot
            .tenants
            .get_mut("t09")
            .expect("listed")
            .breaker
            .state = BreakerState::Open;
        assert_eq!(
            summary_text(&snapshot).as_deref(),
            Some(
                "tenants: t09 9 open · t08 8 · t07 7 · t06 6 · t05 5 · t04 4 · t03 3 · t02 2 · +2 more"
            )
        );
    }
}
