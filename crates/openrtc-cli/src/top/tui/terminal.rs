//! Taking over the terminal for the live view, and always giving it back: on return, on
//! error, and on a panic in any thread (the panic hook restores the terminal before the
//! panic message is printed, then ends the process rather than leave a half-dead view).

use std::io::{self, Stdout};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The exit status after a panic, as Rust's own.
const PANIC_EXIT_STATUS: i32 = 101;

/// The terminal in raw mode on the alternate screen; dropping the guard restores it.
pub struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl std::fmt::Debug for TerminalGuard {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TerminalGuard")
    }
}

impl TerminalGuard {
    /// Installs the panic hook, switches the terminal to raw mode and the alternate screen,
    /// and hides the cursor.
    ///
    /// # Errors
    ///
    /// Fails when standard output is not a terminal that accepts these modes; the terminal
    /// is restored first.
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        let entered = enable_raw_mode()
            .and_then(|()| execute!(io::stdout(), EnterAlternateScreen, Hide))
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore();
                Err(error)
            }
        }
    }

    /// The terminal to draw on.
    pub fn terminal(&mut self) -> &mut Terminal<CrosstermBackend<Stdout>> {
        &mut self.terminal
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as the shell expects it: cooked mode, main screen, cursor shown.
/// Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

/// Installs, once per process, a panic hook that restores the terminal, lets the previous
/// hook print the panic, and ends the process.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
            std::process::exit(PANIC_EXIT_STATUS);
        }));
    });
}
