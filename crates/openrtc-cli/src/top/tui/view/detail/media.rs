//! The detail pane's phone call: for a session that came from the media listener, its
//! provider and stream, and its audio's health over the worker's window (outbound lateness
//! and inbound jitter p99, frames missing and dropped), in the warning style when degrading.

use openrtc_proto::SessionSnapshot;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::label;
use crate::top::format::clean_text;
use crate::top::tui::view::Theme;

/// The call's lines: none for a session that is not a call.
pub(super) fn media_lines(session: &SessionSnapshot, theme: Theme) -> Vec<Line<'static>> {
    let Some(media) = &session.media else {
        return Vec::new();
    };
    let style = if media.degrading {
        theme.warning()
    } else {
        Style::new()
    };
    let verdict = if media.degrading { " · degrading" } else { "" };
    vec![
        Line::from(vec![
            label("call", theme),
            Span::raw(format!(
                "{} stream {} · {} frames in, {} out",
                clean_text(&media.provider, 16),
                clean_text(&media.stream_id, 48),
                media.frames_in_count,
                media.frames_out_count
            )),
        ]),
        Line::from(vec![
            label("audio", theme),
            Span::styled(
                format!(
                    "late p99 {:.0}ms · jitter p99 {:.0}ms · missing {} · dropped {} · jumps {} \
                     (last {} s){verdict}",
                    media.outbound_lateness_p99_ms,
                    media.inbound_jitter_p99_ms,
                    media.window_frames_missing_count,
                    media.window_frames_dropped_count,
                    media.window_stream_jumps_count,
                    media.window_ms / 1_000
                ),
                style,
            ),
        ]),
        Line::from(vec![
            label("", theme),
            Span::styled(
                format!(
                    "since it started: {} missing · {} dropped · {} stream-time jumps",
                    media.frames_missing_count,
                    media.frames_dropped_count,
                    media.stream_jumps_count
                ),
                theme.dim(),
            ),
        ]),
    ]
}
