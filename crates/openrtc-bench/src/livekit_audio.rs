//! `livekit-audio`: sessions holding real Opus audio in and out of LiveKit rooms, against the
//! real server: each session's frame lateness, CPU and memory.
//!
//! For each session count, a `livekit-server` (`$OPENRTC_LIVEKIT_SERVER`) starts, a pool of
//! this process takes its jobs, and one room per session is created. Each session joins its
//! room with its job's token (`Session::livekit_room`: the room's signalling, two peer
//! connections and Opus run in the session's own child task) and, on the worker's 20 ms frame
//! clock, sends a 440 Hz tone (encoded to Opus) while it decodes what a caller sends it. The
//! callers are another process (this binary's `livekit-callers`), one participant per room
//! publishing a 660 Hz tone, so the worker's CPU and memory are its sessions' alone. After a
//! warm-up, a window of `--seconds` is measured: every frame tick's lateness (how long after
//! its due instant the session got to it), the worker's CPU time, the frames each session
//! heard, and the worker's resident memory growth since before the first room. The server and
//! the callers share the machine's cores with the worker: the figures are of one machine
//! holding the whole call path, not of the worker alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openrtc::source::livekit::LiveKitOptions;
use openrtc::source::livekit::room::{FRAME_SAMPLES, RoomAudio, RoomAudioEvent, SAMPLE_RATE_HZ};
use openrtc::{AgentError, AgentPool, Session, agent_fn};
use serde::Serialize;

use crate::cli::Report;
use crate::livekit::fixture;
use crate::stats::Spread;

/// How long sessions run before the measured window: joins, first frames.
const WARM_UP: Duration = Duration::from_secs(3);

/// Options of `livekit-audio`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Session counts to measure, each in every round.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 25, 50])]
    sessions: Vec<usize>,
    /// The measured window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds; session counts are interleaved within each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Options of the callers' process (`livekit-callers`, started by `livekit-audio`).
#[derive(Debug, clap::Args)]
pub(crate) struct CallersArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    api_key: String,
    #[arg(long)]
    api_secret: String,
    /// Rooms `audio-0` … `audio-<rooms - 1>`, one caller each.
    #[arg(long)]
    rooms: usize,
}

/// One session count, measured once.
#[derive(Debug, Serialize)]
pub(crate) struct Point {
    sessions: usize,
    /// Frame tick lateness over every session's ticks in the window, in ms.
    lateness_ms: Spread,
    /// Worker CPU per session, in % of one core.
    cpu_pct_per_session: f64,
    /// Worker resident memory growth per session, in KiB.
    rss_kib_per_session: f64,
    /// Caller frames each session heard per second (50 when every frame arrives).
    heard_per_session_per_s: f64,
    /// Frames each session sent per second (50 when it kept the pace).
    sent_per_session_per_s: f64,
}

/// The `livekit-audio` report.
#[derive(Debug, Serialize)]
pub(crate) struct AudioReport {
    benchmark: &'static str,
    seconds: f64,
    points: Vec<Point>,
    /// The load average (1 minute) at the start and at the end.
    load_average: (f64, f64),
}

pub(crate) fn run(args: &Args) -> anyhow::Result<AudioReport> {
    anyhow::ensure!(
        !args.sessions.is_empty() && args.rounds > 0,
        "nothing to measure"
    );
    let load_before = crate::livekit::load_average();
    let mut points = Vec::new();
    for _ in 0..args.rounds {
        for &sessions in &args.sessions {
            points.push(measure(sessions, args.seconds)?);
        }
    }
    Ok(AudioReport {
        benchmark: "livekit_audio",
        seconds: args.seconds,
        points,
        load_average: (load_before, crate::livekit::load_average()),
    })
}

/// What the sessions record while the window is open.
#[derive(Default)]
struct Window {
    open: AtomicBool,
    lateness_us: Mutex<Vec<f64>>,
    heard: AtomicU64,
    sent: AtomicU64,
}

