//! `openrtc top`: asks every worker (or one socket) for its snapshot and shows it: printed once
//! (`--once`), as JSON lines on a timer, or in the live full-screen view ([`tui`]). The printed
//! text is built by [`table`] with the helpers of [`mod@format`]; this module owns the I/O around
//! them.

pub mod columns;
pub mod format;
pub mod table;
pub mod tui;

use std::io::{self, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use openrtc_proto::{PoolSnapshot, Response, SNAPSHOT_VERSION};

use crate::Exit;
use crate::cli::{OutputFormat, TopArgs};
use crate::discover;
use table::ViewOptions;
use tui::conn::PollOutcome;

/// Where to look for workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every socket in this directory.
    Directory(PathBuf),
    /// This one socket.
    Socket(PathBuf),
}

impl Target {
    /// The one-line hint printed when no worker answers; `worker_name` is the `--worker`
    /// filter, if any.
    #[must_use]
    pub fn no_worker_hint(&self, worker_name: Option<&str>) -> String {
        let worker = match worker_name {
            Some(name) => format!("worker named {}", format::clean_text(name, 64)),
            None => "worker".to_owned(),
        };
        match self {
            Self::Directory(dir) => {
                format!("no running openrtc {worker} found in {}", dir.display())
            }
            Self::Socket(path) => {
                format!("no running openrtc {worker} found at {}", path.display())
            }
        }
    }

    /// The sockets to ask: the one socket, or every worker socket in the directory (only
    /// those named `<worker_name>-<pid>.sock` when `worker_name` is given).
    ///
    /// # Errors
    ///
    /// Fails only when the socket directory exists but cannot be read.
    pub fn sockets(&self, worker_name: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
        match self {
            Self::Directory(dir) => {
                let mut sockets = discover::list_worker_sockets(dir).with_context(|| {
                    format!("cannot read the socket directory {}", dir.display())
                })?;
                if let Some(name) = worker_name {
                    sockets.retain(|socket| discover::socket_belongs_to(socket, name));
                }
                Ok(sockets)
            }
            Self::Socket(path) => Ok(vec![path.clone()]),
        }
    }
}

/// What one round of asking the workers found.
#[derive(Debug, Default)]
pub struct Survey {
    /// The snapshots of the workers that answered.
    pub snapshots: Vec<PoolSnapshot>,
    /// One line per worker that is there but refused or could not be understood.
    pub failures: Vec<String>,
}

impl Survey {
    /// The exit status this survey deserves: any snapshot is success; else any failure is an
    /// error; else nobody was there.
    #[must_use]
    pub fn exit(&self) -> Exit {
        if !self.snapshots.is_empty() {
            Exit::Success
        } else if !self.failures.is_empty() {
            Exit::Failure
        } else {
            Exit::NoWorker
        }
    }
}

/// Asks every worker of `target` for its snapshot, all at once (only the workers named
/// `worker_name`, when given). Sockets nobody listens on are skipped.
///
/// # Errors
///
/// Fails only when the socket directory exists but cannot be read.
pub fn survey(target: &Target, worker_name: Option<&str>) -> anyhow::Result<Survey> {
    let round = tui::conn::survey_round(target, worker_name);
    if let Some(error) = round.directory_error {
        anyhow::bail!(error);
    }
    let mut found = Survey::default();
    for poll in round.polls {
        match poll.outcome {
            PollOutcome::Snapshot(snapshot) => {
                if worker_name.is_none_or(|name| snapshot.worker.name == name) {
                    found.snapshots.push(*snapshot);
                }
            }
            PollOutcome::NotListening => {}
            PollOutcome::Failed(failure) => found.failures.push(failure),
        }
    }
    Ok(found)
}

/// Asks one worker for its snapshot: `Ok(None)` when nobody listens there, `Err` with a
/// printable line when the worker refuses or answers something unusable.
///
/// # Errors
///
/// The printable line, as described.
pub fn ask_for_snapshot(socket: &Path) -> Result<Option<PoolSnapshot>, String> {
    let shown = socket.display();
    match discover::query_snapshot(socket) {
        Ok(Response::Snapshot { snapshot }) if snapshot.version == SNAPSHOT_VERSION => {
            Ok(Some(*snapshot))
        }
        Ok(Response::Snapshot { snapshot }) => Err(format!(
            "cannot read worker {shown}: its snapshot has layout version {}, this openrtc \
             reads version {SNAPSHOT_VERSION}",
            snapshot.version
        )),
        Ok(Response::Error { message, .. }) => Err(format!(
            "error from worker {shown}: {}",
            format::clean_text(&message, usize::MAX)
        )),
        Ok(other) => Err(format!(
            "cannot read worker {shown}: unexpected answer to a snapshot request: {other:?}"
        )),
        Err(error) if error.is_not_listening() => Ok(None),
        Err(error) => Err(format!("cannot read worker {shown}: {error}")),
    }
}

