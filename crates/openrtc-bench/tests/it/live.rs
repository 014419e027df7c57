//! Each benchmark, run once on a tiny configuration (serialised with the other live tests).

use std::process::Command;

fn bench_json(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_openrtc-bench"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run openrtc-bench");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON document")
}

#[test]
fn attribution_names_the_blocking_session_every_time() {
    let report = bench_json(&[
        "attribution",
        "--sessions",
        "5",
        "--trials",
        "3",
        "--block-ms",
        "150",
        "--seed",
        "4",
    ]);
    assert_eq!(report["benchmark"], "attribution");
    let row = &report["rows"][0];
    assert_eq!(row["sessions"], 5);
    assert_eq!(row["trials"], 3);
    assert_eq!(
        (
            row["right"].as_u64(),
            row["wrong"].as_u64(),
            row["missed"].as_u64()
        ),
        (Some(3), Some(0), Some(0))
    );
    let latency = row["detection_latency_ms"]["max"]
        .as_f64()
        .expect("a number");
    assert!(latency >= 50.0, "seen before the threshold: {latency} ms");
    let error = row["duration_error_ms"]["max"].as_f64().expect("a number");
    assert!(error < 10.0, "duration off by {error} ms");
}

#[test]
fn density_attributes_every_held_byte() {
    let report = bench_json(&["density", "--sessions", "3", "--hold-mib", "1"]);
    assert_eq!(report["benchmark"], "density");
    let row = &report["rows"][0];
    assert_eq!(row["sessions"], 3);
    let held = row["held_bytes"].as_u64().expect("a number");
    let attributed = row["attributed_bytes"].as_u64().expect("a number");
    assert_eq!(held, 3 * 1024 * 1024);
    assert!(attributed >= held, "{attributed} < {held}");
    assert!(
        attributed < held + 3 * 64 * 1024,
        "{attributed} far over {held}"
    );
}

#[test]
fn density_with_skewed_holdings_attributes_each_session_its_own() {
    let report = bench_json(&[
        "density",
        "--sessions",
        "4",
        "--hold-mib",
        "1",
        "--hold-pattern",
        "skewed",
    ]);
    assert_eq!(report["hold_pattern"], "skewed");
    let row = &report["rows"][0];
    // Sessions 0..4 hold 0.4, 0.8, 1.2 and 1.6 MiB (in bytes, rounded down).
    let expected: u64 = (1..=4).map(|k| 1024 * 1024 * k * 2 / 5).sum();
    assert_eq!(row["held_bytes"].as_u64(), Some(expected));
    let error = &row["attribution_error"];
    let max = error["max_abs_pct"].as_f64().expect("a number");
    assert!(
        (0.0..1.0).contains(&max),
        "each session's figure is its own: {error}"
    );
}

#[test]
fn throughput_measures_every_frame_of_the_window() {
    let report = bench_json(&[
        "throughput",
        "--workload",
        "dsp",
        "--sessions",
        "4",
        "--warmup-secs",
        "0.2",
        "--measure-secs",
        "0.6",
    ]);
    assert_eq!(report["benchmark"], "throughput");
    let row = &report["rows"][0];
    assert_eq!(row["sessions"], 4);
    // 4 sessions at 50 frames a second over 0.6 s: about 120 frames.
    let frames = row["frames"].as_u64().expect("a number");
    assert!((80..=160).contains(&frames), "{frames} frames");
    assert!(row["lateness_ms"]["median"].as_f64().expect("a number") >= 0.0);
    assert!(row["peak_rss_bytes"].as_u64().expect("a number") > 1024 * 1024);
    // The machine's CPU over the window, every process's (compare's judge of a quiet machine).
    assert!(row["machine_cpu_pct"].as_f64().expect("/proc/stat read") >= 0.0);
    assert_eq!(report["introspection"], true);
}

#[test]
fn throughput_vad_runs_a_silero_stream_in_every_session() {
    let report = bench_json(&[
        "throughput",
        "--workload",
        "vad",
        "--sessions",
        "3",
        "--warmup-secs",
        "0.2",
        "--measure-secs",
        "0.6",
    ]);
    assert_eq!(report["workload"], "vad");
    let row = &report["rows"][0];
    assert_eq!(row["sessions"], 3);
    // 3 sessions at 50 frames a second over 0.6 s: about 90 frames.
    let frames = row["frames"].as_u64().expect("a number");
    assert!((60..=120).contains(&frames), "{frames} frames");
    assert!(
        row["cpu_seconds_per_1000_frames"]
            .as_f64()
            .expect("a number")
            > 0.0
    );
}

