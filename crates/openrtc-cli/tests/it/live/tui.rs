//! The live view in a real terminal: tmux runs `openrtc top` against real `openrtc-demo`
//! workers; keys go in with `send-keys`, the screen comes back with `capture-pane`.
//!
//! Every wait polls the screen until the expected text shows, with a deadline. The shell in
//! the pane stays after top exits, so the test can see that the terminal was given back.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use openrtc_proto::SessionOutcome;

use super::{DemoWorker, PATIENCE, wait_for_snapshots};

/// A tmux server of its own (its own socket name) with one 200×50 window running `sh`;
/// killed when dropped.
struct Tmux {
    server: String,
}

impl Tmux {
    /// Starts the server with a shell whose `XDG_RUNTIME_DIR` is `runtime_dir`, so `openrtc
    /// top` finds the test's workers and no others.
    fn start(runtime_dir: &Path, test_name: &str) -> Self {
        let tmux = Self {
            server: format!("openrtc-{}-{test_name}", std::process::id()),
        };
        let shell = format!(
            "env XDG_RUNTIME_DIR='{}' PS1='$ ' sh",
            runtime_dir.display()
        );
        let output = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            "-s",
            "top",
            &shell,
        ]);
        assert!(
            output.status.success(),
            "cannot start tmux (scripts/test installs it): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Typing before the shell has printed its prompt would mix the two on screen.
        tmux.wait_for("the shell prompt", |screen| {
            screen.lines().any(|line| line.starts_with('$'))
        });
        tmux
    }

    /// Runs a tmux command against this server.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .expect("run tmux (scripts/test installs it)")
    }

    /// Presses keys in the pane, by tmux key name (`s`, `Enter`, `Escape`, `C-c`).
    fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", "top", "-l", text])
                .status
                .success(),
            "send-keys -l {text:?}"
        );
    }

    /// Types a shell command line and presses Enter.
    fn run_in_shell(&self, command_line: &str) {
        self.type_text(command_line);
        self.press(&["Enter"]);
    }

    /// The text on screen.
    fn screen(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", "top"]);
        assert!(output.status.success(), "capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A tmux format evaluated for the pane, such as `#{alternate_on}`.
    fn pane_format(&self, format: &str) -> String {
        let output = self.run(&["display-message", "-p", "-t", "top", format]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Polls the screen until `accept` likes it; fails with the last screen after the
    /// deadline.
    #[track_caller]
    fn wait_for(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if accept(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen shows:\n{screen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The session ids of the table rows on a screen.
fn row_ids(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|line| line.starts_with("s-"))
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

/// The line the shell printed ending with `text`, not the typed command line that asked for
/// it (which has `; echo ` in it).
fn printed_line<'screen>(screen: &'screen str, text: &str) -> Option<&'screen str> {
    screen
        .lines()
        .find(|line| line.ends_with(text) && !line.contains("; echo "))
}

/// Whether the shell printed a line ending with `text`.
fn shell_printed(screen: &str, text: &str) -> bool {
    printed_line(screen, text).is_some()
}

/// The command line that runs top in the pane and then says how it exited.
fn top_command_line(extra: &str) -> String {
    format!(
        "{} top --refresh-rate 5 {extra}; echo top-exited-$?",
        env!("CARGO_BIN_EXE_openrtc")
    )
}

/// Checks, after top has exited, that the pane is back on the main screen and the terminal
/// is out of raw mode (the shell's own command line shows the line discipline again).
#[track_caller]
fn check_terminal_restored(tmux: &Tmux) {
    assert_eq!(tmux.pane_format("#{alternate_on}"), "0", "main screen");
    assert_eq!(tmux.pane_format("#{cursor_flag}"), "1", "cursor shown");
    tmux.run_in_shell(
        "stty -a | tr -s ' ;' '\\n\\n' | grep -x -e -icanon -e icanon -e -echo -e echo \
         | tr '\\n' ' '; echo :stty-done",
    );
    let screen = tmux.wait_for("the terminal modes", |screen| {
        shell_printed(screen, ":stty-done")
    });
    let modes = printed_line(&screen, ":stty-done").unwrap_or_default();
    let modes: Vec<&str> = modes.split_whitespace().collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "canonical mode and echo are back: {modes:?}"
    );
}

#[test]
fn top_in_tmux_sorts_filters_searches_shows_detail_cancels_and_quits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = DemoWorker::start(dir.path(), "tuilive", "echo", 6, None);
    wait_for_snapshots(dir.path(), &[], "six sessions", |all| {
        all.len() == 1 && all[0].worker.active_sessions == 6
    });
    let tmux = Tmux::start(dir.path(), "keys");
    tmux.run_in_shell(&top_command_line(""));
    let header = format!("tuilive pid {}", worker.pid());
    let screen = tmux.wait_for("six rows under the worker header", |screen| {
        screen.contains(&header) && row_ids(screen).len() == 6
    });
    assert!(
        screen.contains("CPU%▼"),
        "sorted by CPU at first:\n{screen}"
    );
    assert_eq!(tmux.pane_format("#{alternate_on}"), "1", "full screen");

    tmux.press(&["s"]);
    tmux.wait_for("the sort to move to memory", |screen| {
        screen.contains("MEM▼") || screen.contains("MEM~▼")
    });

    tmux.press(&["f"]);
    // Each wait asks for the whole expected screen: a capture can land mid-redraw.
    tmux.wait_for(
        "the active filter, with every echo session still shown",
        |screen| screen.contains("filter: status=active") && row_ids(screen).len() == 6,
    );

    tmux.press(&["/"]);
    tmux.type_text("s-3");
    tmux.wait_for("the search prompt", |screen| {
        screen.contains("search: s-3█")
    });
    tmux.press(&["Enter"]);
    tmux.wait_for("only s-3", |screen| {
        screen.contains("filter: status=active /s-3") && row_ids(screen) == ["s-3"]
    });

    tmux.press(&["Enter"]);
    tmux.wait_for("the detail pane, with no stalls", |screen| {
        screen.contains("session s-3 · agent echo")
            && screen.contains("metadata")
            && screen.contains("stalls    none")
    });

    tmux.press(&["Escape"]);
    tmux.wait_for("the table again", |screen| {
        !screen.contains("session s-3 · agent echo") && row_ids(screen) == ["s-3"]
    });

    tmux.press(&["k"]);
    tmux.wait_for("the confirmation", |screen| {
        screen.contains("cancel this session?") && screen.contains("s-3 · agent echo")
    });
    tmux.press(&["y"]);
    tmux.wait_for("the worker's answer", |screen| {
        screen.contains("cancelled session s-3 (recorded as cancelled by operator)")
    });
    tmux.wait_for("s-3 to leave the table", |screen| {
        screen.contains("(no sessions match: status=active /s-3)")
    });
    let snapshots = wait_for_snapshots(dir.path(), &[], "s-3 among the ended", |all| {
        all.len() == 1
            && all[0]
                .recently_ended
                .iter()
                .any(|ended| ended.id.as_u64() == 3)
    });
    let ended = snapshots[0]
        .recently_ended
        .iter()
        .find(|ended| ended.id.as_u64() == 3)
        .expect("s-3 ended");
    assert_eq!(
        ended.outcome,
        SessionOutcome::Cancelled {
            reason: openrtc_proto::CancelReason::Operator
        }
    );

    tmux.press(&["q"]);
    tmux.wait_for("top to exit", |screen| {
        shell_printed(screen, "top-exited-0")
    });
    check_terminal_restored(&tmux);
}

#[test]
fn top_in_tmux_shows_a_gone_worker_in_place_and_reconnects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = DemoWorker::start(dir.path(), "comeback", "echo", 2, None);
    wait_for_snapshots(dir.path(), &[], "two sessions", |all| {
        all.len() == 1 && all[0].worker.active_sessions == 2
    });
    let tmux = Tmux::start(dir.path(), "reconnect");
    tmux.run_in_shell(&top_command_line("--worker comeback"));
    let first_header = format!("comeback pid {}", first.pid());
    tmux.wait_for("the first worker", |screen| {
        screen.contains(&first_header) && row_ids(screen).len() == 2
    });

    let (status, _) = first.terminate();
    assert!(status.success());
    // The whole redraw, not its first line: a capture can land while the screen is updated.
    tmux.wait_for("the worker to show as gone, with no rows left", |screen| {
        screen.contains(&format!("{first_header} GONE for"))
            && screen.contains("(no worker answers)")
            && row_ids(screen).is_empty()
    });

    let second = DemoWorker::start(dir.path(), "comeback", "echo", 3, None);
    let second_header = format!("comeback pid {}", second.pid());
    let screen = tmux.wait_for("the worker to come back in place", |screen| {
        screen.contains(&second_header) && row_ids(screen).len() == 3 && !screen.contains("GONE")
    });
    assert_eq!(
        screen
            .lines()
            .next()
            .map(|line| line.starts_with(&second_header)),
        Some(true),
        "in the first header's place:\n{screen}"
    );

    // Ctrl-C is a key in raw mode: it quits like q, and the terminal comes back.
    tmux.press(&["C-c"]);
    tmux.wait_for("top to exit", |screen| {
        shell_printed(screen, "top-exited-0")
    });
    check_terminal_restored(&tmux);
}

#[test]
fn top_in_tmux_follows_resizes_and_gives_the_terminal_back_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = DemoWorker::start(dir.path(), "resized", "echo", 3, None);
    wait_for_snapshots(dir.path(), &[], "three sessions", |all| {
        all.len() == 1 && all[0].worker.active_sessions == 3
    });
    let tmux = Tmux::start(dir.path(), "resize");
    // `exec` keeps the process id the shell wrote down, so the test can signal top itself.
    let pid_file = dir.path().join("top.pid");
    tmux.run_in_shell(&format!(
        "sh -c 'echo $$ > {}; exec {} top'; echo top-exited-$?",
        pid_file.display(),
        env!("CARGO_BIN_EXE_openrtc")
    ));
    let header = format!("resized pid {}", worker.pid());
    tmux.wait_for("the live view with every column", |screen| {
        screen.contains(&header) && row_ids(screen).len() == 3 && screen.contains("PEAK")
    });

    assert!(
        tmux.run(&["resize-window", "-t", "top", "-x", "60", "-y", "15"])
            .status
            .success()
    );
    let screen = tmux.wait_for("the 60×15 layout", |screen| {
        screen.lines().count() <= 15 && !screen.contains("PEAK") && row_ids(screen).len() == 3
    });
    assert!(
        screen.lines().all(|line| line.chars().count() <= 60),
        "{screen}"
    );
    assert!(
        tmux.run(&["resize-window", "-t", "top", "-x", "200", "-y", "50"])
            .status
            .success()
    );
    tmux.wait_for("the wide layout again", |screen| {
        screen.contains("PEAK") && row_ids(screen).len() == 3
    });

    let top_pid = std::fs::read_to_string(&pid_file).expect("top's pid");
    let sent = Command::new("kill")
        .args(["-TERM", top_pid.trim()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    tmux.wait_for("top to exit", |screen| {
        shell_printed(screen, "top-exited-0")
    });
    check_terminal_restored(&tmux);
}
