//! The media listener dialled by a real third-party Twilio Media Streams simulator, PyPI's
//! `streamdouble` (installed in a venv by the test command, `scripts/py-tools`; its path in
//! `OPENRTC_STREAMDOUBLE`): a call routed by `--param agent=echo` is echoed with its marks
//! echoed back and no protocol violation, and 50 simultaneous calls all pass.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{RunningPool, TestPool as _, py_tool, wait_for};

/// Writes `seconds` of a 440 Hz tone as a 16-bit mono 8 kHz PCM WAV.
fn tone_wav(path: &Path, seconds: u32) {
    let samples = 8_000 * seconds;
    let data_bytes = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_bytes as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16_u32.to_le_bytes());
    wav.extend_from_slice(&1_u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1_u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8_000_u32.to_le_bytes());
    wav.extend_from_slice(&16_000_u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2_u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16_u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_bytes.to_le_bytes());
    for index in 0..samples {
        let phase = f64::from(index) * 440.0 * std::f64::consts::TAU / 8_000.0;
        let sample = (phase.sin() * 8_000.0) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(path, wav).expect("write the caller's audio");
}

/// A pool of the media tests' `echo` agent, and its media URL.
fn echo_pool(worker: &str) -> (RunningPool, String) {
    let pool = crate::media::pool(worker, 64);
    let url = crate::media::media_url(&pool);
    (pool, url)
}

/// One simulated call of `wav` routed to `agent`; its process output and JSON report.
fn call(url: &str, wav: &Path, agent: &str, trace: &Path) -> (Output, serde_json::Value) {
    let output = Command::new(py_tool("streamdouble"))
        .arg("call")
        .arg(url)
        .arg("--audio")
        .arg(wav)
        .args([
            "--param",
            &format!("agent={agent}"),
            "--param",
            "tenant=acme",
        ])
        // The simulator ends a call after this long without audio from the worker: 50 Python
        // simulators starting at once on 2 busy cores can starve one of them (or the worker)
        // for over half a second, which is not the call ending.
        .args(["--response-timeout", "10", "--quiet-period", "2"])
        .args(["--max-drain", "20"])
        .arg("--trace")
        .arg(trace)
        .arg("--json")
        .output()
        .expect("run streamdouble");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "streamdouble printed no JSON ({error}): status {:?}, stderr {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

/// What every echoed call must show, timing aside.
fn assert_echoed(output: &Output, report: &serde_json::Value, trace: &Path) {
    let context = format!("{report:#}\ntrace: {}", trace.display());
    assert_eq!(output.status.code(), Some(0), "{context}");
    assert_eq!(report["exit_code"], 0, "{context}");
    assert_eq!(report["schema_version"], 1, "{context}");
    assert_eq!(report["violations"], serde_json::json!([]), "{context}");
    assert_eq!(report["unknown_events"], serde_json::json!([]), "{context}");
    for flag in ["timed_out", "closed_early", "closed_before_audio"] {
        assert_eq!(report[flag], false, "{flag}: {context}");
    }
    assert_eq!(report["frames_sent"], 50, "{context}");
    assert_eq!(report["media_frames_received"], 50, "{context}");
    assert_eq!(report["audio_received_ms"], 1000.0, "{context}");
    assert_eq!(report["marks_received"], 2, "{context}");
    assert_eq!(report["marks_echoed"], 2, "{context}");
    assert!(
        report["time_to_first_audio_ms"].is_number(),
        "the worker spoke: {context}"
    );
}

#[test]
fn a_simulated_twilio_call_is_routed_by_its_parameter_and_echoed_with_marks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("caller.wav");
    tone_wav(&wav, 1);
    let (pool, url) = echo_pool("streamdouble-one");
    let trace = dir.path().join("trace.jsonl");
    let (output, report) = call(&url, &wav, "echo", &trace);
    assert_echoed(&output, &report, &trace);
    // Timing, with bounds for a busy machine: the echo starts at once and flows.
    let first_ms = report["time_to_first_audio_ms"].as_f64().expect("a number");
    assert!(first_ms < 1_000.0, "first audio after {first_ms} ms");
    assert_eq!(report["stall_count"], 0, "{report:#}");
    // The call's session: routed to echo for tenant acme, completed when the call stopped.
    let ended = wait_for("the call's session to end", || {
        pool.snapshot().recently_ended.into_iter().next()
    });
    assert_eq!(
        (ended.agent.as_str(), ended.tenant.as_str()),
        ("echo", "acme")
    );
    assert_eq!(ended.outcome, openrtc::proto::SessionOutcome::Completed);
}

#[test]
fn fifty_simultaneous_simulated_calls_all_pass() {
    const CALLS: usize = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("caller.wav");
    tone_wav(&wav, 1);
    let (pool, url) = echo_pool("streamdouble-fifty");
    let calls: Vec<_> = (0..CALLS)
        .map(|index| {
            let url = url.clone();
            let wav = wav.clone();
            let trace = dir.path().join(format!("trace-{index}.jsonl"));
            std::thread::spawn(move || {
                let (output, report) = call(&url, &wav, "echo", &trace);
                (output, report, trace)
            })
        })
        .collect();
    for call in calls {
        let (output, report, trace) = call.join().expect("the caller thread");
        assert_echoed(&output, &report, &trace);
    }
    let snapshot = wait_for("every call's session to end", || {
        let snapshot = pool.snapshot();
        (snapshot.worker.totals.completed_count == CALLS as u64).then_some(snapshot)
    });
    assert_eq!(snapshot.worker.totals.started_count, CALLS as u64);
    assert!(snapshot.sessions.is_empty());
}