fn measure(sessions: usize, seconds: f64) -> anyhow::Result<Point> {
    let server = fixture::LiveKitServer::start();
    let window = Arc::new(Window::default());
    let agent_window = Arc::clone(&window);
    let pool = AgentPool::builder()
        .worker_name("livekit-audio")
        .worker_threads(2)
        .max_concurrent_sessions(u32::try_from(sessions + 8)?)
        .agent(
            "tone",
            agent_fn(move |session: Session| {
                let window = Arc::clone(&agent_window);
                async move { tone_session(session, &window).await }
            }),
        )
        .livekit(LiveKitOptions::new(
            server.url(),
            server.api_key(),
            server.api_secret(),
        ))
        .build()?
        .run_in_background()?;
    let handle = pool.handle();
    wait(|| {
        handle
            .runtime_snapshot()
            .worker
            .livekit
            .is_some_and(|livekit| livekit.connected)
    })?;
    let rss_before = openrtc::process::resident_set_bytes();
    for index in 0..sessions {
        server.create_room(&format!("audio-{index}"));
    }
    wait(|| handle.runtime_snapshot().sessions.len() == sessions)?;
    let mut callers = std::process::Command::new(std::env::current_exe()?)
        .arg("livekit-callers")
        .args(["--url", &server.url()])
        .args([
            "--api-key",
            server.api_key(),
            "--api-secret",
            server.api_secret(),
        ])
        .args(["--rooms", &sessions.to_string()])
        .stdin(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(WARM_UP);
    let cpu_before = openrtc::process::cpu_time();
    window.open.store(true, Ordering::Release);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    window.open.store(false, Ordering::Release);
    let cpu = openrtc::process::cpu_time().saturating_sub(cpu_before);
    let rss_growth = openrtc::process::resident_set_bytes().saturating_sub(rss_before);
    let _ = callers.kill();
    let _ = callers.wait();
    drop(pool);
    drop(server);
    let lateness_ms: Vec<f64> = window
        .lateness_us
        .lock()
        .map_err(|_| anyhow::anyhow!("a session panicked while recording"))?
        .iter()
        .map(|us| us / 1e3)
        .collect();
    let per_session_s = sessions as f64 * seconds;
    Ok(Point {
        sessions,
        lateness_ms: Spread::of(&lateness_ms),
        cpu_pct_per_session: cpu.as_secs_f64() / per_session_s * 100.0,
        rss_kib_per_session: rss_growth as f64 / 1024.0 / sessions as f64,
        heard_per_session_per_s: window.heard.load(Ordering::Relaxed) as f64 / per_session_s,
        sent_per_session_per_s: window.sent.load(Ordering::Relaxed) as f64 / per_session_s,
    })
}

/// One session: joins its room, sends a tone on the frame clock, decodes what it hears.
async fn tone_session(session: Session, window: &Window) -> Result<(), AgentError> {
    let Some(room) = session.livekit_room().await else {
        return Err(AgentError::msg("not a LiveKit job"));
    };
    let mut room: RoomAudio = room?;
    let mut frames = session.frames(Duration::from_millis(20));
    let mut tone = vec![0_i16; FRAME_SAMPLES];
    let mut phase = 0_u64;
    let mut lateness = Vec::with_capacity(1024);
    loop {
        tokio::select! {
            frame = frames.tick() => {
                let late_us = frame.lateness().as_secs_f64() * 1e6;
                fill_tone(&mut tone, &mut phase, 440.0);
                if room.send(&tone).await.is_err() {
                    break;
                }
                if window.open.load(Ordering::Acquire) {
                    lateness.push(late_us);
                    window.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            event = room.recv() => match event {
                Some(RoomAudioEvent::Frame(_)) => {
                    if window.open.load(Ordering::Acquire) {
                        window.heard.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(RoomAudioEvent::Disconnected { .. }) | None => break,
                Some(_) => {}
            },
            () = session.cancelled() => break,
        }
        if !lateness.is_empty() && !window.open.load(Ordering::Acquire) {
            break;
        }
    }
    if let Ok(mut all) = window.lateness_us.lock() {
        all.extend(lateness);
    }
    Ok(())
}

/// The callers' process: one participant per room, publishing a 660 Hz tone at a 20 ms
/// pace and reading what it hears, until killed.
pub(crate) fn callers(args: &CallersArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut tasks = Vec::with_capacity(args.rooms);
        for index in 0..args.rooms {
            let room = format!("audio-{index}");
            let token = livekit_api::access_token::AccessToken::with_api_key(
                &args.api_key,
                &args.api_secret,
            )
            .with_identity(&format!("caller-{index}"))
            .with_grants(livekit_api::access_token::VideoGrants {
                room_join: true,
                room: room.clone(),
                can_publish: Some(true),
                can_subscribe: Some(true),
                ..Default::default()
            })
            .to_jwt()?;
            let mut audio = RoomAudio::connect(&args.url, &token).await?;
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut tone = vec![0_i16; FRAME_SAMPLES];
                let mut phase = 0_u64;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            fill_tone(&mut tone, &mut phase, 660.0);
                            if audio.send(&tone).await.is_err() {
                                return;
                            }
                        }
                        event = audio.recv() => if matches!(event, None | Some(RoomAudioEvent::Disconnected { .. })) {
                            return;
                        },
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok::<(), anyhow::Error>(())
    })
}

/// The next frame of a sine tone at `frequency_hz`, from sample `phase` on.
fn fill_tone(frame: &mut [i16], phase: &mut u64, frequency_hz: f64) {
    for sample in frame {
        let t = *phase as f64 / f64::from(SAMPLE_RATE_HZ);
        *sample = (8_000.0 * (2.0 * std::f64::consts::PI * frequency_hz * t).sin()) as i16;
        *phase += 1;
    }
}

fn wait(mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

impl Report for AudioReport {
    fn table(&self) -> String {
        let mut text = format!(
            "livekit-audio: sessions with Opus in and out of LiveKit rooms (a 440 Hz tone sent on \
             the 20 ms frame clock, a caller's 660 Hz tone decoded), {:.0} s measured per point; \
             load average {:.2} -> {:.2}\n\
             {:>8} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>10}\n",
            self.seconds,
            self.load_average.0,
            self.load_average.1,
            "SESSIONS",
            "LATE p50",
            "LATE p99",
            "LATE max",
            "CPU%/SESS",
            "RSS KiB/S",
            "HEARD/s",
            "SENT/s",
        );
        for point in &self.points {
            text.push_str(&format!(
                "{:>8} {:>10.2} {:>10.2} {:>10.2} {:>12.2} {:>12.1} {:>10.1} {:>10.1}\n",
                point.sessions,
                point.lateness_ms.median,
                point.lateness_ms.p99,
                point.lateness_ms.max,
                point.cpu_pct_per_session,
                point.rss_kib_per_session,
                point.heard_per_session_per_s,
                point.sent_per_session_per_s,
            ));
        }
        text
    }
}
