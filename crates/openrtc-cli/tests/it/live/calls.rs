//! The demo's built-in callers dialling its media WebSocket as phone calls
//! (the default with a media listener): `top` shows them as calls, each with its media row and `LATE`.

use crate::binary::{run, stdout};
use crate::live::{DemoWorker, wait_for_snapshots};

#[test]
fn the_demo_s_dialling_callers_are_phone_calls_in_top() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _worker = DemoWorker::start_with_args(dir.path(), "dialled", "echo", 3, None, "off", &[]);
    // Three echo calls, each having heard a second of audio.
    let snapshots = wait_for_snapshots(dir.path(), &[], "three calls with audio", |all| {
        all.len() == 1
            && all[0].sessions.len() == 3
            && all[0].sessions.iter().all(|row| {
                row.media.as_ref().is_some_and(|media| {
                    media.frames_in_count >= 50 && media.frames_out_count >= 50
                })
            })
    });
    for row in &snapshots[0].sessions {
        let media = row.media.as_ref().expect("a call");
        assert_eq!(row.agent, "echo");
        assert_eq!(media.provider, "twilio");
        assert!(media.stream_id.starts_with("MZdemo"), "{media:?}");
        assert_eq!(row.metadata["call"]["provider"], "twilio");
        assert!(row.metadata["life_ms"].is_string(), "{:?}", row.metadata);
    }
    // The table has a LATE figure for each (a number, not `-`).
    let output = run(dir.path(), &["top", "--once", "--worker", "dialled"]);
    let shown = stdout(&output);
    let header = shown
        .lines()
        .find(|line| line.starts_with("SESSION"))
        .expect("a table");
    let late_column = header.find("LATE").expect("a LATE column");
    let rows: Vec<&str> = shown
        .lines()
        .skip_while(|line| !line.starts_with("SESSION"))
        .skip(1)
        .take_while(|line| line.starts_with("s-"))
        .collect();
    assert_eq!(rows.len(), 3, "{shown}");
    for row in rows {
        let late = row[..late_column + 4]
            .split_whitespace()
            .last()
            .unwrap_or("");
        assert!(
            late.trim_end_matches('!').parse::<u64>().is_ok(),
            "a call's LATE is a figure: {row:?} in\n{shown}"
        );
    }
}