#[test]
fn overhead_runs_both_sides_in_alternation() {
    let report = bench_json(&[
        "overhead",
        "--sessions",
        "4",
        "--seconds",
        "0.5",
        "--rounds",
        "1",
    ]);
    assert_eq!(report["benchmark"], "overhead");
    let round = &report["rounds"][0];
    assert!(round["on"]["frames"].as_u64().expect("a number") > 0);
    assert!(round["off"]["frames"].as_u64().expect("a number") > 0);
    assert!(round["tracked"]["frames"].as_u64().expect("a number") > 0);
    assert!(round["ratio"].as_f64().is_some());
    assert!(round["allocator_ratio"].as_f64().is_some());
}

#[test]
fn throughput_with_fixed_frames_runs_exactly_that_many() {
    for introspection in [&[][..], &["--no-introspection"][..]] {
        let mut args = vec![
            "throughput",
            "--sessions",
            "7",
            "--workload",
            "dsp",
            "--fixed-frames",
            "13",
        ];
        args.extend_from_slice(introspection);
        let report = bench_json(&args);
        assert_eq!(report["introspection"], introspection.is_empty());
        assert_eq!(report["rows"][0]["frames"], 7 * 13, "{args:?}");
    }
}

/// Runs under valgrind (scripts/test installs it): each configuration twice. A debug build's
/// start-up varies by millions of instructions between runs, far more than introspection
/// costs on this few frames, so this checks the method, not the ratio (the README has that).
#[test]
fn overhead_instructions_counts_every_configuration_under_callgrind() {
    let report = bench_json(&[
        "overhead-instructions",
        "--sessions",
        "2",
        "--frames",
        "200",
    ]);
    assert_eq!(report["benchmark"], "overhead_instructions");
    let round = &report["rounds"][0];
    for config in ["off", "on", "tracked"] {
        let per_frame = round[config]["instructions_per_frame"]
            .as_f64()
            .unwrap_or_else(|| panic!("{config}: a number"));
        // A frame filters 320 samples: at least 10 instructions each.
        assert!(per_frame > 3_200.0, "{config}: {per_frame} per frame");
        let (run_f, run_2f) = (&round[config]["run_f"], &round[config]["run_2f"]);
        assert!(
            run_2f["instructions"].as_u64() > run_f["instructions"].as_u64(),
            "{round}"
        );
    }
    // The watchdog's thread is found with introspection on, and only then (its share per
    // frame follows the clock, so its sign is not the test's to assert).
    let watchdog = |config: &str| round[config]["run_f"]["watchdog_instructions"].as_u64();
    assert!(watchdog("on") > Some(0), "{round}");
    assert_eq!(watchdog("off"), Some(0));
    assert!(round["on"]["run_f"]["threads"].as_u64() > round["off"]["run_f"]["threads"].as_u64());
    for ratio in ["ratio", "ratio_without_watchdog", "allocator_ratio"] {
        let value = round[ratio].as_f64().expect("a number");
        assert!(value.is_finite() && value > 0.0, "{ratio} {value}");
    }
    let command = round["on"]["commands"][1].as_str().expect("a command");
    assert!(
        command.starts_with("valgrind --tool=callgrind --separate-threads=yes ")
            && command.contains("--fixed-frames 400"),
        "{command}"
    );
}

#[test]
fn livekit_dispatch_runs_every_job_against_the_real_server() {
    let report = bench_json(&["livekit-dispatch", "--jobs", "6", "--rounds", "2"]);
    assert_eq!(report["benchmark"], "livekit_dispatch");
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        assert_eq!(round["jobs_started"], 6, "{round}");
        assert_eq!(round["offers_accepted"], 6, "{round}");
        assert_eq!(round["dispatch_to_session_ms"]["count"], 6, "{round}");
        assert!(
            round["control_cpu_us_per_job"].as_f64().expect("a number") > 0.0,
            "the LiveKit thread's CPU is read: {round}"
        );
    }
    assert_eq!(report["dispatch_to_session_median_ms"]["count"], 2);
}

#[test]
fn livekit_audio_sends_and_hears_opus_at_the_frame_pace_in_every_session() {
    let report = bench_json(&[
        "livekit-audio",
        "--sessions",
        "2",
        "--seconds",
        "2",
        "--rounds",
        "1",
    ]);
    assert_eq!(report["benchmark"], "livekit_audio");
    let point = &report["points"][0];
    assert_eq!(point["sessions"], 2);
    // 50 frames a second each way when every frame is sent and arrives; generous for CI.
    let sent = point["sent_per_session_per_s"].as_f64().expect("a number");
    let heard = point["heard_per_session_per_s"].as_f64().expect("a number");
    assert!(sent > 40.0 && sent < 55.0, "{point}");
    assert!(heard > 30.0 && heard < 55.0, "{point}");
    assert!(
        point["lateness_ms"]["count"].as_u64().expect("a count") > 100,
        "{point}"
    );
    assert!(
        point["cpu_pct_per_session"].as_f64().expect("a number") > 0.0,
        "{point}"
    );
}
