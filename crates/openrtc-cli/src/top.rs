//! `openrtc top`: asks every worker (or one socket) for its snapshot through [`discover`] and
//! shows it: printed once (`--once`), as JSON lines on a timer, or in the live full-screen view
//! ([`tui`]). The printed text is built by [`table`] with the helpers of [`mod@format`]; this
//! module owns the output around them.

pub mod columns;
pub mod flight_recorder;
pub mod format;
pub mod livekit;
pub mod table;
pub mod tenants;
pub mod tui;

use std::io::{self, IsTerminal as _, Write};
use std::time::Duration;

use anyhow::Context as _;
use openrtc_proto::PoolSnapshot;

use crate::Exit;
use crate::cli::{OutputFormat, TopArgs};
use crate::discover::{self, DiscoverError, Survey, Target};
use table::ViewOptions;

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

/// The error of finding no worker at all.
fn no_worker(target: &Target, args: &TopArgs) -> DiscoverError {
    DiscoverError::NoWorker {
        target: target.clone(),
        worker_name: args.worker.clone(),
    }
}

/// `--once`: one survey, printed; failures and the no-worker hint go to standard error.
fn run_once(target: &Target, args: &TopArgs) -> anyhow::Result<Exit> {
    let found = discover::survey(target, args.worker.as_deref())?;
    print_to_stdout(&render_survey(&found, args.format, &view_options(args))?)?;
    for failure in &found.failures {
        print_to_stderr(&failure.to_string());
    }
    let exit = found.exit();
    if exit == Exit::NoWorker {
        print_to_stderr(&no_worker(target, args).to_string());
    }
    Ok(exit)
}

/// The live full-screen view. With no worker at all it prints the hint and exits 1, as
/// `--once` does; it needs a terminal on standard output.
fn run_full_screen(target: &Target, args: &TopArgs) -> anyhow::Result<Exit> {
    let found = discover::survey(target, args.worker.as_deref())?;
    if found.exit() == Exit::NoWorker {
        let error = no_worker(target, args);
        print_to_stderr(&error.to_string());
        return Ok(error.exit());
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
        let (found, mut problems) = match discover::survey(target, args.worker.as_deref()) {
            Ok(found) => {
                let problems = found.failures.iter().map(ToString::to_string).collect();
                (found, problems)
            }
            Err(error) => (Survey::default(), vec![error.to_string()]),
        };
        if found.snapshots.is_empty() && problems.is_empty() {
            problems.push(no_worker(target, args).to_string());
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
