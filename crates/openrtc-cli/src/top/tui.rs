//! The live full-screen view of `openrtc top`, split as the house style asks: [`state`]
//! (pure, updated from snapshots), [`view`] (render functions over the state), [`input`]
//! (keys to actions), [`conn`] (the thread that talks to the workers), [`app`] (the one event
//! loop tying them together) and [`terminal`] (taking over the terminal and giving it back).

pub mod app;
pub mod conn;
pub mod input;
pub mod state;
pub mod terminal;
pub mod view;

use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::Event;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::Exit;
use crate::cli::TopArgs;
use crate::top::Target;
use app::{App, AppEvent};
use conn::Conn;
use state::{Settings, State};
use terminal::TerminalGuard;
use view::Theme;

/// Runs the live view until the operator quits (or a signal asks it to end).
///
/// # Errors
///
/// Fails when a thread cannot be started or the terminal cannot be taken over or written to;
/// the terminal is restored first.
pub fn run(target: Target, args: &TopArgs) -> anyhow::Result<Exit> {
    let theme = Theme::from_environment();
    let (sender, events) = mpsc::channel();
    let refresh_period = Duration::from_secs_f64(1.0 / args.refresh_rate);
    let conn = {
        let sender = sender.clone();
        Conn::spawn(target, args.worker.clone(), refresh_period, move |event| {
            sender.send(AppEvent::Conn(event)).is_ok()
        })
        .context("cannot start the connection thread")?
    };
    forward_signals(sender.clone()).context("cannot listen for signals")?;
    let mut guard = TerminalGuard::enter().context("cannot take over the terminal")?;
    forward_terminal_events(sender).context("cannot start the key reader")?;
    let mut app = App::new(State::new(Settings::from_args(args)), conn.commands());
    app::run_loop(guard.terminal(), &mut app, &events, theme)
        .context("cannot draw on the terminal")?;
    drop(guard);
    Ok(Exit::Success)
}

/// Starts a thread that turns termination signals into [`AppEvent::Signal`], so the loop ends
/// and the terminal is restored.
fn forward_signals(sender: Sender<AppEvent>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGINT, SIGQUIT])?;
    std::thread::Builder::new()
        .name("openrtc-top-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = sender.send(AppEvent::Signal);
            }
        })?;
    Ok(())
}

/// Starts a thread that reads the terminal's key and resize events into the loop's channel.
fn forward_terminal_events(sender: Sender<AppEvent>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("openrtc-top-keys".into())
        .spawn(move || {
            while let Ok(event) = crossterm::event::read() {
                let forwarded = match event {
                    Event::Key(key) => AppEvent::Key(key),
                    Event::Resize(..) => AppEvent::Resize,
                    _ => continue,
                };
                if sender.send(forwarded).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
