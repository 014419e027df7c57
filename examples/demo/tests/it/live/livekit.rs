//! The demo worker as a LiveKit agent worker, with a real caller: LiveKit's own Python SDK
//! (`publisher.py`, in `$OPENRTC_LIVEKIT_PYTHON`'s venv) publishes a 440 Hz tone into a room,
//! the demo's echo agent (the job the real server dispatched for that room) sends back what it
//! hears, and the caller hears the same tone. The session that decodes and encodes that
//! stream is charged its own CPU: far more than an echo session in a silent room.

use std::path::PathBuf;
use std::process::Command;

use super::livekit_fixture::LiveKitServer;
use super::{Demo, snapshot, wait_for};

fn python() -> PathBuf {
    std::env::var_os("OPENRTC_LIVEKIT_PYTHON")
        .map(PathBuf::from)
        .expect(
            "OPENRTC_LIVEKIT_PYTHON is not set: run `OPENRTC_LIVEKIT_PYTHON=$(scripts/py-livekit)` \
             (LiveKit's Python SDK in a venv under target/), or scripts/test, which does",
        )
}

#[test]
fn the_echo_agent_returns_a_python_caller_s_tone_in_its_livekit_room() {
    let server = LiveKitServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("demo.sock");
    let url = server.url();
    let demo = Demo::start_with_env(
        dir.path(),
        &[
            "--livekit",
            "--callers",
            "0",
            "--min-secs",
            "300",
            "--max-secs",
            "600",
        ],
        &[
            ("LIVEKIT_URL", url.as_str()),
            ("LIVEKIT_API_KEY", server.api_key()),
            ("LIVEKIT_API_SECRET", server.api_secret()),
        ],
    );
    wait_for("the demo to register", || {
        snapshot(&socket)?
            .worker
            .livekit
            .filter(|livekit| livekit.connected)
    });
    let socket_path = socket.as_path();
    let session_in = |room: &'static str| {
        move || {
            snapshot(socket_path)?
                .sessions
                .into_iter()
                .find(|row| row.livekit.as_ref().is_some_and(|job| job.room == room))
        }
    };
    server.create_room("echo-caller");
    server.create_room("echo-silent");
    let talking = wait_for("the caller's room's session", session_in("echo-caller"));
    let silent = wait_for("the silent room's session", session_in("echo-silent"));
    assert_eq!(
        (talking.agent.as_str(), silent.agent.as_str()),
        ("echo", "echo")
    );

    let publisher = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/openrtc/tests/it/livekit_server/publisher.py");
    let output = Command::new(python())
        .arg(&publisher)
        .args(["--url", &url.replacen("http://", "ws://", 1)])
        .args([
            "--token",
            &server.participant_token("echo-caller", "caller"),
        ])
        .args(["--seconds", "3", "--frequency", "440"])
        .output()
        .expect("run publisher.py");
    assert!(
        output.status.success(),
        "publisher.py failed: {}\n--- demo\n{}",
        String::from_utf8_lossy(&output.stderr),
        demo.stderr()
    );
    let heard: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("publisher.py prints one JSON line");
    eprintln!("heard back: {heard}");
    let frequency = heard["frequency_hz"]
        .as_f64()
        .expect("a tone was heard back");
    assert!(
        (frequency - 440.0).abs() < 5.0,
        "the caller hears its own 440 Hz tone back: {heard}"
    );
    let round_trip = heard["round_trip_ms"].as_f64().expect("a round trip");
    assert!(
        round_trip > 0.0 && round_trip < 2_000.0,
        "round trip within 2 s on loopback: {heard}"
    );
    assert!(
        heard["loud_frames_heard"].as_u64().expect("a count") >= 200,
        "most of the 3 s tone came back: {heard}"
    );

    // Each session is charged its own work: the one that decoded and encoded the caller's
    // stream used far more busy time than the one in a silent room.
    let snapshot = snapshot(&socket).expect("a snapshot");
    let busy = |id| {
        snapshot
            .sessions
            .iter()
            .find(|row| row.id == id)
            .map(|row| row.busy_ns)
            .expect("still live")
    };
    let (talking_ns, silent_ns) = (busy(talking.id), busy(silent.id));
    eprintln!("busy: talking {talking_ns} ns, silent {silent_ns} ns");
    assert!(
        talking_ns > 3 * silent_ns,
        "the Opus session's busy time ({talking_ns} ns) is its own, well over the silent one's \
         ({silent_ns} ns)"
    );
}