/// The view options the arguments ask for.
#[must_use]
pub fn view_options(args: &TopArgs) -> ViewOptions {
    ViewOptions {
        sort: args.sort,
        status: args.status.map(crate::cli::StatusFilter::state),
        tenant: args.tenant.clone(),
        agent: args.agent.clone(),
    }
}

/// The standard output text of one survey: the worker blocks, or one JSON line per worker
/// (filtered and sorted as the text is, see [`table::filtered_snapshot`]).
///
/// # Errors
///
/// Fails only if a snapshot cannot be serialized, which valid snapshots always can.
pub fn render_survey(
    found: &Survey,
    format: OutputFormat,
    options: &ViewOptions,
) -> anyhow::Result<String> {
    match format {
        OutputFormat::Text => {
            let snapshots: Vec<&PoolSnapshot> = found.snapshots.iter().collect();
            Ok(table::render_workers(&snapshots, options))
        }
        OutputFormat::Json => {
            let mut lines = String::new();
            for snapshot in table::by_worker(&found.snapshots) {
                let shown = table::filtered_snapshot(snapshot, options);
                lines.push_str(
                    &serde_json::to_string(&shown).context("cannot serialize a snapshot")?,
                );
                lines.push('\n');
            }
            Ok(lines)
        }
    }
}

/// Runs `openrtc top` with its arguments until done (with `--once`) or interrupted.
///
/// # Errors
///
/// Fails when the socket directory cannot be found or read, or standard output fails for a
/// reason other than its reader going away (which ends the command successfully).
pub fn run(args: &TopArgs) -> anyhow::Result<Exit> {
    let target = match &args.socket {
        Some(path) => Target::Socket(path.clone()),
        None => Target::Directory(discover::default_socket_dir()?),
    };
    let result = if args.once {
        run_once(&target, args)
    } else if args.format == OutputFormat::Json {
        run_json_lines(&target, args)
    } else {
        run_full_screen(&target, args)
    };
    match result {
        Err(error) if is_broken_pipe(&error) => Ok(Exit::Success),
        other => other,
    }
}

/// Whether an error is standard output's reader having gone away (`openrtc top | head`).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<io::Error>()
        .is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
}

/// Prints one line on standard error; if even that fails there is nobody left to tell.
fn print_to_stderr(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Writes text to standard output and flushes it.
fn print_to_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// `--once`: one survey, printed; failures and the no-worker hint go to standard error.
fn run_once(target: &Target, args: &TopArgs) -> anyhow::Result<Exit> {
    let found = survey(target, args.worker.as_deref())?;
    print_to_stdout(&render_survey(&found, args.format, &view_options(args))?)?;
    for failure in &found.failures {
        print_to_stderr(failure);
    }
    let exit = found.exit();
    if exit == Exit::NoWorker {
        print_to_stderr(&target.no_worker_hint(args.worker.as_deref()));
    }
    Ok(exit)
}

/// The live full-screen view. With no worker at all it prints the hint and exits 1, as
/// `--once` does; it needs a terminal on standard output.
fn run_full_screen(target: &Target, args: &TopArgs) -> anyhow::Result<Exit> {
    let found = survey(target, args.worker.as_deref())?;
    if found.exit() == Exit::NoWorker {
        print_to_stderr(&target.no_worker_hint(args.worker.as_deref()));
        return Ok(Exit::NoWorker);
    }
    if !io::stdout().is_terminal() {
        anyhow::bail!(
            "the live view needs a terminal on standard output; use --once or --format json \
             to print instead"
        );
    }
    tui::run(target.clone(), args)
}

/// `--format json` without `--once`: a survey per refresh, one JSON line per worker each
/// time, until interrupted. Failures and the no-worker hint go to standard error, only when
/// they change.
fn run_json_lines(target: &Target, args: &TopArgs) -> anyhow::Result<Exit> {
    let refresh_period = Duration::from_secs_f64(1.0 / args.refresh_rate);
    let options = view_options(args);
    let mut last_report: Option<Vec<String>> = None;
    loop {
        let (found, mut problems) = match survey(target, args.worker.as_deref()) {
            Ok(found) => {
                let problems = found.failures.clone();
                (found, problems)
            }
            Err(error) => (Survey::default(), vec![format!("{error:#}")]),
        };
        if found.snapshots.is_empty() && problems.is_empty() {
            problems.push(target.no_worker_hint(args.worker.as_deref()));
        }
        print_to_stdout(&render_survey(&found, OutputFormat::Json, &options)?)?;
        if last_report.as_ref() != Some(&problems) {
            for problem in &problems {
                print_to_stderr(problem);
            }
            last_report = Some(problems);
        }
        std::thread::sleep(refresh_period);
    }
}
