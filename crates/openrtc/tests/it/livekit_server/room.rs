//! Room audio against the real LiveKit server: two participants join one room with
//! `RoomAudio` (pure-Rust WebRTC and Opus), each publishes a tone and hears the other's,
//! and the test checks whose frames arrive, their pitch and that they keep a 20 ms pace; and an
//! agent dispatched by the runtime's worker joins its job's room and echoes a participant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openrtc::source::livekit::room::{
    FRAME_SAMPLES, RoomAudio, RoomAudioEvent, RoomSendError, SAMPLE_RATE_HZ,
};

use tokio::sync::Barrier;

use openrtc::source::livekit::LiveKitOptions;
use openrtc::{AgentError, AgentPool, Session, agent_fn};

use super::LiveKitServer;
use crate::support::{RunningPool, TestPool as _, wait_for};

/// How long a participant waits for the other's audio.
const PATIENCE: Duration = Duration::from_secs(30);
/// The frames a test listens to, once the other's audio has started (2 s).
const LISTENED_FRAMES: usize = 100;
/// The frames skipped before listening (the codec's and the jitter's start-up, 0.5 s).
const SKIPPED_FRAMES: usize = 25;

/// Frame `index` of a tone at `hz` (amplitude 8000), continuous across frames.
fn tone_frame(hz: f64, index: usize) -> Vec<i16> {
    (0..FRAME_SAMPLES)
        .map(|n| {
            let t = (index * FRAME_SAMPLES + n) as f64 / f64::from(SAMPLE_RATE_HZ);
            (f64::sin(2.0 * std::f64::consts::PI * hz * t) * 8_000.0) as i16
        })
        .collect()
}

/// Upward zero crossings in `samples`.
fn upward_crossings(samples: &[i16]) -> usize {
    samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count()
}

/// What one participant heard from the other.
struct Heard {
    samples: Vec<i16>,
    arrivals: Vec<Instant>,
    join_ms: u64,
    /// From the start of talking to the first frame heard.
    first_heard: Option<Duration>,
}

