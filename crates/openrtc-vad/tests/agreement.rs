//! The Rust stream against onnxruntime, the reference's engine: the same model file, the same
//! generated speech-like audio, chunk by chunk. Probabilities agree within 1e-4 and no chunk's
//! decision at 0.5 differs.
//!
//! The onnxruntime side runs in the Python of the venv `scripts/py-onnxruntime` makes (pinned
//! `onnxruntime` and `numpy`): `$OPENRTC_ONNXRUNTIME_PYTHON`, which `scripts/test` sets, else
//! `target/py/onnxruntime/bin/python`.

use std::path::{Path, PathBuf};
use std::process::Command;

use openrtc_vad::synth::SpeechLike;
use openrtc_vad::{SileroModel, SileroVad};

/// Within this of onnxruntime's probability, every chunk.
const TOLERANCE: f32 = 1e-4;

fn onnxruntime_python() -> PathBuf {
    let path = std::env::var_os("OPENRTC_ONNXRUNTIME_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py/onnxruntime/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run scripts/py-onnxruntime (scripts/test does) to install onnxruntime",
        path.display()
    );
    path
}

fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("model/silero_vad_16k.onnx")
}

/// onnxruntime's probability for each 512-sample chunk of `samples`.
fn onnxruntime_probabilities(samples: &[f32]) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let raw = dir.path().join("samples.f32");
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).expect("write the samples");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnxruntime_probabilities.py");
    let output = Command::new(onnxruntime_python())
        .arg(script)
        .arg(model_path())
        .arg(&raw)
        .output()
        .expect("run the onnxruntime script");
    assert!(
        output.status.success(),
        "onnxruntime script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|line| line.parse::<f64>().expect("a probability per line") as f32)
        .collect()
}

/// Ours for each chunk, pushed in 20 ms frames as a session would.
fn our_probabilities(model: &SileroModel, samples: &[f32]) -> Vec<f32> {
    let mut vad = SileroVad::new(model);
    let mut probabilities = Vec::new();
    for frame in samples.chunks(320) {
        let chunks = vad.push_f32(frame).expect("inference");
        probabilities.extend(chunks.iter().map(|chunk| chunk.probability));
    }
    probabilities
}

#[test]
fn probabilities_agree_with_onnxruntime_within_1e_4_and_no_decision_flips() {
    // The vendored bytes are the file onnxruntime loads.
    let on_disk = std::fs::read(model_path()).expect("the model file");
    assert_eq!(on_disk, openrtc_vad::MODEL_ONNX);
    let model = SileroModel::load().expect("the vendored model loads");
    for seed in [0, 7] {
        let mut samples = vec![0.0_f32; 16_000 * 20];
        SpeechLike::new(seed).fill(&mut samples);
        let theirs = onnxruntime_probabilities(&samples);
        let ours = our_probabilities(&model, &samples);
        assert_eq!(ours.len(), samples.len() / 512);
        assert_eq!(ours.len(), theirs.len(), "seed {seed}: chunk counts");
        let (mut worst, mut at) = (0.0_f32, 0);
        for (index, (mine, reference)) in ours.iter().zip(&theirs).enumerate() {
            let difference = (mine - reference).abs();
            if difference > worst {
                (worst, at) = (difference, index);
            }
            assert_eq!(
                *mine >= 0.5,
                *reference >= 0.5,
                "seed {seed}, chunk {index}: ours {mine}, onnxruntime {reference}"
            );
        }
        assert!(
            worst <= TOLERANCE,
            "seed {seed}: chunk {at} differs by {worst} (ours {}, onnxruntime {})",
            ours[at],
            theirs[at]
        );
        // The audio must exercise the decision: chunks on both sides of 0.5.
        let speech_count = theirs.iter().filter(|&&p| p >= 0.5).count();
        eprintln!(
            "seed {seed}: {} chunks, {speech_count} at or above 0.5, largest difference {worst:e}",
            theirs.len()
        );
        assert!(
            speech_count > 10 && speech_count < theirs.len() - 10,
            "seed {seed}: {speech_count} of {} chunks at or above 0.5",
            theirs.len()
        );
    }
}
