//! What a worker pays to answer `openrtc top`: a snapshot of 10,000 live sessions.
//!
//! Run with `cargo bench -p openrtc --bench snapshot`. A real pool runs 10,000 idle sessions
//! (each waiting for its cancellation, with a little metadata); the benchmark times building
//! the owned snapshot (`runtime_snapshot`), building and serializing it, writing the socket's
//! answer straight from the session cells (what the socket server does per request), and a
//! whole request over the real Unix socket (the client reading the line included).
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use openrtc::{AgentPool, JobRequest, Session, agent_fn};

const SESSIONS: usize = 10_000;

fn snapshot_of_10k_sessions(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bench.sock");
    let pool = AgentPool::builder()
        .agent(
            "idle",
            agent_fn(|session: Session| async move {
                session.cancelled().await;
                Ok(())
            }),
        )
        .max_concurrent_sessions(SESSIONS as u32)
        .worker_threads(2)
        .drain_timeout(Duration::ZERO)
        .socket_path(&socket)
        .build()
        .expect("valid configuration");
    let handle = pool.handle();
    for index in 0..SESSIONS {
        handle
            .launch(
                JobRequest::new()
                    .tenant(["acme", "globex", "initech"][index % 3])
                    .metadata(serde_json::json!({ "caller": format!("+1555{index:07}") })),
            )
            .expect("room");
    }
    let running = pool.run_in_background().expect("the pool runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !socket.exists()
        || handle
            .runtime_snapshot()
            .sessions
            .iter()
            .any(|row| row.poll_count == 0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the 10,000 sessions never all started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut group = c.benchmark_group("snapshot_10k_sessions");
    group.sample_size(30);
    group.bench_function("build", |b| b.iter(|| black_box(handle.runtime_snapshot())));
    group.bench_function("build_and_serialize", |b| {
        b.iter(|| black_box(serde_json::to_vec(&handle.runtime_snapshot()).expect("serializes")))
    });
    group.bench_function("serve_response", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            openrtc::__bench::write_snapshot_response(&handle, &mut out);
            black_box(out.len())
        });
    });
    group.bench_function("socket_request", |b| {
        let stream = UnixStream::connect(&socket).expect("connect");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        b.iter(|| {
            writer
                .write_all(b"{\"v\":1,\"op\":\"snapshot\"}\n")
                .expect("write");
            line.clear();
            reader.read_line(&mut line).expect("read");
            black_box(line.len())
        });
    });
    group.finish();
    running.drain_and_join().expect("the pool ran");
}

criterion_group!(benches, snapshot_of_10k_sessions);
criterion_main!(benches);
