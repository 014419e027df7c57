//! The detail pane's process and source: for an isolated session, the child process that runs
//! it (its pid, why it is isolated, and the operating system's figures of the whole process);
//! for a LiveKit session, its room and job.

use openrtc_proto::SessionSnapshot;
use ratatui::text::{Line, Span};

use super::label;
use crate::top::format::{clean_text, format_bytes_human, format_cpu_percent};
use crate::top::tui::view::Theme;

/// The process's line: none for a session that is a task of the worker.
pub(super) fn process_lines(session: &SessionSnapshot, theme: Theme) -> Vec<Line<'static>> {
    let Some(process) = &session.process else {
        return Vec::new();
    };
    vec![Line::from(vec![
        label("process", theme),
        Span::raw(process_text(process)),
    ])]
}

/// The LiveKit job's line: none for a session no LiveKit server dispatched.
pub(super) fn livekit_lines(session: &SessionSnapshot, theme: Theme) -> Vec<Line<'static>> {
    let Some(job) = &session.livekit else {
        return Vec::new();
    };
    vec![Line::from(vec![
        label("livekit", theme),
        Span::raw(crate::top::livekit::job_text(job)),
    ])]
}

/// `pid 4242 (config) · rss 6.1 MiB of 70.0 MiB · cpu 3.2% · 1.20 s CPU · started in 8.4 ms`.
pub(crate) fn process_text(process: &openrtc_proto::ProcessSnapshot) -> String {
    let pid = if process.pid == 0 {
        "starting".to_owned()
    } else {
        format!("pid {}", process.pid)
    };
    let limit = process.rss_limit_bytes.map_or_else(String::new, |limit| {
        format!(" of {}", format_bytes_human(limit))
    });
    // For display only: CPU nanoseconds far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let cpu_s = process.cpu_ns as f64 / 1e9;
    #[allow(clippy::cast_precision_loss)]
    let start_ms = process.start_us as f64 / 1000.0;
    format!(
        "{pid} ({}) · rss {}{limit} · cpu {}% · {cpu_s:.2} s CPU · started in {start_ms:.1} ms",
        clean_text(&process.why, 16),
        format_bytes_human(process.rss_bytes),
        format_cpu_percent(process.cpu_pct),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_line_names_its_pid_why_and_figures() {
        let mut process = openrtc_proto::ProcessSnapshot::default();
        process.pid = 4242;
        process.why = "automatic".into();
        process.rss_bytes = 6 * 1024 * 1024;
        process.rss_limit_bytes = Some(70 * 1024 * 1024);
        process.cpu_ns = 1_200_000_000;
        process.cpu_pct = 3.2;
        process.start_us = 8_400;
        let text = process_text(&process);
        assert!(
            text.starts_with("pid 4242 (automatic) · rss 6.0 MiB of 70.0 MiB"),
            "{text}"
        );
        assert!(text.ends_with("1.20 s CPU · started in 8.4 ms"), "{text}");
        process.pid = 0;
        process.rss_limit_bytes = None;
        assert!(process_text(&process).starts_with("starting (automatic) · rss 6.0 MiB · "));
    }
}
