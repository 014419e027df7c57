//! The tenant lines of a live worker's header block: breakers not closed, a failed config
//! reload, the filtered tenant's detail, the one-line tenant summary, and the config line,
//! styled from the [`Piece`]s of [`crate::top::tenants`].

use openrtc_proto::PoolSnapshot;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::super::Theme;
use super::super::text::{Align, fit};
use super::{Segment, join_segments};
use crate::top::tenants::{
    Piece, Tone, breakers_line, config_pieces, summary_entry, tenant_detail, tenants_by_sessions,
};

/// The style of a tone.
fn style(tone: Tone, theme: Theme) -> Style {
    match tone {
        Tone::Plain => Style::new(),
        Tone::Dim => theme.dim(),
        Tone::Warning => theme.warning(),
        Tone::Alert => theme.alert(),
    }
}

/// A piece as a styled span.
pub(super) fn span(piece: Piece, theme: Theme) -> Span<'static> {
    let tone_style = style(piece.tone, theme);
    Span::styled(piece.text, tone_style)
}

/// A line of one piece, cut with `…` at `width`.
fn single(piece: Piece, width: usize, theme: Theme) -> Line<'static> {
    let text = fit(&piece.text, width, Align::Left).trim_end().to_owned();
    Line::from(Span::styled(text, style(piece.tone, theme)))
}

/// A line of pieces joined with ` · `, as many whole pieces as fit (the first cut if it must).
fn joined(pieces: Vec<Piece>, width: usize, theme: Theme) -> Line<'static> {
    let segments: Vec<Segment> = pieces
        .into_iter()
        .map(|piece| vec![span(piece, theme)].into())
        .collect();
    join_segments(segments, width, theme)
}

/// A worker's tenant lines, most important first, in two parts: those shown above its memory
/// and lifetime line (breakers not closed, a failed config reload, the filtered tenant's two
/// detail lines, the tenant summary), and the config line shown below it. Nothing for a
/// snapshot without tenants or config.
#[must_use]
pub(super) fn lines(
    snapshot: &PoolSnapshot,
    tenant_filter: Option<&str>,
    width: usize,
    theme: Theme,
) -> (Vec<Line<'static>>, Option<Line<'static>>) {
    let mut upper = Vec::new();
    if let Some(breakers) = breakers_line(&snapshot.tenants) {
        upper.push(single(breakers, width, theme));
    }
    let config = snapshot.tenant_config.as_ref().map(config_pieces);
    if let Some((_, Some(error))) = &config {
        upper.push(single(error.clone(), width, theme));
    }
    let tracked = snapshot.worker.mem_source.is_exact();
    if let Some(name) = tenant_filter.filter(|_| !snapshot.tenants.is_empty()) {
        for detail in tenant_detail(name, snapshot.tenants.get(name), tracked) {
            upper.push(joined(detail, width, theme));
        }
    }
    if !snapshot.tenants.is_empty() {
        upper.push(summary_line(snapshot, width, theme));
    }
    let bottom = config.map(|(line, _)| single(line, width, theme));
    (upper, bottom)
}

/// `tenants: acme 12/12 48M open · beta 3/20 half_open · gamma 1 · +2 more`: the tenants with
/// the most sessions, as many whole entries as fit in `width`.
fn summary_line(snapshot: &PoolSnapshot, width: usize, theme: Theme) -> Line<'static> {
    let tracked = snapshot.worker.mem_source.is_exact();
    let entries: Vec<Vec<Piece>> = tenants_by_sessions(&snapshot.tenants)
        .into_iter()
        .map(|(name, tenant)| summary_entry(name, tenant, tracked))
        .collect();
    let entry_width = |entry: &Vec<Piece>| -> usize {
        entry
            .iter()
            .map(|piece| unicode_width::UnicodeWidthStr::width(piece.text.as_str()))
            .sum()
    };
    let label = "tenants: ";
    let separator = " · ";
    let all_width: usize = label.len()
        + entries.iter().map(entry_width).sum::<usize>()
        + separator.len() * entries.len().saturating_sub(1);
    let more_room = if all_width <= width {
        0
    } else {
        format!("{separator}+{} more", entries.len()).len()
    };
    let mut spans = vec![Span::styled(label, theme.dim())];
    let mut used = label.len();
    let mut shown = 0;
    for entry in &entries {
        let gap = if shown == 0 { 0 } else { separator.len() };
        let needed = gap + entry_width(entry);
        if used + needed + more_room > width {
            break;
        }
        if shown > 0 {
            spans.push(Span::styled(separator, theme.dim()));
        }
        spans.extend(entry.iter().cloned().map(|piece| span(piece, theme)));
        used += needed;
        shown += 1;
    }
    if shown < entries.len() {
        let prefix = if shown == 0 { "" } else { separator };
        spans.push(Span::styled(
            format!("{prefix}+{} more", entries.len() - shown),
            theme.dim(),
        ));
    }
    Line::from(spans)
}
