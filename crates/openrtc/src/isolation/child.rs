//! The child's side: a process started by the worker's spawner runs one session and exits.
//!
//! Its `main` is the worker's own; the pool builder sees [`super::PARENT_ENV`] and, instead of
//! building a worker, comes here with the agents the application registered. The child
//! builds a small pool of its own (one worker thread, the same probe and watchdog, the same
//! tracking allocator if the binary installs it; no socket, listeners, tenant config or log
//! file), launches the one session its `start` message names, sends the session's row every
//! [`super::ROW_INTERVAL`], passes a cancel on, and sends the outcome, then exits.
//!
//! A phone call's session gets a `CallMedia` of its own here, made from the provider's
//! `start` frame: the caller's events arrive over the control channel (the worker's media
//! listener decodes them), and what the session sends, encoded for the provider here, goes
//! back over it to the worker's connection.
//!
//! It dies with the worker: the kernel kills it when the worker's spawner thread exits
//! (`PR_SET_PDEATHSIG`, checked against the parent's pid at once, in case the worker died
//! first), and the end of its control channel cancels its session and ends it too.

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::wire::{self, FrameReader, StartSession, ToChild, ToParent};
use crate::media::call::Outbound;
use crate::media::{CallMedia, MediaEvent};
use crate::session::StopRequest;
use crate::{AgentPoolBuilder, CancelReason, JobRequest, PoolHandle, SessionId};

/// How long a child whose worker is gone waits for its cancelled session before it exits
/// anyway.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// How long the child waits for its call's last frames to reach the worker after its session
/// ended.
const LAST_FRAMES_WAIT: Duration = Duration::from_secs(1);

/// The caller's events the child holds for its session: as the worker's media listener does,
/// a session too slow to take them loses the newest.
const INBOUND_QUEUE: usize = 64;

/// What the session sends to its caller, before `send` waits.
const OUTBOUND_QUEUE: usize = 64;

