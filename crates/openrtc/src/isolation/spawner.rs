//! The `openrtc-spawner` thread: it starts isolated sessions' processes and reaps them.
//!
//! One plain thread per pool, started with its first isolated session, does both jobs:
//! - **Start**: the worker's own binary (`/proc/self/exe`, the file it was started from even
//!   if it has been replaced on disk since) with the worker's own arguments, so the child's
//!   `main` builds the same agents, plus [`super::PARENT_ENV`], which makes the child's pool
//!   builder run the one session the control channel names instead of a worker. The control
//!   channel is one end of a socket pair, given to the child as its stdin; its stdout goes
//!   nowhere and its stderr is the worker's. Each child leads a process group of its own.
//!   `std` starts it with `posix_spawn` (no `fork` of this multi-threaded process, no copy
//!   of its page tables: the cost does not grow with the worker's memory), never on a worker
//!   thread.
//! - **Reap**: it waits for every child it started, every [`REAP_INTERVAL`], and hands each
//!   exit status to the session that owns the child.
//!
//! The children die with this thread: each asks the kernel for SIGKILL when the thread that
//! started it exits (`PR_SET_PDEATHSIG`, which names a thread, not a process), and this thread
//! lives exactly as long as the pool's handle to it. When the pool drops it, it kills every
//! child it still has and reaps them before it returns.

use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

/// How often the thread looks for children that exited, while it has any.
const REAP_INTERVAL: Duration = Duration::from_millis(10);

/// A child just started: its pid, the worker's end of its control channel, and where its
/// exit status will arrive.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) control: UnixStream,
    pub(crate) exit: oneshot::Receiver<ExitStatus>,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// The control channel could not be made.
    #[error("cannot make the control channel of an isolated session: {0}")]
    Channel(std::io::Error),
    /// The worker's binary could not be started again.
    #[error("cannot start an isolated session's process ({program}): {error}")]
    Start {
        program: String,
        error: std::io::Error,
    },
    /// The spawner thread is gone (the pool is shutting down).
    #[error("the pool is shutting down: no isolated session can start")]
    Gone,
}

struct Request {
    reply: oneshot::Sender<Result<Spawned, SpawnError>>,
}

/// The pool's handle to its spawner thread; dropping it kills and reaps every child.
#[derive(Debug)]
pub(crate) struct Spawner {
    requests: mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the thread. `program` and `args` are what each child runs.
    pub(crate) fn start(
        program: std::path::PathBuf,
        args: Vec<std::ffi::OsString>,
    ) -> std::io::Result<Self> {
        let (requests, received) = mpsc::channel();
        std::thread::Builder::new()
            .name("openrtc-spawner".into())
            .spawn(move || spawner_loop(&program, &args, &received))?;
        Ok(Self { requests })
    }

    /// Starts one child; resolves once it is running (or could not start).
    pub(crate) async fn spawn(&self) -> Result<Spawned, SpawnError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { reply })
            .map_err(|_| SpawnError::Gone)?;
        answer.await.map_err(|_| SpawnError::Gone)?
    }
}

/// A child the thread started and has not reaped yet.
struct Started {
    child: Child,
    exit: Option<oneshot::Sender<ExitStatus>>,
}

fn spawner_loop(
    program: &std::path::Path,
    args: &[std::ffi::OsString],
    requests: &mpsc::Receiver<Request>,
) {
    let mut children: Vec<Started> = Vec::new();
    loop {
        let wait = if children.is_empty() {
            Duration::from_secs(3600)
        } else {
            REAP_INTERVAL
        };
        match requests.recv_timeout(wait) {
            Ok(request) => {
                let reply = start_child(program, args).map(|(child, spawned, exit)| {
                    children.push(Started {
                        child,
                        exit: Some(exit),
                    });
                    spawned
                });
                // The session may have been dropped meanwhile: its child is reaped anyway
                // (and killed by the session's guard, which the reply would have carried).
                if let Err(Ok(spawned)) = request.reply.send(reply) {
                    crate::os::kill_process_group(spawned.pid);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        reap(&mut children);
    }
    // The pool is gone: no session is left to own a child.
    for started in &children {
        crate::os::kill_process_group(started.child.id());
    }
    for mut started in children {
        let _ = started.child.wait();
    }
}

/// Hands the exit status of every child that has exited to its session.
fn reap(children: &mut Vec<Started>) {
    children.retain_mut(|started| match started.child.try_wait() {
        Ok(Some(status)) => {
            if let Some(exit) = started.exit.take() {
                let _ = exit.send(status);
            }
            false
        }
        Ok(None) => true,
        // ECHILD: someone else reaped it; nothing more will be known of it.
        Err(_) => false,
    });
}

/// Starts one child with its control channel.
fn start_child(
    program: &std::path::Path,
    args: &[std::ffi::OsString],
) -> Result<(Child, Spawned, oneshot::Sender<ExitStatus>), SpawnError> {
    use std::os::unix::process::CommandExt as _;
    let (ours, theirs) = UnixStream::pair().map_err(SpawnError::Channel)?;
    let child = Command::new(program)
        .args(args)
        .env(super::PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|error| SpawnError::Start {
            program: program.display().to_string(),
            error,
        })?;
    let (exit_sender, exit) = oneshot::channel();
    let spawned = Spawned {
        pid: child.id(),
        control: ours,
        exit,
    };
    Ok((child, spawned, exit_sender))
}