/// Publishes a tone at `hz` every 20 ms while it listens for `LISTENED_FRAMES` frames from
/// `other` (after skipping `SKIPPED_FRAMES`), and goes on talking until both sides have heard
/// enough (`both_heard`: the server fills a track that stops with silence), then leaves.
async fn talk_and_listen(
    mut room: RoomAudio,
    hz: f64,
    other: &str,
    both_heard: Arc<Barrier>,
) -> Heard {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut sent_count = 0;
    let mut heard_count = 0;
    let mut heard = Heard {
        samples: Vec::new(),
        arrivals: Vec::new(),
        join_ms: room.join_ms(),
        first_heard: None,
    };
    let started = Instant::now();
    let all_heard = both_heard.wait();
    tokio::pin!(all_heard);
    let mut waiting = false;
    loop {
        if heard.arrivals.len() == LISTENED_FRAMES {
            waiting = true;
        }
        tokio::select! {
            _ = &mut all_heard, if waiting => break,
            _ = pace.tick() => {
                room.send(&tone_frame(hz, sent_count)).await.expect("the room is open");
                sent_count += 1;
            }
            event = room.recv() => match event.expect("the room's task runs") {
                RoomAudioEvent::Frame(frame) => {
                    assert_eq!(frame.participant_identity, other, "only the other talks");
                    assert_eq!(frame.samples.len(), FRAME_SAMPLES);
                    heard_count += 1;
                    heard.first_heard.get_or_insert_with(|| started.elapsed());
                    if heard_count > SKIPPED_FRAMES && heard.arrivals.len() < LISTENED_FRAMES {
                        heard.samples.extend_from_slice(&frame.samples);
                        heard.arrivals.push(Instant::now());
                    }
                }
                RoomAudioEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
                other => panic!("unexpected {other:?}"),
            },
            () = tokio::time::sleep_until(deadline) => {
                panic!("{other} was heard {heard_count} times in {PATIENCE:?} ({sent_count} frames sent)");
            }
        }
    }
    room.close().await;
    loop {
        match tokio::time::timeout(PATIENCE, room.recv()).await {
            Ok(Some(RoomAudioEvent::Disconnected { reason })) => {
                assert_eq!(reason, "closed by the agent");
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no Disconnected after close"),
        }
    }
    assert_eq!(
        room.send(&tone_frame(hz, 0)).await,
        Err(RoomSendError::Closed)
    );
    heard
}

/// Checks `heard` is a tone at `hz` arriving at a 20 ms pace.
fn assert_tone_at_pace(heard: &Heard, hz: f64, who: &str) {
    let seconds = heard.samples.len() as f64 / f64::from(SAMPLE_RATE_HZ);
    let expected = hz * seconds;
    let crossings = upward_crossings(&heard.samples) as f64;
    assert!(
        (crossings - expected).abs() <= expected * 0.02 + 2.0,
        "{who} heard {crossings} upward crossings in {seconds} s, not {expected} ({hz} Hz)"
    );
    let span = heard.arrivals[heard.arrivals.len() - 1] - heard.arrivals[0];
    let gaps = heard.arrivals.windows(2).map(|w| w[1] - w[0]);
    let longest_gap = gaps.max().unwrap_or_default();
    // 99 gaps of 20 ms: 1.98 s, with generous bounds for a busy machine.
    assert!(
        span >= Duration::from_millis(1_500) && span <= Duration::from_millis(3_000),
        "{who}: {} frames over {span:?}",
        heard.arrivals.len()
    );
    assert!(
        longest_gap < Duration::from_millis(500),
        "{who}: a gap of {longest_gap:?}"
    );
    eprintln!(
        "{who}: joined in {} ms, first frame after {:?}; {} frames over {span:?}, longest gap {longest_gap:?}, {crossings} crossings for {expected}",
        heard.join_ms,
        heard.first_heard,
        heard.arrivals.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_hear_each_others_tone_at_a_20_ms_pace() {
    let server = LiveKitServer::start();
    server.create_room("duet");
    let alice = RoomAudio::connect(&server.url(), &server.participant_token("duet", "alice"))
        .await
        .expect("alice joins");
    let bob = RoomAudio::connect(&server.url(), &server.participant_token("duet", "bob"))
        .await
        .expect("bob joins");
    assert_eq!((alice.identity(), alice.room_name()), ("alice", "duet"));
    assert_eq!((bob.identity(), bob.room_name()), ("bob", "duet"));
    let both_heard = Arc::new(Barrier::new(2));
    let alice_task = tokio::spawn(talk_and_listen(
        alice,
        440.0,
        "bob",
        Arc::clone(&both_heard),
    ));
    let bob_task = tokio::spawn(talk_and_listen(bob, 660.0, "alice", both_heard));
    let heard_by_alice = alice_task.await.expect("alice's side ran");
    let heard_by_bob = bob_task.await.expect("bob's side ran");
    assert_tone_at_pace(&heard_by_bob, 440.0, "bob");
    assert_tone_at_pace(&heard_by_alice, 660.0, "alice");
}

#[tokio::test]
async fn a_bad_token_is_refused_and_a_wrong_frame_size_is_an_error() {
    let server = LiveKitServer::start();
    let refused = RoomAudio::connect(&server.url(), "not-a-token").await;
    let error = refused.expect_err("a bad token is refused");
    assert!(
        matches!(
            error,
            openrtc::source::livekit::room::RoomError::Refused { status: 401 }
        ),
        "{error}"
    );
    server.create_room("solo");
    let mut room = RoomAudio::connect(&server.url(), &server.participant_token("solo", "carol"))
        .await
        .expect("carol joins");
    assert_eq!(
        room.send(&[0; 480]).await,
        Err(RoomSendError::FrameSize { samples_count: 480 })
    );
    room.close().await;
}

/// A LiveKit worker pool whose one agent joins its job's room (`Session::livekit_room`) and
/// sends every frame it hears straight back, until the room ends or the session is cancelled.
/// A pool whose `echo` agent joins its job's room and sends back every frame it hears; in a
/// room named `…-16k` or `…-8k` it exchanges audio at that rate (`set_sample_rate`) and fails
/// on a frame of another length.
fn echo_pool(server: &LiveKitServer) -> openrtc::AgentPoolBuilder {
    let options = LiveKitOptions::new(server.url(), server.api_key(), server.api_secret());
    AgentPool::builder()
        .agent(
            "echo",
            agent_fn(|session: Session| async move {
                let Some(joined) = session.livekit_room().await else {
                    return Err(AgentError::msg("not a LiveKit job"));
                };
                let mut room = joined.map_err(AgentError::msg)?;
                let room_name = session.metadata()["room"].as_str().unwrap_or_default();
                let rate_hz = if room_name.ends_with("-16k") {
                    16_000
                } else if room_name.ends_with("-8k") {
                    8_000
                } else {
                    48_000
                };
                room.set_sample_rate(rate_hz).map_err(AgentError::msg)?;
                let frame_samples = (rate_hz / 50) as usize;
                loop {
                    let event = tokio::select! {
                        () = session.cancelled() => break,
                        event = room.recv() => event,
                    };
                    let ended = match event {
                        Some(RoomAudioEvent::Frame(frame)) => {
                            if frame.samples.len() != frame_samples {
                                return Err(AgentError::msg(format!(
                                    "a frame of {} samples at {rate_hz} Hz",
                                    frame.samples.len()
                                )));
                            }
                            room.send(&frame.samples).await.is_err()
                        }
                        Some(RoomAudioEvent::Disconnected { .. }) | None => true,
                        Some(_) => false,
                    };
                    if ended {
                        break;
                    }
                }
                room.close().await;
                Ok::<(), AgentError>(())
            }),
        )
        .livekit(options)
}

#[test]
fn a_dispatched_agent_joins_its_room_with_the_job_token_and_echoes_a_participant() {
    echo_in("echo-1");
}

/// The same echo with the agent at 16 kHz, then at 8 kHz: frames resampled both ways in its
/// own task, and the caller still hears its 440 Hz tone at the 20 ms pace.
#[test]
fn an_agent_at_16_or_8_khz_hears_and_sends_resampled_frames() {
    echo_in("echo-16k");
    echo_in("echo-8k");
}

/// A server, an echo worker, and a participant talking in `room`, checked.
fn echo_in(room: &'static str) {
    let server = LiveKitServer::start();
    let pool = RunningPool::start(echo_pool(&server));
    wait_for("the worker to register", || {
        pool.snapshot()
            .worker
            .livekit
            .filter(|livekit| livekit.connected)
    });
    server.create_room(room);
    let row = wait_for("the room's session", || {
        pool.snapshot()
            .sessions
            .into_iter()
            .find(|row| row.livekit.is_some())
    });
    let session_id = row.id;
    let agent_identity = row.livekit.expect("a LiveKit row").participant_identity;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the participant");
    let heard = runtime.block_on(async {
        let dana = RoomAudio::connect(&server.url(), &server.participant_token(room, "dana"))
            .await
            .expect("dana joins");
        // Only dana's side talks here: the barrier is hers alone.
        talk_and_listen(dana, 440.0, &agent_identity, Arc::new(Barrier::new(1))).await
    });
    assert_tone_at_pace(&heard, 440.0, "dana (the agent's echo)");
    // The room ran as the session's one child task, and its polls were the session's: more
    // than one per frame heard and echoed.
    let row = pool
        .snapshot()
        .sessions
        .into_iter()
        .find(|row| row.id == session_id)
        .expect("the echo session still runs");
    assert_eq!(row.tasks.spawned_count, 1, "{:?}", row.tasks);
    assert_eq!(row.tasks.running_count, 1, "{:?}", row.tasks);
    assert!(row.poll_count > 250, "{} polls", row.poll_count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_leaving_ends_its_track_for_the_others() {
    let server = LiveKitServer::start();
    server.create_room("leaving");
    let mut erin = RoomAudio::connect(&server.url(), &server.participant_token("leaving", "erin"))
        .await
        .expect("erin joins");
    let mut frank =
        RoomAudio::connect(&server.url(), &server.participant_token("leaving", "frank"))
            .await
            .expect("frank joins");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut sent_count = 0;
    let mut track_sid = None;
    // Erin talks until frank hears her, then leaves.
    while track_sid.is_none() {
        tokio::select! {
            _ = pace.tick() => {
                erin.send(&tone_frame(440.0, sent_count)).await.expect("erin's room is open");
                sent_count += 1;
            }
            event = frank.recv() => match event.expect("frank's room runs") {
                RoomAudioEvent::Frame(frame) => {
                    assert_eq!(frame.participant_identity, "erin");
                    track_sid = Some(frame.track_sid);
                }
                other => panic!("unexpected {other:?}"),
            },
            () = tokio::time::sleep_until(deadline) => panic!("frank never heard erin"),
        }
    }
    erin.close().await;
    let track_sid = track_sid.expect("a track heard");
    assert!(track_sid.starts_with("TR_"), "{track_sid}");
    loop {
        let event = tokio::time::timeout_at(deadline, frank.recv())
            .await
            .expect("erin's track ends in time")
            .expect("frank's room runs");
        match event {
            RoomAudioEvent::Frame(_) => {}
            RoomAudioEvent::TrackEnded {
                participant_identity,
                track_sid: ended,
            } => {
                assert_eq!(participant_identity, "erin");
                assert_eq!(ended, track_sid);
                break;
            }
            RoomAudioEvent::Disconnected { reason } => panic!("frank left: {reason}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    frank.close().await;
}
