//! `openrtc health`, the built binary, against the demo worker's real `/health` and against
//! stand-in HTTP servers answering what each test sets: unreachable, not JSON, critical, and
//! `--continuous` through changes and a restart.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openrtc_cli::health::client;
use openrtc_cli::health::url::parse_health_url;
use openrtc_proto::{
    HEALTH_VERSION, HealthIssue, HealthIssueCode, HealthReport, HealthStatus, SessionId,
};

use crate::binary::{openrtc, run, stderr, stdout};
use crate::live::{DemoWorker, wait_for_snapshots};

/// How long a wait may take before the test fails: generous, for busy CI machines.
const PATIENCE: Duration = Duration::from_secs(30);

/// A stand-in HTTP server: answers every connection with the raw answer it holds now.
struct StandInHttp {
    addr: SocketAddr,
    answer: Arc<Mutex<String>>,
    delay: Arc<Mutex<Duration>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl StandInHttp {
    /// Listens on `addr` (port 0 for any) and answers with `answer`.
    fn start(addr: &str, answer: String) -> Self {
        let listener = TcpListener::bind(addr).expect("bind the stand-in HTTP server");
        let addr = listener.local_addr().expect("local address");
        let answer = Arc::new(Mutex::new(answer));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let answer = Arc::clone(&answer);
            let delay = Arc::clone(&delay);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    // Read the request head, then answer and close.
                    let mut head = Vec::new();
                    let mut byte = [0_u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    // A slow endpoint is the behaviour under test, not synchronisation.
                    let delay = *delay.lock().expect("delay lock");
                    std::thread::sleep(delay);
                    let text = answer.lock().expect("answer lock").clone();
                    let _ = stream.write_all(text.as_bytes());
                }
            })
        };
        Self {
            addr,
            answer,
            delay,
            stop,
            handle: Some(handle),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, answer: String) {
        *self.answer.lock().expect("answer lock") = answer;
    }

    /// Makes every later answer wait `delay` first.
    fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("delay lock") = delay;
    }

    /// Stops listening: the port is closed when this returns.
    fn close(mut self) -> SocketAddr {
        self.shut();
        self.addr
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("the stand-in server thread");
        }
    }
}

impl Drop for StandInHttp {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A raw HTTP answer with `status` and `body`.
fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A health report saying `status`, with a blocked-session issue unless ok.
fn report(status: HealthStatus) -> HealthReport {
    let mut report = HealthReport::default();
    report.schema_version = HEALTH_VERSION;
    report.status = status;
    report.worker = "stand-in".to_owned();
    report.version = "0.0.0".to_owned();
    report.uptime_s = 61;
    if status == HealthStatus::Critical {
        let mut issue = HealthIssue::new(
            HealthIssueCode::WorkerBlocked,
            HealthStatus::Critical,
            "worker thread 0 has polled s-42 for 9000 ms",
        );
        issue.session_id = SessionId::from_u64(42);
        issue.tenant = Some("acme".to_owned());
        report.issues.push(issue);
    }
    report
}

fn answer_of(status: HealthStatus) -> String {
    let body = serde_json::to_string(&report(status)).expect("serialize a report");
    match status {
        HealthStatus::Critical => http("503 Service Unavailable", &body),
        _ => http("200 OK", &body),
    }
}

/// An address nobody listens on: a port bound and let go.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address")
}

