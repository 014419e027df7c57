//! LiveKit in `top` (pure): the worker's registration with a LiveKit server, as one header
//! piece, and a LiveKit session's job, as the detail pane's line.

use openrtc_proto::{LiveKitJobSnapshot, LiveKitWorkerSnapshot, WorkerSnapshot};

use crate::top::format::clean_text;
use crate::top::tenants::{Piece, Tone};

/// Longest URL or error shown.
const TEXT_MAX_CHARS: usize = 80;

/// `livekit: AW_x at ws://host/agent · available · load 0.42 · 3 jobs · offers 12 accepted,
/// 1 refused`, or, while it is not registered, `livekit: NOT CONNECTED to ws://host/agent (3
/// failed attempts: <error>)` as an alert. `None` for a worker that takes no LiveKit jobs.
#[must_use]
pub fn livekit_piece(worker: &WorkerSnapshot) -> Option<Piece> {
    worker.livekit.as_ref().map(piece)
}

fn piece(livekit: &LiveKitWorkerSnapshot) -> Piece {
    let url = clean_text(&livekit.url, TEXT_MAX_CHARS);
    if !livekit.connected {
        let mut text = format!("livekit: NOT CONNECTED to {url}");
        if let Some(error) = &livekit.last_error {
            let attempts = match livekit.failed_attempt_count {
                0 => "lost".to_owned(),
                1 => "1 failed attempt".to_owned(),
                count => format!("{count} failed attempts"),
            };
            text.push_str(&format!(
                " ({attempts}: {})",
                clean_text(error, TEXT_MAX_CHARS)
            ));
        }
        return Piece::new(text, Tone::Alert);
    }
    let worker_id = clean_text(livekit.worker_id.as_deref().unwrap_or("?"), 32);
    let mut text = format!(
        "livekit: {worker_id} at {url} · {} · load {:.2} · {} · offers {} accepted, {} refused",
        clean_text(&livekit.status, 16),
        livekit.load,
        count(livekit.jobs_running_count, "job", "jobs"),
        livekit.offers_accepted_count,
        livekit.offers_refused_count,
    );
    if livekit.assignment_timeout_count > 0 {
        text.push_str(&format!(
            ", {} never assigned",
            livekit.assignment_timeout_count
        ));
    }
    if livekit.reconnect_count > 0 {
        text.push_str(&format!(
            " · {}",
            count(livekit.reconnect_count, "reconnect", "reconnects")
        ));
    }
    let tone = if livekit.status == "full" {
        Tone::Warning
    } else {
        Tone::Dim
    };
    Piece::new(text, tone)
}

fn count(value: u64, one: &str, many: &str) -> String {
    format!("{value} {}", if value == 1 { one } else { many })
}

/// `room support-42 (RM_1) · job AJ_1 · joins as agent-AJ_1 · dispatched to 'named'`.
#[must_use]
pub fn job_text(job: &LiveKitJobSnapshot) -> String {
    let mut text = format!(
        "room {} ({}) · job {} · joins as {}",
        clean_text(&job.room, 48),
        clean_text(&job.room_sid, 24),
        clean_text(&job.job_id, 24),
        clean_text(&job.participant_identity, 48),
    );
    if !job.agent_name.is_empty() {
        text.push_str(&format!(
            " · dispatched to '{}'",
            clean_text(&job.agent_name, 32)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> LiveKitWorkerSnapshot {
        let mut livekit = LiveKitWorkerSnapshot::default();
        livekit.url = "ws://127.0.0.1:7880/agent".into();
        livekit.connected = true;
        livekit.worker_id = Some("AW_x".into());
        livekit.status = "available".into();
        livekit.load = 0.42;
        livekit.jobs_running_count = 3;
        livekit.offers_accepted_count = 12;
        livekit.offers_refused_count = 1;
        livekit
    }

    #[test]
    fn a_registered_worker_shows_its_id_status_load_jobs_and_offers() {
        let piece = piece(&registered());
        assert_eq!(
            piece.text,
            "livekit: AW_x at ws://127.0.0.1:7880/agent · available · load 0.42 · 3 jobs · \
             offers 12 accepted, 1 refused"
        );
        assert_eq!(piece.tone, Tone::Dim);
        let mut full = registered();
        full.status = "full".into();
        full.assignment_timeout_count = 2;
        full.reconnect_count = 1;
        let piece = super::piece(&full);
        assert!(
            piece
                .text
                .ends_with("1 refused, 2 never assigned · 1 reconnect"),
            "{}",
            piece.text
        );
        assert_eq!(piece.tone, Tone::Warning);
    }

    #[test]
    fn a_disconnected_worker_is_an_alert_with_its_error() {
        let mut lost = registered();
        lost.connected = false;
        lost.failed_attempt_count = 3;
        lost.last_error = Some("the server refused the worker's token (HTTP 401)".into());
        let piece = piece(&lost);
        assert_eq!(
            piece.text,
            "livekit: NOT CONNECTED to ws://127.0.0.1:7880/agent (3 failed attempts: the server \
             refused the worker's token (HTTP 401))"
        );
        assert_eq!(piece.tone, Tone::Alert);
        assert_eq!(livekit_piece(&WorkerSnapshot::default()), None);
    }

    #[test]
    fn a_job_names_its_room_job_and_identity() {
        let mut job = LiveKitJobSnapshot::default();
        job.room = "support-42".into();
        job.room_sid = "RM_1".into();
        job.job_id = "AJ_1".into();
        job.participant_identity = "agent-AJ_1".into();
        assert_eq!(
            job_text(&job),
            "room support-42 (RM_1) · job AJ_1 · joins as agent-AJ_1"
        );
        job.agent_name = "named".into();
        assert!(job_text(&job).ends_with(" · dispatched to 'named'"));
    }
}