/// Why a child could not run its session.
#[derive(Debug, thiserror::Error)]
enum ChildError {
    #[error("the worker (pid {0}) is gone")]
    ParentGone(u32),
    #[error("stdin is not the worker's control channel: {0}")]
    Channel(std::io::Error),
    #[error("the control channel ended before the session's start")]
    NoStart,
    #[error("the first control message is not a start: {0}")]
    NotStart(&'static str),
    #[error("the call's start frame does not parse again: {0}")]
    CallStart(String),
    #[error("control channel: {0}")]
    Wire(#[from] wire::WireError),
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot build the session's pool: {0}")]
    Config(#[from] crate::ConfigError),
    #[error("cannot run the session's pool: {0}")]
    Run(#[from] crate::RunError),
}

/// The worker's end of the control channel, written by the main thread (rows, the outcome)
/// and the call's forwarder (its outbound frames).
#[derive(Clone)]
struct Writer(Arc<Mutex<UnixStream>>);

impl Writer {
    fn send(&self, message: &ToParent) -> Result<(), ChildError> {
        let frame = wire::encode(message)?;
        crate::lock(&self.0).write_all(&frame)?;
        Ok(())
    }
}

/// Runs the child and exits the process: 0 once the outcome (or the refusal) is sent, 70 if
/// the session could not be run (the words on stderr, which is the worker's).
pub(crate) fn run(builder: AgentPoolBuilder, parent: u32) -> ! {
    let Err(error) = run_session(builder, parent);
    eprintln!(
        "openrtc: isolated session (pid {}): {error}",
        std::process::id()
    );
    std::process::exit(70)
}

fn run_session(
    builder: AgentPoolBuilder,
    parent: u32,
) -> Result<std::convert::Infallible, ChildError> {
    if !crate::os::die_with_parent(parent) {
        return Err(ChildError::ParentGone(parent));
    }
    let control = control_channel()?;
    let mut reader = FrameReader::new(control.try_clone()?);
    let start = match reader.next_frame()? {
        None => return Err(ChildError::NoStart),
        Some(body) => match wire::decode::<ToChild>(&body)? {
            ToChild::Start(start) => start,
            ToChild::Cancel { .. } => return Err(ChildError::NotStart("a cancel")),
            ToChild::Media { .. } | ToChild::MediaClosed => {
                return Err(ChildError::NotStart("a call's media"));
            }
        },
    };
    let writer = Writer(Arc::new(Mutex::new(control)));
    let pool = builder.for_isolated_session(&start).build_pool()?;
    let running = pool.run_in_background()?;
    let handle = running.handle().clone();
    let StartSession {
        agent,
        tenant,
        metadata,
        call_start,
        ..
    } = start;
    let request = JobRequest::new()
        .agent(agent)
        .tenant(tenant)
        .metadata(metadata);
    let (call, forwarder) = match call_start {
        None => (None, None),
        Some(text) => {
            let (media, inbound, outbound) = call_media(&text)?;
            let forwarder = forward_outbound(outbound, writer.clone())?;
            (Some((media, inbound)), Some(forwarder))
        }
    };
    let (launched, inbound) = match call {
        None => (handle.launch(request), None),
        Some((media, inbound)) => (handle.launch_call(request, media), Some(inbound)),
    };
    let mut session = match launched {
        Ok(session) => session,
        Err(rejected) => {
            writer.send(&ToParent::Refused {
                reason: rejected.to_string(),
            })?;
            finish(running)
        }
    };
    writer.send(&ToParent::Started)?;
    let id = session.id();
    let listener = handle.clone();
    std::thread::Builder::new()
        .name("openrtc-control".into())
        .spawn(move || listen(&mut reader, &listener, id, inbound))?;
    let outcome = loop {
        match session.wait_outcome(super::ROW_INTERVAL) {
            Ok(outcome) => break outcome,
            Err(live) => {
                session = live;
                if let Some(row) = handle
                    .runtime_snapshot()
                    .sessions
                    .into_iter()
                    .find(|row| row.id == id)
                {
                    writer.send(&ToParent::Row { row: Box::new(row) })?;
                }
            }
        }
    };
    // The session's media is dropped with it: the forwarder sends what is left, then ends.
    if let Some(forwarder) = forwarder {
        let _ = forwarder.recv_timeout(LAST_FRAMES_WAIT);
    }
    writer.send(&ToParent::Outcome {
        outcome: outcome.to_wire(),
    })?;
    finish(running)
}

/// Exits once the worker has what it needs: dropping the pool would wait for its runtime and
/// threads to stop, which nothing is left to use.
fn finish(running: crate::RunningPool) -> ! {
    std::mem::forget(running);
    std::process::exit(0)
}

/// The child's stdin, as the socket it is.
fn control_channel() -> Result<UnixStream, ChildError> {
    use std::os::fd::AsFd as _;
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(ChildError::Channel)?;
    let stream = UnixStream::from(fd);
    // A stdin that is not a socket (a terminal, a file) has no peer.
    stream.peer_addr().map_err(ChildError::Channel)?;
    Ok(stream)
}

/// A phone call's `CallMedia` for the session, from the provider's `start` frame, with the
/// sender of its caller's events and the receiver of what it sends.
fn call_media(
    start_text: &str,
) -> Result<
    (
        CallMedia,
        mpsc::Sender<MediaEvent>,
        mpsc::Receiver<Outbound>,
    ),
    ChildError,
> {
    let start = match crate::media::protocol::parse_inbound(start_text) {
        Ok(crate::media::protocol::Inbound::Start(start)) => start,
        Ok(_) => return Err(ChildError::CallStart("not a start frame".into())),
        Err(error) => return Err(ChildError::CallStart(error.to_string())),
    };
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let media = CallMedia::new(
        Arc::new(start),
        start_text.into(),
        inbound_rx,
        outbound_tx,
        Arc::default(),
    );
    Ok((media, inbound_tx, outbound_rx))
}

/// Sends what the session queues for its caller to the worker, on a thread of its own; the
/// returned receiver hears once the session's media is gone and everything was sent.
fn forward_outbound(
    mut outbound: mpsc::Receiver<Outbound>,
    writer: Writer,
) -> Result<std::sync::mpsc::Receiver<()>, ChildError> {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("openrtc-media".into())
        .spawn(move || {
            while let Some(out) = outbound.blocking_recv() {
                if writer.send(&ToParent::Media { out: out.into() }).is_err() {
                    break;
                }
            }
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// Passes the worker's cancels and the caller's events on to the session; at the channel's
/// end (the worker is gone, or dropped the session), cancels it as a shutdown and exits the
/// process if it lingers.
fn listen(
    reader: &mut FrameReader<UnixStream>,
    handle: &PoolHandle,
    id: SessionId,
    mut inbound: Option<mpsc::Sender<MediaEvent>>,
) {
    // Until the channel's end, or an error reading it.
    while let Ok(Some(body)) = reader.next_frame() {
        match wire::decode::<ToChild>(&body) {
            Ok(ToChild::Cancel { reason }) => {
                let _ = handle.stop_with(id, StopRequest::Cancel(reason));
            }
            Ok(ToChild::Media { event }) => {
                if let Some(inbound) = &inbound {
                    // Full: the session is too slow to take its audio; it loses this.
                    let _ = inbound.try_send(event.into());
                }
            }
            Ok(ToChild::MediaClosed) => inbound = None,
            Ok(ToChild::Start(_)) => {
                eprintln!("openrtc: isolated session {id}: a second start message, ignored");
            }
            Err(error) => eprintln!("openrtc: isolated session {id}: {error}"),
        }
    }
    drop(inbound);
    let _ = handle.stop_with(id, StopRequest::Cancel(CancelReason::Shutdown));
    std::thread::sleep(ORPHAN_GRACE);
    eprintln!("openrtc: isolated session {id}: its worker is gone; exiting");
    std::process::exit(71);
}