#[test]
fn an_unreachable_endpoint_exits_2_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = closed_port();
    let output = run(dir.path(), &["health", "--url", &addr.to_string()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let shown = stdout(&output);
    assert!(shown.starts_with("status: unreachable"), "{shown}");
    assert!(
        shown.contains(&format!("cannot connect to {addr}")),
        "{shown}"
    );
    // With --json nothing goes to standard output, the reason to standard error.
    let output = run(
        dir.path(),
        &["health", "--json", "--url", &addr.to_string()],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("unreachable"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_answer_that_is_not_a_report_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = StandInHttp::start("127.0.0.1:0", http("200 OK", "not json"));
    let output = run(dir.path(), &["health", "--url", &server.url()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let shown = stdout(&output);
    assert!(
        shown.starts_with("status: bad_answer") && shown.contains("not JSON"),
        "{shown}"
    );
    let ok = serde_json::to_string(&report(HealthStatus::Ok)).expect("serialize");
    server.set(http("404 Not Found", &ok));
    let output = run(dir.path(), &["health", "--url", &server.url()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains("HTTP status 404"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_critical_answer_exits_1_and_names_the_issue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = StandInHttp::start("127.0.0.1:0", answer_of(HealthStatus::Critical));
    let url = format!("{}/health", server.url());
    let output = run(dir.path(), &["health", "--url", &url]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let shown = stdout(&output);
    assert!(
        shown.starts_with("status: critical  worker stand-in"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "worker_blocked critical session s-42 tenant acme: worker thread 0 has polled s-42 \
             for 9000 ms"
        ),
        "{shown}"
    );
    assert!(
        !shown.contains('\x1b'),
        "no colour without a terminal: {shown:?}"
    );

    let output = run(dir.path(), &["health", "--json", "--url", &url]);
    assert_eq!(output.status.code(), Some(1));
    let shown = stdout(&output);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    let parsed: HealthReport = serde_json::from_str(&shown).expect("a health report");
    assert_eq!(parsed, report(HealthStatus::Critical));

    server.set(answer_of(HealthStatus::Ok));
    let output = run(dir.path(), &["health", "--url", &url]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).starts_with("status: ok"));
}

#[test]
fn a_slow_ok_answer_is_degraded_with_slow_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = StandInHttp::start("127.0.0.1:0", answer_of(HealthStatus::Ok));
    server.set_delay(Duration::from_millis(2300));
    let output = run(
        dir.path(),
        &["health", "--url", &server.url(), "--timeout", "20s"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let shown = stdout(&output);
    assert!(shown.starts_with("status: degraded"), "{shown}");
    assert!(
        shown.contains("slow_response  the health endpoint took"),
        "{shown}"
    );

    // --timeout shorter than the answer: unreachable, exit 2.
    let output = run(
        dir.path(),
        &["health", "--url", &server.url(), "--timeout", "200ms"],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        stdout(&output).contains("no complete answer"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn continuous_prints_one_line_per_change_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = StandInHttp::start("127.0.0.1:0", answer_of(HealthStatus::Ok));
    let addr = server.addr;
    let mut child = openrtc(dir.path())
        .args(["health", "--continuous", "--interval", "100ms"])
        .args(["--url", &server.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openrtc health");
    let (lines_tx, lines) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let line = line.expect("a line");
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |expected: &str| {
        let line = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no line saying {expected}"));
        let status = line.split_whitespace().nth(1).unwrap_or_default();
        assert_eq!(status, expected, "{line}");
        line
    };
    let first = next("ok");
    assert!(first.ends_with("worker stand-in: no issues"), "{first}");
    server.set(answer_of(HealthStatus::Critical));
    let critical = next("critical");
    assert!(critical.contains("worker_blocked s-42"), "{critical}");
    let addr_closed = server.close();
    assert_eq!(addr_closed, addr);
    next("unreachable");
    let restarted = StandInHttp::start(&addr.to_string(), answer_of(HealthStatus::Ok));
    next("ok");

    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    reader.join().expect("the reader thread");
    // The status stayed ok after the restart: no further line.
    let extra: Vec<String> = lines.try_iter().collect();
    assert!(extra.is_empty(), "{extra:?}");
    drop(restarted);
}

#[test]
fn health_reads_the_demo_worker_s_real_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _worker =
        DemoWorker::start_with_http(dir.path(), "healthy", "echo", 3, None, "127.0.0.1:0");
    let snapshots = wait_for_snapshots(dir.path(), &[], "the HTTP address", |all| {
        all.len() == 1 && all[0].worker.http_addr.is_some()
    });
    let addr = snapshots[0]
        .worker
        .http_addr
        .clone()
        .expect("the demo serves HTTP");
    let endpoint = parse_health_url(&addr).expect("a health URL");
    let direct_status = || -> HealthStatus {
        let response = client::get(&endpoint, PATIENCE).expect("GET /health");
        let report: HealthReport = serde_json::from_slice(&response.body).expect("a report");
        report.status
    };

    // The demo's status may change between two looks (a stall, a minute passing): compare
    // only when a direct look before and after agree.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let before = direct_status();
        let output = run(dir.path(), &["health", "--url", &addr]);
        let after = direct_status();
        if before == after {
            let shown = stdout(&output);
            let expected_code = if before == HealthStatus::Ok { 0 } else { 1 };
            assert_eq!(output.status.code(), Some(expected_code), "{output:?}");
            assert!(
                shown.starts_with(&format!("status: {}  worker healthy", before.as_str())),
                "{shown}"
            );
            assert!(shown.contains("resources: rss "), "{shown}");
            break;
        }
        assert!(Instant::now() < deadline, "the demo's status never settled");
    }

    // Without --url, the address comes from the worker's snapshot; --json is the report.
    let output = run(dir.path(), &["health", "--json"]);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{output:?}");
    let shown = stdout(&output);
    assert_eq!(shown.lines().count(), 1, "{shown}");
    let parsed: HealthReport = serde_json::from_str(&shown).expect("a health report");
    assert_eq!(parsed.worker, "healthy");
    assert_eq!(parsed.schema_version, HEALTH_VERSION);
    let expected_code = if parsed.status == HealthStatus::Ok {
        0
    } else {
        1
    };
    assert_eq!(output.status.code(), Some(expected_code));
}
