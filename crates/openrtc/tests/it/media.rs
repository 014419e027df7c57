//! The media WebSocket listener over real sockets, dialled by a real WebSocket client
//! (`tokio-tungstenite`) speaking Twilio's Media Streams messages: a call is routed by its
//! custom parameters and echoed with marks; refusals and bad input close only their own
//! connection with a code and a reason, while another call keeps its 20 ms cadence.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use openrtc::media::MediaEvent;
use openrtc::proto::SessionState;
use openrtc::{AgentError, AgentPool, RefusalReason, Session, agent_fn};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::support::{PATIENCE, RunningPool, TestPool as _, wait_for};

pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Echoes every chunk it hears, with a mark after each 25 chunks (half a second); ends when
/// the call does.
pub(crate) fn echo() -> impl openrtc::Agent {
    agent_fn(|session: Session| async move {
        let Some(mut call) = session.media() else {
            return Err(AgentError::msg("not a call"));
        };
        assert!(session.media().is_none(), "the media is taken once");
        let mut heard = 0_u64;
        while let Some(event) = call.recv().await {
            if let MediaEvent::Audio(frame) = event {
                call.send(&frame.samples).await?;
                heard += 1;
                if heard % 25 == 0 {
                    call.mark(&format!("utterance-{}", heard / 25)).await?;
                }
            }
        }
        Ok(())
    })
}

/// A pool of the `echo` agent taking calls on any free port.
pub(crate) fn pool(worker: &str, max_sessions: u32) -> RunningPool {
    RunningPool::start(
        AgentPool::builder()
            .agent("echo", echo())
            .worker_name(worker)
            .worker_threads(2)
            .max_concurrent_sessions(max_sessions)
            .media_listener("127.0.0.1:0".parse().expect("addr")),
    )
}

pub(crate) fn media_url(pool: &RunningPool) -> String {
    let addr = pool
        .snapshot()
        .worker
        .media_addr
        .expect("the bound address is in the snapshot");
    format!("ws://{addr}/media")
}

pub(crate) async fn dial(url: &str) -> Client {
    connect_async(url).await.expect("the worker takes calls").0
}

pub(crate) fn start(stream: &str, params: &[(&str, &str)]) -> String {
    let params: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(key, value)| ((*key).to_owned(), serde_json::json!(value)))
        .collect();
    serde_json::json!({
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC0001",
            "streamSid": stream,
            "callSid": "CA0001",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": params,
        },
        "streamSid": stream,
    })
    .to_string()
}

/// The `chunk`-th 20 ms chunk: 160 μ-law codes that round-trip through PCM unchanged (0x7F
/// decodes to the same 0 as 0xFF, so it is left out).
pub(crate) fn payload(chunk: u64) -> Vec<u8> {
    (0..160_u64)
        .map(|index| {
            let code = ((chunk * 7 + index) % 255) as u8;
            if code == 0x7F { 0x7E } else { code }
        })
        .collect()
}

pub(crate) fn media(stream: &str, chunk: u64, payload: &[u8]) -> String {
    media_at(stream, chunk, (chunk - 1) * 20, payload)
}

/// A `media` message with its stream time given.
fn media_at(stream: &str, chunk: u64, timestamp_ms: u64, payload: &[u8]) -> String {
    serde_json::json!({
        "event": "media",
        "sequenceNumber": (chunk + 1).to_string(),
        "media": {
            "track": "inbound",
            "chunk": chunk.to_string(),
            "timestamp": timestamp_ms.to_string(),
            "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        },
        "streamSid": stream,
    })
    .to_string()
}

fn mark_echo(stream: &str, name: &str) -> String {
    serde_json::json!({"event": "mark", "streamSid": stream, "mark": {"name": name}}).to_string()
}

/// Reads until the worker closes: its close code and reason.
async fn closed(client: &mut Client) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let next = tokio::time::timeout_at(deadline, client.next())
            .await
            .expect("the worker closes the connection in time");
        match next {
            Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                return (u16::from(code), reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("the connection broke instead of closing: {error}"),
        }
    }
}

/// What the worker sent back: media payloads in order, and mark names.
#[derive(Default)]
struct Heard {
    payloads: Vec<Vec<u8>>,
    marks: Vec<String>,
}

