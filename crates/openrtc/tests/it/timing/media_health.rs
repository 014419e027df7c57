//! A call's outbound lateness as the snapshot shows it, over real sockets: an agent that
//! sleeps 200 ms between its 20 ms chunks is late by at least 180 ms a chunk, while a prompt
//! echo of audio paced at 20 ms is about on time (late only as much as its input was).

use std::time::Duration;

use futures_util::SinkExt as _;
use openrtc::proto::CallMediaSnapshot;
use openrtc::{AgentError, AgentPool, Session, agent_fn};
use tokio_tungstenite::tungstenite::Message;

use crate::media::{dial, echo, media, media_url, payload, start};
use crate::support::{RunningPool, TestPool as _, wait_for};

/// Chunks the sleepy agent sends.
const SLEEPY_CHUNKS: u64 = 10;

/// Sends a 20 ms chunk, sleeps 200 ms, and again, [`SLEEPY_CHUNKS`] times; then listens
/// until the call ends.
fn sleepy() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        let Some(mut call) = session.media() else {
            return Err(AgentError::msg("not a call"));
        };
        let chunk = [0_i16; openrtc::media::SAMPLES_PER_CHUNK];
        for _ in 0..SLEEPY_CHUNKS {
            call.send(&chunk).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        while call.recv().await.is_some() {}
        Ok(())
    })
}

/// The media row of the call on stream `stream`, once `ready` holds for it.
fn call_media(
    pool: &RunningPool,
    stream: &str,
    ready: impl Fn(&CallMediaSnapshot) -> bool,
) -> CallMediaSnapshot {
    wait_for(stream, || {
        pool.snapshot().sessions.into_iter().find_map(|row| {
            row.media
                .filter(|media| media.stream_id == stream && ready(media))
        })
    })
}

#[tokio::test(flavor = "current_thread")]
async fn an_agent_sleeping_between_chunks_is_late_and_a_prompt_echo_is_not() {
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("echo", echo())
            .agent("sleepy", sleepy())
            .worker_name("media-lateness")
            .worker_threads(2)
            .media_listener("127.0.0.1:0".parse().expect("addr")),
    );
    let url = media_url(&pool);
    let mut sleepy_call = dial(&url).await;
    sleepy_call
        .send(Message::text(start("MZ-sleepy", &[("agent", "sleepy")])))
        .await
        .expect("send");
    let mut echo_call = dial(&url).await;
    echo_call
        .send(Message::text(start("MZ-echo", &[("agent", "echo")])))
        .await
        .expect("send");
    // Once its session is up (its pump reading), one second of audio at the provider's 20 ms
    // cadence: the echo sends each chunk back as it comes.
    call_media(&pool, "MZ-echo", |_| true);
    let mut cadence = tokio::time::interval(Duration::from_millis(20));
    for chunk in 1..=50 {
        cadence.tick().await;
        echo_call
            .send(Message::text(media("MZ-echo", chunk, &payload(chunk))))
            .await
            .expect("send");
    }

    let echo = call_media(&pool, "MZ-echo", |media| media.frames_out_count == 50);
    // A prompt echo is late only when its input was (a hiccup of the sender or of a busy
    // machine shows in both figures alike), and never by much.
    assert!(
        echo.outbound_lateness_p99_ms <= echo.inbound_jitter_p99_ms + 50.0,
        "the echo adds no lateness of its own: {echo:?}"
    );
    assert!(
        echo.outbound_lateness_p99_ms < 150.0,
        "a prompt echo is about on time: {echo:?}"
    );
    let sleepy = call_media(&pool, "MZ-sleepy", |media| {
        media.frames_out_count == SLEEPY_CHUNKS
    });
    // Each chunk after the first is due 20 ms after the one before and sent at least 200 ms
    // after it: at least 180 ms late (a gap over 520 ms would be a pause, not lateness).
    assert!(
        (180.0..=500.0).contains(&sleepy.outbound_lateness_p99_ms),
        "{sleepy:?}"
    );
    assert!(sleepy.degrading, "{sleepy:?}");
    assert_eq!(sleepy.frames_missing_count, 0);
}
