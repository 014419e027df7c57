//! The live view's application: the state, the way to the connection thread, and the one
//! event loop that turns keys, resizes, signals and connection reports into state changes
//! and redraws.

use std::sync::mpsc::{Receiver, Sender};

use crossterm::event::KeyEvent;
use ratatui::Terminal;
use ratatui::backend::Backend;

use super::conn::{ConnCommand, ConnEvent};
use super::input;
use super::state::{Effect, State};
use super::view::{self, Theme};

/// Everything the event loop reacts to, from every source, in one channel.
#[derive(Clone, Debug)]
pub enum AppEvent {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal changed size.
    Resize,
    /// The connection thread reported.
    Conn(ConnEvent),
    /// SIGTERM, SIGHUP, SIGINT or SIGQUIT arrived: leave, restoring the terminal.
    Signal,
}

/// Whether the loop goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep running; redraw if `changed`.
    Continue {
        /// Whether the screen needs drawing again.
        changed: bool,
    },
    /// Leave the live view.
    Quit,
}

/// The state plus the command channel of the connection thread.
#[derive(Debug)]
pub struct App {
    state: State,
    commands: Sender<ConnCommand>,
}

impl App {
    /// An app over `state`, sending connection commands on `commands`.
    #[must_use]
    pub fn new(state: State, commands: Sender<ConnCommand>) -> Self {
        Self { state, commands }
    }

    /// The state.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state, to change it directly (the page size, in tests).
    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// Reacts to one event.
    pub fn handle(&mut self, event: AppEvent) -> Flow {
        match event {
            AppEvent::Key(key) => self.handle_key(key),
            AppEvent::Resize => Flow::Continue { changed: true },
            AppEvent::Conn(ConnEvent::Round(round)) => Flow::Continue {
                changed: self.state.apply_round(round),
            },
            AppEvent::Conn(ConnEvent::CancelAnswered(answer)) => {
                self.state.apply_cancel_answer(answer);
                Flow::Continue { changed: true }
            }
            AppEvent::Signal => Flow::Quit,
        }
    }

    /// Reacts to one key: maps it to an action, applies it, and carries out its effect.
    pub fn handle_key(&mut self, key: KeyEvent) -> Flow {
        let Some(action) = input::action_for(&self.state, key) else {
            return Flow::Continue { changed: false };
        };
        match self.state.apply(action) {
            Some(Effect::Quit) => Flow::Quit,
            Some(Effect::Conn(command)) => {
                // A closed channel means the connection thread is gone; the view keeps
                // showing what it has, and quitting still works.
                let _ = self.commands.send(command);
                Flow::Continue { changed: true }
            }
            None => Flow::Continue { changed: true },
        }
    }

    /// Draws the screen once, first telling the state how many rows fit.
    ///
    /// # Errors
    ///
    /// Fails when the terminal cannot be written to.
    pub fn draw<B: Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
        theme: Theme,
    ) -> std::io::Result<()> {
        terminal.draw(|frame| {
            let page_rows = view::page_rows(frame.area(), &self.state);
            self.state.set_page_rows(page_rows);
            view::render(frame, &self.state, theme);
        })?;
        Ok(())
    }
}

/// The event loop: draws, then waits for events, handling every event already queued before
/// drawing again, until a quit.
///
/// # Errors
///
/// Fails when the terminal cannot be written to.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &Receiver<AppEvent>,
    theme: Theme,
) -> std::io::Result<()> {
    app.draw(terminal, theme)?;
    while let Ok(event) = events.recv() {
        let mut changed = match app.handle(event) {
            Flow::Quit => return Ok(()),
            Flow::Continue { changed } => changed,
        };
        while let Ok(event) = events.try_recv() {
            match app.handle(event) {
                Flow::Quit => return Ok(()),
                Flow::Continue { changed: also } => changed |= also,
            }
        }
        if changed {
            app.draw(terminal, theme)?;
        }
    }
    Ok(())
}
