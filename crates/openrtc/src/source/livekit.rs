//! A LiveKit agent worker: the worker registers with a LiveKit server's agent service, answers
//! its job offers through the admission chain, and runs each job it is assigned as one session.
//!
//! The worker protocol (LiveKit's `livekit_agent.proto`: one protobuf message per binary
//! frame, over one WebSocket at `<url>/agent`, authorised by an access token with the `agent`
//! grant) runs on a thread of its own (`openrtc-livekit`, a current-thread runtime), never on
//! a worker thread, so a session blocking every worker thread cannot make the server think the
//! worker is gone. Its parts:
//!
//! - `options` (public): [`LiveKitOptions`], from code or from LiveKit's environment variables.
//! - `url` (pure): the server's URL as the control WebSocket's (`http` → `ws`, `/agent`).
//! - `load` (pure): the load the worker reports (its sessions, held places included, over its
//!   capacity: the right measure for a worker whose capacity is a count of sessions, not a
//!   CPU), its status (`FULL` at the threshold or while draining), the reconnect backoff.
//! - `protocol` (pure): the messages, encoded and decoded, and the worker's token.
//! - `jobs`: offers, holds and jobs. An offer runs routing and admission **with a
//!   reservation** (the places stay held until the assignment comes, or are given back when it
//!   does not come in time), so two offers racing for the last place are never both accepted;
//!   an assignment starts the held session with its [`LiveKitJob`]; a session's typed outcome
//!   becomes the job's status; a termination cancels the session (`terminated`).
//! - `worker`: the thread, the connection and its reconnects (running sessions survive a
//!   reconnect and are reported back), the status every 2.5 s and at once on a change.

mod job;
mod jobs;
mod load;
mod options;
mod protocol;
pub mod room;
mod state;
mod url;
mod worker;

pub use job::LiveKitJob;
pub use options::{LiveKitConfigError, LiveKitJobType, LiveKitOptions};
pub(crate) use state::LiveKitState;
pub use url::UrlError;
pub(crate) use worker::LiveKitWorker;
