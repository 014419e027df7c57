//! The `Agent` trait that user code implements, and [`agent_fn`] for plain async closures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{AgentError, Session};

/// A voice agent or bot: it runs one session at a time per call of [`Agent::run`], many
/// sessions concurrently.
///
/// ```
/// use openrtc::{Agent, AgentError, Session};
///
/// struct Echo;
///
/// impl Agent for Echo {
///     async fn run(&self, session: Session) -> Result<(), AgentError> {
///         session.cancelled().await;
///         Ok(())
///     }
/// }
/// ```
pub trait Agent: Send + Sync + 'static {
    /// Runs one session to its end. Returning `Ok` completes it, an error fails it; a panic
    /// is caught and recorded as `panicked`, without touching other sessions.
    fn run(&self, session: Session) -> impl Future<Output = Result<(), AgentError>> + Send;
}

/// An agent made of an async closure, from [`agent_fn`].
#[derive(Clone, Copy, Debug)]
pub struct AgentFn<F> {
    function: F,
}

/// Turns an async closure `|session| async move { … }` into an [`Agent`].
///
/// ```
/// let echo = openrtc::agent_fn(|session: openrtc::Session| async move {
///     session.cancelled().await;
///     Ok(())
/// });
/// # let _ = openrtc::AgentPool::builder().agent("echo", echo);
/// ```
pub fn agent_fn<F, Fut>(function: F) -> AgentFn<F>
where
    F: Fn(Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), AgentError>> + Send + 'static,
{
    AgentFn { function }
}

impl<F, Fut> Agent for AgentFn<F>
where
    F: Fn(Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), AgentError>> + Send + 'static,
{
    fn run(&self, session: Session) -> impl Future<Output = Result<(), AgentError>> + Send {
        (self.function)(session)
    }
}

/// The boxed future of one session's root task.
pub(crate) type SessionFuture = Pin<Box<dyn Future<Output = Result<(), AgentError>> + Send>>;

/// An agent behind a pointer, so agents of different types share one registry.
pub(crate) trait ErasedAgent: Send + Sync + 'static {
    fn start(self: Arc<Self>, session: Session) -> SessionFuture;
}

impl<A: Agent> ErasedAgent for A {
    fn start(self: Arc<Self>, session: Session) -> SessionFuture {
        Box::pin(async move { self.run(session).await })
    }
}
