//! What the live view of `openrtc top` costs per refresh with 10,000 live sessions: reading
//! and decoding one snapshot from a worker socket, updating the state (histories, filter,
//! sort), and drawing one 200×50 frame. Prints figures; it is not a timed test.
//!
//! Run with `cargo bench -p openrtc-cli --bench top_cost`. The CPU share at a refresh rate is
//! that rate times the cost of one refresh (the view does nothing between refreshes). The
//! worker's side, serving the snapshot, is measured by the runtime's own benchmark.
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does one small round, to check
//! that it still works.
#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use openrtc_cli::cli::SortKey;
use openrtc_cli::discover::{PollOutcome, SurveyRound, WorkerPoll, ask_for_snapshot};
use openrtc_cli::top::tui::app::App;
use openrtc_cli::top::tui::state::{Settings, State};
use openrtc_cli::top::tui::view::Theme;
use openrtc_proto::{
    MemSource, PROTOCOL_VERSION, PoolSnapshot, Response, ResponseEnvelope, SNAPSHOT_VERSION,
    SessionSnapshot, SessionState, StallSnapshot,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// A worker snapshot with `sessions` live sessions, shaped like a busy demo worker's.
fn big_snapshot(sessions: u32, taken_at_unix_ms: u64, round: u32) -> PoolSnapshot {
    let mut snapshot = PoolSnapshot::default();
    snapshot.version = SNAPSHOT_VERSION;
    snapshot.taken_at_unix_ms = taken_at_unix_ms;
    let worker = &mut snapshot.worker;
    worker.name = "bench".into();
    worker.pid = 4242;
    worker.uptime_ms = 3_600_000;
    worker.worker_threads = 8;
    worker.active_sessions = sessions;
    worker.max_sessions = 20_000;
    worker.slow_threshold_ms = 50;
    worker.cpu_window_ms = 1_000;
    worker.rss_bytes = 4 << 30;
    worker.process_cpu_pct = 380.0;
    worker.mem_source = MemSource::Tracked;
    let agents = ["echo", "transcriber", "llm", "hot", "blocker"];
    for index in 0..sessions {
        let mut session = SessionSnapshot::default();
        session.id = openrtc_proto::SessionId::from_u64(u64::from(index) + 1).expect("not zero");
        session.agent = agents[index as usize % agents.len()].to_owned();
        session.tenant = format!("tenant-{}", index % 37);
        session.metadata = serde_json::json!({
            "caller": format!("+1555{index:07}"),
            "room": format!("room-{index}"),
        });
        session.started_at_unix_ms = taken_at_unix_ms - u64::from(index) * 97;
        session.duration_ms = u64::from(index) * 97;
        session.cpu_pct = f64::from((index * 7 + round * 13) % 1_000) / 10.0;
        session.busy_ns = u64::from(index) * 1_000_000;
        session.poll_count = u64::from(index) * 31;
        session.stall_count = u64::from(index % 11 == 0);
        if index % 11 == 0 {
            let mut stall = StallSnapshot::default();
            stall.duration_ns = 120_000_000;
            stall.ended_at_unix_ms = taken_at_unix_ms - 5_000;
            stall.worker = index % 8;
            session.recent_stalls = vec![stall.clone()];
            session.last_stall = Some(stall);
            session.state = SessionState::Slow;
        }
        if index % 997 == 0 {
            session.blocking_for_ms = Some(230);
        }
        session.mem_bytes = u64::from(index % 500) * 4_096 + 65_536;
        session.mem_peak_bytes = session.mem_bytes * 2;
        session.alloc_count = u64::from(index) * 3;
        session.children_live_count = u64::from(index % 3);
        snapshot.sessions.push(session);
    }
    snapshot
}

/// The response line a worker sends for `snapshot`.
fn answer_line(snapshot: PoolSnapshot) -> Vec<u8> {
    let mut line = serde_json::to_vec(&ResponseEnvelope {
        v: PROTOCOL_VERSION,
        response: Response::Snapshot {
            snapshot: Box::new(snapshot),
        },
    })
    .unwrap();
    line.push(b'\n');
    line
}

/// Serves `answers` in turn on `socket`, one per connection, like a worker would.
fn serve(socket: &Path, answers: Vec<Vec<u8>>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for answer in answers.iter().cycle() {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() || request.is_empty() {
                return;
            }
            let _ = reader.into_inner().write_all(answer);
        }
    })
}

/// The median of some durations.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Milliseconds with two decimals.
fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1_000.0)
}

fn main() {
    let full_run = std::env::args().any(|argument| argument == "--bench");
    let (sessions, iterations) = if full_run { (10_000, 41) } else { (100, 1) };
    let start_unix_ms = 1_700_000_000_000;

    // Several rounds with changing figures, so sorting and histories see real change.
    let answers: Vec<Vec<u8>> = (0..4)
        .map(|round| answer_line(big_snapshot(sessions, start_unix_ms, round)))
        .collect();
    let answer_bytes = answers[0].len();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bench-4242.sock");
    let _server = serve(&socket, answers);

    let settings = Settings {
        sort: SortKey::Cpu,
        refresh_rate_hz: 2.0,
        ..Settings::default()
    };
    let (commands, _command_receiver) = std::sync::mpsc::channel();
    let mut app = App::new(State::new(settings), commands);
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let theme = Theme { color: true };

    let (mut reads, mut updates, mut draws, mut totals) = (vec![], vec![], vec![], vec![]);
    for iteration in 0..iterations {
        let started = Instant::now();
        let snapshot = ask_for_snapshot(&socket).unwrap().unwrap();
        let read = started.elapsed();

        let round = SurveyRound {
            polls: vec![WorkerPoll {
                socket: socket.clone(),
                outcome: PollOutcome::Snapshot(Box::new(snapshot)),
            }],
            directory_error: None,
            finished_at_unix_ms: start_unix_ms + iteration * 500,
        };
        let updating = Instant::now();
        app.state_mut().apply_round(round);
        let update = updating.elapsed();

        let drawing = Instant::now();
        app.draw(&mut terminal, theme).unwrap();
        let draw = drawing.elapsed();

        reads.push(read);
        updates.push(update);
        draws.push(draw);
        totals.push(started.elapsed());
    }
    assert_eq!(app.state().rows().len(), sessions as usize);
    let per_refresh = median(totals);

    println!(
        "top_cost: {sessions} live sessions, {answer_bytes} bytes per snapshot, median of \
         {iterations} refreshes"
    );
    println!("  read + decode the snapshot  {}", ms(median(reads)));
    println!("  update the state            {}", ms(median(updates)));
    println!("  draw a 200x50 frame         {}", ms(median(draws)));
    println!("  one refresh                 {}", ms(per_refresh));
    for rate_hz in [1.0, 2.0, 10.0] {
        println!(
            "  CPU at {rate_hz:>4} Hz             {:.1} % of one core",
            per_refresh.as_secs_f64() * rate_hz * 100.0
        );
    }
}
