//! The live view's connection to the workers: a background thread that runs a
//! [`discover::survey_round`] at the refresh rate, and sends the cancel requests the operator
//! confirms.
//!
//! The thread never touches the terminal. It reports through a callback (the live view turns
//! reports into events of its one event loop) and takes [`ConnCommand`]s over a channel;
//! when the channel closes, the thread ends.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use openrtc_proto::{Request, Response, SessionId};

use crate::discover::{self, SurveyRound, Target};
use crate::top::format::clean_text;

/// What the live view asks of the connection thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnCommand {
    /// Ask every worker for a snapshot now, paused or not.
    RefreshNow,
    /// Stop asking on the timer (`true`) or start again (`false`, which asks at once).
    SetPaused(bool),
    /// Ask the worker at `socket` to cancel a session.
    Cancel {
        /// The worker's socket.
        socket: PathBuf,
        /// The session's full id.
        session_id: SessionId,
    },
}

/// How a cancel request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelAnswer {
    /// The session id the request named.
    pub session_id: SessionId,
    /// The worker's answer: the full id of the cancelled session, or why it was refused or
    /// could not be sent.
    pub outcome: Result<SessionId, String>,
}

/// A report from the connection thread.
#[derive(Clone, Debug)]
pub enum ConnEvent {
    /// A survey round finished.
    Round(SurveyRound),
    /// A cancel request was answered.
    CancelAnswered(CancelAnswer),
}

/// The running connection thread. Dropping it (and every sender from [`Conn::commands`])
/// closes the command channel, which ends the thread after its current round; nobody waits
/// for that, so quitting is never held up by a slow worker.
#[derive(Debug)]
pub struct Conn {
    commands: Sender<ConnCommand>,
}

impl Conn {
    /// Starts the thread: it surveys `target` (only workers named `worker_name`, when given)
    /// at once and then every `refresh_period`, and hands every report to `report`, stopping
    /// when `report` returns `false` or the command channel closes.
    ///
    /// # Errors
    ///
    /// Fails when the operating system cannot start a thread.
    pub fn spawn(
        target: Target,
        worker_name: Option<String>,
        refresh_period: Duration,
        report: impl FnMut(ConnEvent) -> bool + Send + 'static,
    ) -> std::io::Result<Self> {
        let (commands, received) = mpsc::channel();
        std::thread::Builder::new()
            .name("openrtc-top-conn".into())
            .spawn(move || {
                run_connection(
                    &target,
                    worker_name.as_deref(),
                    refresh_period,
                    &received,
                    report,
                );
            })?;
        Ok(Self { commands })
    }

    /// A sender of commands to the thread.
    #[must_use]
    pub fn commands(&self) -> Sender<ConnCommand> {
        self.commands.clone()
    }
}

/// The thread's loop: survey, then wait for a command or the next refresh.
fn run_connection(
    target: &Target,
    worker_name: Option<&str>,
    refresh_period: Duration,
    commands: &Receiver<ConnCommand>,
    mut report: impl FnMut(ConnEvent) -> bool,
) {
    let mut paused = false;
    let mut next_survey = Instant::now();
    loop {
        let command = if paused {
            match commands.recv() {
                Ok(command) => Some(command),
                Err(_) => return,
            }
        } else {
            match commands.recv_timeout(next_survey.saturating_duration_since(Instant::now())) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let survey_now = match command {
            None | Some(ConnCommand::RefreshNow) => true,
            Some(ConnCommand::SetPaused(pause)) => {
                let resumed = paused && !pause;
                paused = pause;
                resumed
            }
            Some(ConnCommand::Cancel { socket, session_id }) => {
                let outcome = cancel_session(&socket, session_id);
                if !report(ConnEvent::CancelAnswered(CancelAnswer {
                    session_id,
                    outcome,
                })) {
                    return;
                }
                // Show the session leaving as soon as the worker has let it go.
                true
            }
        };
        if survey_now {
            let round = discover::survey_round(target, worker_name);
            if !report(ConnEvent::Round(round)) {
                return;
            }
            next_survey = Instant::now() + refresh_period;
        }
    }
}

/// Sends one cancel request: the full id of the cancelled session, or why not.
fn cancel_session(socket: &std::path::Path, session_id: SessionId) -> Result<SessionId, String> {
    let request = Request::Cancel {
        session_id: session_id.to_string(),
    };
    match discover::query(socket, &request) {
        Ok(Response::Cancelled { session_id }) => Ok(session_id),
        Ok(Response::Error { message, .. }) => Err(clean_text(&message, 200)),
        Ok(_) => Err("the worker answered a cancel request with something else".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}
