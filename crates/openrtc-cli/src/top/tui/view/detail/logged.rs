//! The detail pane's section of an ended session's last records: what its flight recorder
//! kept before it failed, panicked, was killed or stalled, newest at the bottom and styled by
//! level, as many of the newest as the room given allows, then the command that reads the
//! rest from the worker's log file.

use openrtc_proto::{EndedSessionSnapshot, WorkerSnapshot};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::super::Theme;
use super::super::text::{Align, fit, wrap};
use super::{LABEL_WIDTH, label, wrapped_lines};
use crate::top::flight_recorder::{
    RECORD_PREFIX_CHARS, RecordText, logs_hint, record_text, records_title,
};
use crate::top::tenants::Tone;

/// The most lines a warning or an error wraps to; the rest of a longer one is cut with `…`.
/// Other records take one line each, so that more of them fit.
const RECORD_MAX_LINES: usize = 3;

/// The width of a record's time, which is drawn dim.
const TIME_CHARS: usize = 12;

/// The section's lines: a title, the newest records that fit in `record_lines` lines (oldest
/// of them first), and, when the worker writes a log file, the command that reads everything
/// the session logged. Nothing for a session whose flight recorder kept nothing.
pub(super) fn lines(
    ended: &EndedSessionSnapshot,
    worker: Option<&WorkerSnapshot>,
    width: usize,
    record_lines: usize,
    theme: Theme,
) -> Vec<Line<'static>> {
    let records = &ended.flight_recorder;
    if records.is_empty() {
        return Vec::new();
    }
    let room = width.saturating_sub(LABEL_WIDTH);
    let mut blocks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut used = 0;
    for record in records.iter().rev() {
        let mut block = record_block(&record_text(record), room, theme);
        if used + block.len() > record_lines {
            if blocks.is_empty() {
                // Even the newest record is taller than the room: show its start.
                block.truncate(record_lines.max(1));
                blocks.push(block);
            }
            break;
        }
        used += block.len();
        blocks.push(block);
    }
    let mut lines = vec![Line::from(vec![
        label("logged", theme),
        Span::raw(
            fit(
                &records_title(blocks.len(), records.len()),
                room,
                Align::Left,
            )
            .trim_end()
            .to_owned(),
        ),
    ])];
    lines.extend(blocks.into_iter().rev().flatten());
    if let Some(hint) = worker.and_then(|worker| logs_hint(worker, ended.id)) {
        lines.extend(wrapped_lines(&hint, width, 4, theme.dim(), theme));
    }
    lines
}

/// The style of a record's level and message.
fn tone_style(tone: Tone, theme: Theme) -> Style {
    match tone {
        Tone::Alert => theme.alert(),
        Tone::Warning => theme.warning(),
        Tone::Dim => theme.dim(),
        Tone::Plain => Style::new(),
    }
}

/// One record's lines after an empty label: a warning or an error wrapped to `room`, each
/// continuation under the message, at most [`RECORD_MAX_LINES`]; any other record on one
/// line. Longer ones are cut with `…`. The time is dim, the level and message in the level's
/// style.
fn record_block(record: &RecordText, room: usize, theme: Theme) -> Vec<Line<'static>> {
    let style = tone_style(record.tone, theme);
    let max_lines = match record.tone {
        Tone::Alert | Tone::Warning => RECORD_MAX_LINES,
        Tone::Plain | Tone::Dim => 1,
    };
    let mut wrapped = wrap(&record.line(), room, RECORD_PREFIX_CHARS);
    if wrapped.len() > max_lines {
        if max_lines == 1 {
            wrapped = vec![fit(&record.line(), room, Align::Left).trim_end().to_owned()];
        } else {
            let rest: Vec<&str> = wrapped[max_lines - 1..]
                .iter()
                .map(|line| line.trim_start())
                .collect();
            let last = format!("{}{}", " ".repeat(RECORD_PREFIX_CHARS), rest.join(" "));
            wrapped.truncate(max_lines - 1);
            wrapped.push(fit(&last, room, Align::Left).trim_end().to_owned());
        }
    }
    wrapped
        .into_iter()
        .enumerate()
        .map(|(index, text)| {
            let mut spans = vec![label("", theme)];
            match text.split_at_checked(TIME_CHARS).filter(|_| index == 0) {
                Some((time, rest)) => {
                    spans.push(Span::styled(time.to_owned(), theme.dim()));
                    spans.push(Span::styled(rest.to_owned(), style));
                }
                None => spans.push(Span::styled(text, style)),
            }
            Line::from(spans)
        })
        .collect()
}