impl Heard {
    fn take(&mut self, text: &str) {
        let message: serde_json::Value = serde_json::from_str(text).expect("JSON from the worker");
        match message["event"].as_str() {
            Some("media") => self.payloads.push(
                base64::engine::general_purpose::STANDARD
                    .decode(message["media"]["payload"].as_str().expect("a payload"))
                    .expect("base64"),
            ),
            Some("mark") => self
                .marks
                .push(message["mark"]["name"].as_str().expect("a name").to_owned()),
            other => panic!("unexpected message {other:?}: {text}"),
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_is_routed_by_its_parameters_and_echoed_with_marks() {
    let pool = pool("media-echo", 8);
    let url = media_url(&pool);
    let mut client = dial(&url).await;
    client
        .send(Message::text(
            r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
        ))
        .await
        .expect("send");
    client
        .send(Message::text(start(
            "MZ-echo",
            &[("agent", "echo"), ("tenant", "acme"), ("lang", "fr")],
        )))
        .await
        .expect("send");
    let session = wait_for("the call's session", || {
        pool.snapshot().sessions.into_iter().next()
    });
    assert_eq!(
        (session.agent.as_str(), session.tenant.as_str()),
        ("echo", "acme")
    );
    assert_eq!(session.metadata["lang"], "fr");
    assert_eq!(session.metadata["call"]["stream_id"], "MZ-echo");
    assert_eq!(session.metadata["call"]["call_id"], "CA0001");
    assert_eq!(session.state, SessionState::Active);

    let mut heard = Heard::default();
    for chunk in 1..=50 {
        client
            .send(Message::text(media("MZ-echo", chunk, &payload(chunk))))
            .await
            .expect("send");
    }
    while heard.payloads.len() < 50 || heard.marks.len() < 2 {
        let next = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("the echo in time");
        match next {
            Some(Ok(Message::Text(text))) => heard.take(&text),
            other => panic!("unexpected {other:?}"),
        }
    }
    let sent: Vec<Vec<u8>> = (1..=50).map(payload).collect();
    assert_eq!(heard.payloads, sent, "the echo is what was said, in order");
    assert_eq!(heard.marks, ["utterance-1", "utterance-2"]);
    // Twilio echoes a mark once played; the agent's side takes it as an event.
    client
        .send(Message::text(mark_echo("MZ-echo", "utterance-1")))
        .await
        .expect("send");
    client
        .send(Message::text(
            r#"{"event":"stop","sequenceNumber":"53","stop":{"accountSid":"AC0001","callSid":"CA0001"},"streamSid":"MZ-echo"}"#,
        ))
        .await
        .expect("send");
    let (code, reason) = closed(&mut client).await;
    assert_eq!((code, reason.as_str()), (1000, "the stream stopped"));
    let ended = pool.wait_ended(session.id);
    assert_eq!(ended.outcome, openrtc::proto::SessionOutcome::Completed);
    let tasks = pool.snapshot().worker.tasks;
    assert_eq!(
        tasks.spawned_count, 1,
        "the call's pump is a task of its session"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_close_the_call_with_their_code_and_reason_and_are_counted() {
    let pool = pool("media-refusals", 1);
    let url = media_url(&pool);
    let mut unknown = dial(&url).await;
    unknown
        .send(Message::text(start("MZ-x", &[("agent", "nobody")])))
        .await
        .expect("send");
    let (code, reason) = closed(&mut unknown).await;
    assert_eq!(code, 1008);
    assert_eq!(reason, "refused: unknown agent \"nobody\"");

    let mut first = dial(&url).await;
    first
        .send(Message::text(start("MZ-1", &[("agent", "echo")])))
        .await
        .expect("send");
    wait_for("the first call's session", || {
        (pool.snapshot().sessions.len() == 1).then_some(())
    });
    let mut second = dial(&url).await;
    second
        .send(Message::text(start("MZ-2", &[])))
        .await
        .expect("send");
    let (code, reason) = closed(&mut second).await;
    assert_eq!(code, 1013);
    assert_eq!(reason, "refused: worker is full: 1 concurrent sessions");
    let refusals = pool.snapshot().worker.refusals;
    assert_eq!(refusals[&RefusalReason::UnknownAgent], 1);
    assert_eq!(refusals[&RefusalReason::WorkerFull], 1);
    assert_eq!(pool.snapshot().sessions.len(), 1, "the first call goes on");
}

/// One bad connection: what it sends after dialling, and the close it must get.
struct BadCall {
    name: &'static str,
    messages: Vec<Message>,
    code: u16,
    reason_starts: &'static str,
}

fn bad_calls() -> Vec<BadCall> {
    let started = |then: Message| vec![Message::text(start("MZ-bad", &[])), then];
    vec![
        BadCall {
            name: "binary frame",
            messages: vec![Message::binary(vec![1, 2, 3])],
            code: 1003,
            reason_starts: "binary frame",
        },
        BadCall {
            name: "not JSON",
            messages: vec![Message::text("hello")],
            code: 1007,
            reason_starts: "",
        },
        BadCall {
            name: "media before start",
            messages: vec![Message::text(media("MZ-bad", 1, &payload(1)))],
            code: 1008,
            reason_starts: "media before the start message",
        },
        BadCall {
            name: "bad base64",
            messages: started(Message::text(
                r#"{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"%%%"},"streamSid":"MZ-bad"}"#,
            )),
            code: 1007,
            reason_starts: "",
        },
        BadCall {
            name: "second start",
            messages: started(Message::text(start("MZ-bad", &[]))),
            code: 1008,
            reason_starts: "a second start message",
        },
        BadCall {
            name: "frame over 64 KiB",
            messages: started(Message::text("x".repeat(70 * 1024))),
            code: 1009,
            reason_starts: "",
        },
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn bad_input_closes_only_its_connection_while_another_call_keeps_its_cadence() {
    let pool = pool("media-bad-input", 16);
    let url = media_url(&pool);
    let mut good = dial(&url).await;
    good.send(Message::text(start("MZ-good", &[("agent", "echo")])))
        .await
        .expect("send");
    let mut chunk = 0_u64;
    let mut echoes = 0_u64;
    let mut longest_echo_gap = Duration::ZERO;
    let mut last_echo = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut bad = bad_calls().into_iter();
    let mut current: Option<(BadCall, Client)> = None;
    let mut checked = Vec::new();
    // 3 s of a 20 ms call, while the bad calls come and go one after another.
    while chunk < 150 {
        tokio::select! {
            _ = ticks.tick() => {
                chunk += 1;
                good.send(Message::text(media("MZ-good", chunk, &payload(chunk))))
                    .await
                    .expect("send");
                if current.is_none() {
                    if let Some(call) = bad.next() {
                        let mut client = dial(&url).await;
                        for message in &call.messages {
                            // The worker may close before the last one is sent.
                            let _ = client.send(message.clone()).await;
                        }
                        current = Some((call, client));
                    }
                }
            }
            Some(message) = good.next() => {
                if let Ok(Message::Text(text)) = message {
                    if text.contains("\"media\"") {
                        echoes += 1;
                        longest_echo_gap = longest_echo_gap.max(last_echo.elapsed());
                        last_echo = Instant::now();
                    }
                }
            }
            close = async { closed(&mut current.as_mut().expect("a bad call").1).await }, if current.is_some() => {
                let (call, _) = current.take().expect("a bad call");
                assert_eq!(close.0, call.code, "{}: {close:?}", call.name);
                assert!(close.1.starts_with(call.reason_starts), "{}: {close:?}", call.name);
                assert!(!close.1.is_empty(), "{}: a close says why", call.name);
                checked.push(call.name);
            }
        }
    }
    assert_eq!(
        checked.len(),
        bad_calls().len(),
        "every bad call was closed: {checked:?}"
    );
    // Every echo of the good call came back, and none waited long (generous for CI).
    let deadline = Instant::now() + PATIENCE;
    while echoes < chunk && Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(PATIENCE, good.next()).await
        {
            if text.contains("\"media\"") {
                echoes += 1;
            }
        }
    }
    assert_eq!(echoes, chunk, "the good call heard every echo");
    assert!(
        longest_echo_gap < Duration::from_millis(500),
        "the good call's echo stalled {longest_echo_gap:?}"
    );
    // The bad calls that had started a session ended with their connection.
    wait_for("only the good call to be live", || {
        (pool.snapshot().sessions.len() == 1).then_some(())
    });
}

/// The signature Twilio's own library computes for a webhook request.
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let params: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(key, value)| ((*key).to_owned(), serde_json::json!(value)))
        .collect();
    let output = std::process::Command::new(crate::support::py_tool("python"))
        .args([
            "-c",
            "import json, sys\n\
             from twilio.request_validator import RequestValidator\n\
             token, url, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n\
             print(RequestValidator(token).compute_signature(url, params))",
            token,
            url,
            &serde_json::Value::Object(params).to_string(),
        ])
        .output()
        .expect("run python");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `POST path` with a form body and an optional signature: status and body.
fn post_form(
    addr: &str,
    path: &str,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let body: Vec<String> = params
        .iter()
        .map(|(key, value)| format!("{}={}", key, value.replace('+', "%2B")))
        .collect();
    let body = body.join("&");
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let signature = signature
        .map(|signature| format!("X-Twilio-Signature: {signature}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{signature}\r\n{body}",
        body.len()
    )
    .expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

#[test]
fn the_voice_webhook_answers_signed_requests_with_twiml_that_streams_the_call_here() {
    let token = "test-auth-token";
    let public_url = "https://calls.example.com/voice";
    let pool = RunningPool::start(
        AgentPool::builder()
            .agent("echo", echo())
            .worker_name("media-webhook")
            .worker_threads(2)
            .media_listener("127.0.0.1:0".parse().expect("addr"))
            .voice_webhook(
                openrtc::media::VoiceWebhook::new("wss://calls.example.com/media")
                    .public_url(public_url)
                    .auth_token(token)
                    .route("+15550100", [("agent", "echo"), ("tenant", "acme")]),
            ),
    );
    let addr = pool
        .snapshot()
        .worker
        .media_addr
        .expect("the media address");
    let params = [
        ("AccountSid", "AC0001"),
        ("CallSid", "CA0001"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+15550199"),
        ("To", "+15550100"),
    ];
    let signature = twilio_signature(token, public_url, &params);
    let (status, twiml) = post_form(&addr, "/voice", &params, Some(&signature));
    assert_eq!(status, 200, "{twiml}");
    assert_eq!(
        twiml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect>\
         <Stream url=\"wss://calls.example.com/media\">\
         <Parameter name=\"agent\" value=\"echo\"/>\
         <Parameter name=\"from_number\" value=\"+15550199\"/>\
         <Parameter name=\"tenant\" value=\"acme\"/>\
         <Parameter name=\"to_number\" value=\"+15550100\"/>\
         </Stream></Connect></Response>"
    );
    // A signature over other parameters, or none: refused, with no TwiML.
    let forged = twilio_signature(token, public_url, &params[..5]);
    for signature in [Some(forged.as_str()), None] {
        let (status, body) = post_form(&addr, "/voice", &params, signature);
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains("<Response>"), "{body}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sequence_gaps_and_stream_time_jumps_show_exactly_in_the_call_s_media_row() {
    let pool = pool("media-gaps", 8);
    let url = media_url(&pool);
    let mut client = dial(&url).await;
    client
        .send(Message::text(start(
            "MZ-gaps",
            &[("agent", "echo"), ("tenant", "acme")],
        )))
        .await
        .expect("send");
    // Chunks 11 to 13 and 21 to 24 never come: 7 missing. Chunk 26 comes in sequence but
    // 100 ms of stream time late: one jump.
    let chunks = (1..=10).chain(14..=20).chain(25..=25);
    let mut sent = 0_u64;
    for chunk in chunks {
        client
            .send(Message::text(media("MZ-gaps", chunk, &payload(chunk))))
            .await
            .expect("send");
        sent += 1;
    }
    client
        .send(Message::text(media_at(
            "MZ-gaps",
            26,
            25 * 20 + 100,
            &payload(26),
        )))
        .await
        .expect("send");
    sent += 1;
    let row = wait_for("every frame in the call's row", || {
        pool.snapshot().sessions.into_iter().find(|row| {
            row.media
                .as_ref()
                .is_some_and(|media| media.frames_in_count == sent)
        })
    });
    let media = row.media.expect("a call's row has its media");
    assert_eq!(media.provider, "twilio");
    assert_eq!(media.stream_id, "MZ-gaps");
    assert_eq!(media.frames_missing_count, 7);
    assert_eq!(media.window_frames_missing_count, 7);
    assert_eq!(media.stream_jumps_count, 1);
    assert_eq!(media.window_stream_jumps_count, 1);
    assert_eq!(media.frames_dropped_count, 0);
    assert_eq!(media.window_ms, 10_000);
    assert!(media.degrading, "missing frames in the window: {media:?}");
    let tenant = &pool.snapshot().tenants["acme"];
    assert_eq!(tenant.call_frames_missing_count, 7);
    assert_eq!(tenant.call_frames_dropped_count, 0);
}
