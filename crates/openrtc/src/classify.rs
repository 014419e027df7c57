//! The stall classifier: why a stuck worker thread is stuck, read from `/proc` while it is.
//!
//! [`diagnose`] reads the stuck thread's `/proc/self/task/<tid>/{stat,syscall,wchan}` and its
//! CPU clock twice a few milliseconds apart, and [`classify`] turns those texts into a
//! [`StallDiagnosis`]: `cpu` (running, or its CPU clock advancing), `sleep` (a nanosleep-like
//! call), `lock` (a futex wait), `io` (a blocking read, write, poll, connect, accept or fsync,
//! with the file descriptor resolved through `/proc/self/fd` to a file, pipe or socket where
//! the call takes one), `fault` (uninterruptible sleep outside an I/O call, as in a page fault)
//! or `unknown`. Once the stall is over, [`judge`] turns a `cpu` stall into `preempted` when
//! the thread's scheduler statistics (read by the watchdog with [`read_thread_time`] while it
//! watched the stall) show that it was kept off the CPU for so long that, on a free CPU, the
//! poll would not have been a stall: the host's fault, not the session's.
//!
//! No signal is sent and the stuck thread is not disturbed. The watchdog thread calls
//! [`diagnose`] only while a stall is in progress, so classification costs nothing when there
//! is none; one diagnosis costs the sampling interval plus a handful of small `/proc` reads
//! (and, for a socket, one scan of the `/proc/net` tables, which grow with the number of
//! sockets on the host).
//!
//! Syscall numbers are named for x86_64 and aarch64. If the kernel does not expose
//! `/proc/.../syscall`, classification falls back to the kernel symbol in `wchan`.

mod fd;

use std::fmt;
use std::time::{Duration, Instant};

use fd::describe_fd;

use crate::os::{stat_cpu_time, stat_fields_after_name};

/// What a stuck thread is doing, by the kind of wait it is in (the wire type: the snapshot,
/// the log line and `top` speak of the same classes).
pub(crate) use openrtc_proto::StallClass;

/// Why a stuck thread is stuck: the verdict and the facts it rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StallDiagnosis {
    /// The verdict.
    pub(crate) class: StallClass,
    /// The scheduler state letter from `stat` (`R`, `S`, `D`, …); `None` if unreadable.
    pub(crate) thread_state: Option<char>,
    /// The name of the syscall the thread is in, if it is in one this module can name.
    pub(crate) syscall: Option<&'static str>,
    /// The number of the syscall the thread is in, named or not.
    pub(crate) syscall_number: Option<libc::c_long>,
    /// The kernel function the thread waits in (`wchan`), if the kernel names one.
    pub(crate) wchan: Option<String>,
    /// What the syscall's file descriptor points at, for calls that take one: a path,
    /// `pipe:[<inode>]`, `tcp 127.0.0.1:5432` (the peer), `tcp listener 0.0.0.0:8080`,
    /// `unix socket /run/x.sock`, or the raw `socket:[<inode>]` when the socket is not found.
    pub(crate) fd_target: Option<String>,
}

impl StallDiagnosis {
    /// A diagnosis of a thread that could not be read at all.
    fn unreadable() -> Self {
        Self {
            class: StallClass::Unknown,
            thread_state: None,
            syscall: None,
            syscall_number: None,
            wchan: None,
            fd_target: None,
        }
    }
}

/// Formats as, for example, `io in recvfrom on tcp 127.0.0.1:5432` or `fault at do_swap_page`.
impl fmt::Display for StallDiagnosis {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.class.as_str())?;
        if matches!(self.class, StallClass::Cpu | StallClass::Preempted) {
            return Ok(());
        }
        match (self.syscall, self.syscall_number) {
            (Some(name), _) => write!(formatter, " in {name}")?,
            (None, Some(number)) => write!(formatter, " in syscall {number}")?,
            (None, None) => {
                if let Some(wchan) = &self.wchan {
                    write!(formatter, " at {wchan}")?;
                }
            }
        }
        if let Some(fd_target) = &self.fd_target {
            write!(formatter, " on {fd_target}")?;
        }
        Ok(())
    }
}

/// Reads thread `tid` of this process from `/proc` and says why it is stuck.
///
/// It takes two readings of the thread's CPU clock `interval` apart (sleeping in between, so
/// call it only from the watchdog thread, only while a stall is in progress), then reads the
/// thread's state, syscall and wait channel. It never panics: a thread that exits midway, or
/// files that cannot be read or parsed, give [`StallClass::Unknown`] or a partial diagnosis.
pub(crate) fn diagnose(tid: i32, interval: Duration) -> StallDiagnosis {
    let task_directory = task_directory(tid);
    // Both readings come from the same source: `schedstat` if the kernel has it, else `stat`.
    let (cpu_source, first_cpu) = match read_thread_cpu(&task_directory, CpuSource::Schedstat) {
        Some(cpu_time) => (CpuSource::Schedstat, Some(cpu_time)),
        None => (
            CpuSource::StatTicks,
            read_thread_cpu(&task_directory, CpuSource::StatTicks),
        ),
    };
    let sampling_started = Instant::now();
    std::thread::sleep(interval);
    let second_cpu = read_thread_cpu(&task_directory, cpu_source);
    let measured_interval = sampling_started.elapsed();

    let stat = read_lossy(format!("{task_directory}/stat"));
    let syscall = read_lossy(format!("{task_directory}/syscall"));
    let wchan = read_lossy(format!("{task_directory}/wchan"));
    let readings = ThreadReadings {
        stat: stat.as_deref(),
        syscall: syscall.as_deref(),
        wchan: wchan.as_deref(),
        cpu_advance: first_cpu
            .zip(second_cpu)
            .map(|(first, second)| second.saturating_sub(first)),
        interval: measured_interval,
    };
    classify(&readings, &mut describe_fd)
}

/// A thread's scheduler statistics at one instant: its lifetime time on a CPU and time spent
/// runnable in a run queue, from `/proc/self/task/<tid>/schedstat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ThreadTime {
    pub(crate) on_cpu_ns: u64,
    pub(crate) run_queue_ns: u64,
}

impl ThreadTime {
    /// What the thread did between an earlier reading and this one.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            on_cpu_ns: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns),
            run_queue_ns: self.run_queue_ns.saturating_sub(earlier.run_queue_ns),
        }
    }
}

/// The directory of thread `tid` of this process under `/proc`.
fn task_directory(tid: i32) -> String {
    format!("/proc/self/task/{tid}")
}

/// A file of thread `tid` under `/proc/self/task/<tid>/` (`schedstat` for
/// [`read_thread_time`], `stat` for [`read_thread_state`]), kept by the watchdog so that it
/// reads it every scan without formatting the path.
pub(crate) fn thread_file(tid: i32, name: &str) -> std::path::PathBuf {
    format!("{}/{name}", task_directory(tid)).into()
}

/// A thread's scheduler state letter (`R` running or runnable, `S`, `D`, …) from its `stat` at
/// `path`; `None` if the thread is gone or the text is odd.
pub(crate) fn read_thread_state(path: &std::path::Path) -> Option<char> {
    stat_state(&read_lossy(path)?)
}

/// Reads a thread's scheduler statistics from `schedstat` at `path` (the caller keeps the
/// path, from [`thread_file`], to read it every scan without formatting it);
/// `None` if the kernel does not keep them or the thread is gone.
pub(crate) fn read_thread_time(path: &std::path::Path) -> Option<ThreadTime> {
    parse_schedstat(&read_lossy(path)?)
}

/// Parses `schedstat`: `<ns on a CPU> <ns waiting in a run queue> <timeslices>`.
fn parse_schedstat(text: &str) -> Option<ThreadTime> {
    let mut fields = text.split_whitespace();
    let on_cpu_ns = fields.next()?.parse().ok()?;
    let run_queue_ns = fields.next()?.parse().ok()?;
    Some(ThreadTime {
        on_cpu_ns,
        run_queue_ns,
    })
}

/// How a stalled thread spent the part of the stall the watchdog watched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WatchedTime {
    /// The wall time watched (from the first reading to the last, both while the poll ran).
    pub(crate) watched_ns: u64,
    /// What the thread did meanwhile.
    pub(crate) spent: ThreadTime,
    /// Whether every reading found the thread runnable (`R`: on a CPU or in a run queue).
    /// The kernel brings `schedstat` up to date only when the thread is switched in or out or
    /// at a tick, so its figures alone cannot tell a long wait for a CPU from a sleep.
    pub(crate) runnable_throughout: bool,
}

impl WatchedTime {
    /// As it travels in snapshots.
    pub(crate) fn to_wire(self) -> openrtc_proto::ThreadTimeSnapshot {
        let mut time = openrtc_proto::ThreadTimeSnapshot::default();
        time.watched_ns = self.watched_ns;
        time.on_cpu_ns = self.spent.on_cpu_ns;
        time.run_queue_ns = self.spent.run_queue_ns;
        time
    }
}

/// The final class of a finished stall: the class seen in progress (if the watchdog
/// diagnosed it), turned into [`StallClass::Preempted`] when the thread was runnable yet ran so
/// little that the poll would not have reached the threshold on a free CPU.
///
/// The watchdog watches a stall from its first scan after the poll has run a few
/// milliseconds; the unwatched rest of the `duration_ns` is counted as if the thread ran all
/// of it, so a stall is blamed on the host only when the session's own running time is
/// certainly under `threshold_ns`. A session that computes past the threshold on a busy host
/// stays `cpu`: it would have stalled on a free CPU too. A stall that ended before it could
/// be diagnosed (just over the threshold) is judged from the watched time alone. Either way the
/// thread must have been runnable (`R`) at every reading of the watch, not only at the
/// instant of the diagnosis.
pub(crate) fn judge(
    seen: Option<StallClass>,
    watched: Option<WatchedTime>,
    duration_ns: u64,
    threshold_ns: u64,
) -> Option<StallClass> {
    let Some(watched) = watched.filter(|watched| watched.watched_ns > 0) else {
        return seen;
    };
    // Runnable at every reading, whatever the instant of the diagnosis saw (a poll that
    // blocked in a read for most of the stall and computed at the end is diagnosed `cpu`, yet
    // slept).
    let runnable = watched.runnable_throughout && matches!(seen, None | Some(StallClass::Cpu));
    if !runnable {
        return seen;
    }
    let unwatched_ns = duration_ns.saturating_sub(watched.watched_ns);
    let ran_at_most_ns = watched.spent.on_cpu_ns.saturating_add(unwatched_ns);
    if ran_at_most_ns < threshold_ns {
        Some(StallClass::Preempted)
    } else {
        Some(StallClass::Cpu)
    }
}

/// Where a thread's CPU time is read from.
#[derive(Clone, Copy, Debug)]
enum CpuSource {
    /// The first field of `schedstat`: nanoseconds on a CPU, exact.
    Schedstat,
    /// `utime + stime` from `stat`: clock ticks, typically 10 ms each.
    StatTicks,
}

/// The thread's CPU time so far, or `None` if the file is gone or odd.
fn read_thread_cpu(task_directory: &str, source: CpuSource) -> Option<Duration> {
    match source {
        CpuSource::Schedstat => {
            let schedstat = read_lossy(format!("{task_directory}/schedstat"))?;
            Some(Duration::from_nanos(parse_schedstat(&schedstat)?.on_cpu_ns))
        }
        CpuSource::StatTicks => stat_cpu_time(&read_lossy(format!("{task_directory}/stat"))?),
    }
}

/// A file's text, with bytes that are not UTF-8 replaced (a thread name may hold any byte).
fn read_lossy(path: impl AsRef<std::path::Path>) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// The texts read from `/proc/self/task/<tid>/`, and the CPU time the thread used meanwhile.
#[derive(Clone, Copy, Debug)]
struct ThreadReadings<'text> {
    /// The text of `stat`, or `None` if it could not be read.
    stat: Option<&'text str>,
    /// The text of `syscall`, or `None` if it could not be read.
    syscall: Option<&'text str>,
    /// The text of `wchan`, or `None` if it could not be read.
    wchan: Option<&'text str>,
    /// The CPU time the thread used over `interval`, or `None` if unmeasured.
    cpu_advance: Option<Duration>,
    /// The wall time over which `cpu_advance` was measured.
    interval: Duration,
}

/// What the `syscall` file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyscallReading {
    /// `running`: the thread is on a CPU or runnable, so the kernel does not sample it.
    Running,
    /// `-1 …`: the thread is blocked but not in a syscall (a page fault, a stop).
    NotInSyscall,
    /// `<number> <arg0> …`: the thread is in this syscall.
    InSyscall {
        number: libc::c_long,
        first_argument: Option<u64>,
    },
}

/// What this module knows about one syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SyscallInfo {
    name: &'static str,
    /// The class of a thread blocked in it ([`StallClass::Unknown`] for calls named only).
    class: StallClass,
    /// Whether its first argument is a file descriptor worth resolving.
    first_argument_is_fd: bool,
}

/// The pure core: classifies a thread from its `/proc` texts.
///
/// `resolve_fd` names what a file descriptor points at; it is called at most once, and only
/// when the thread is blocked in a call whose first argument is a descriptor.
fn classify(
    readings: &ThreadReadings<'_>,
    resolve_fd: &mut dyn FnMut(i32) -> Option<String>,
) -> StallDiagnosis {
    let Some(thread_state) = readings.stat.and_then(stat_state) else {
        return StallDiagnosis::unreadable();
    };
    let syscall_reading = readings.syscall.and_then(parse_syscall);
    let wchan = readings
        .wchan
        .map(str::trim)
        .filter(|symbol| !symbol.is_empty() && *symbol != "0")
        .map(str::to_owned);
    let (syscall_number, first_argument) = match syscall_reading {
        Some(SyscallReading::InSyscall {
            number,
            first_argument,
        }) => (Some(number), first_argument),
        _ => (None, None),
    };
    let known_syscall = syscall_number.and_then(syscall_info);
    let class_from_syscall = known_syscall.map(|info| info.class);
    let class_from_wchan = wchan.as_deref().and_then(class_from_wchan);

    let cpu_advancing = readings.cpu_advance.is_some_and(|advance| {
        !readings.interval.is_zero() && advance.saturating_mul(2) >= readings.interval
    });
    let class =
        if thread_state == 'R' || syscall_reading == Some(SyscallReading::Running) || cpu_advancing
        {
            StallClass::Cpu
        } else {
            match thread_state {
                'D' if class_from_syscall == Some(StallClass::Io) => StallClass::Io,
                'D' if known_syscall.is_none() && class_from_wchan == Some(StallClass::Io) => {
                    StallClass::Io
                }
                'D' => StallClass::Fault,
                'S' => match class_from_syscall {
                    Some(class) if class != StallClass::Unknown => class,
                    _ => class_from_wchan.unwrap_or(StallClass::Unknown),
                },
                _ => StallClass::Unknown,
            }
        };

    let fd_target = match (known_syscall, first_argument) {
        (Some(info), Some(argument)) if info.first_argument_is_fd && class != StallClass::Cpu => {
            u32::try_from(argument)
                .ok()
                .and_then(|fd| i32::try_from(fd).ok())
                .and_then(resolve_fd)
        }
        _ => None,
    };
    StallDiagnosis {
        class,
        thread_state: Some(thread_state),
        syscall: known_syscall.map(|info| info.name),
        syscall_number,
        wchan,
        fd_target,
    }
}

/// The state letter, field 3 of a `stat` line.
fn stat_state(stat: &str) -> Option<char> {
    let state_field = stat_fields_after_name(stat)?.next()?;
    let mut letters = state_field.chars();
    let state = letters.next()?;
    (letters.next().is_none() && state.is_ascii_alphabetic()).then_some(state)
}

/// Parses the `syscall` file: `running`, `-1 <sp> <pc>`, or `<nr> <arg0> … <arg5> <sp> <pc>`.
fn parse_syscall(text: &str) -> Option<SyscallReading> {
    let mut fields = text.split_whitespace();
    let first = fields.next()?;
    if first == "running" {
        return Some(SyscallReading::Running);
    }
    let number = first.parse::<libc::c_long>().ok()?;
    if number < 0 {
        return Some(SyscallReading::NotInSyscall);
    }
    let first_argument = fields.next().and_then(|argument| {
        let digits = argument.strip_prefix("0x").unwrap_or(argument);
        u64::from_str_radix(digits, 16).ok()
    });
    Some(SyscallReading::InSyscall {
        number,
        first_argument,
    })
}

/// The class a kernel wait-channel symbol suggests, for when the syscall is unknown.
fn class_from_wchan(symbol: &str) -> Option<StallClass> {
    // Parts of the names of kernel functions that block a reader or writer of a pipe, socket,
    // terminal or poll set (6.18 calls its pipe wait `anon_pipe_read`, older kernels `pipe_read`).
    const IO_WAIT_SYMBOLS: [&str; 13] = [
        "pipe_read",
        "pipe_write",
        "wait_woken",
        "sk_wait_data",
        "sk_stream_wait",
        "inet_csk_accept",
        "inet_wait_for_connect",
        "unix_stream_read",
        "unix_wait_for_peer",
        "do_sys_poll",
        "do_select",
        "ep_poll",
        "n_tty_read",
    ];
    if symbol.contains("nanosleep") {
        Some(StallClass::Sleep)
    } else if symbol.contains("futex") {
        Some(StallClass::Lock)
    } else if IO_WAIT_SYMBOLS.iter().any(|part| symbol.contains(part)) {
        Some(StallClass::Io)
    } else {
        None
    }
}

/// What this module knows about syscall `number` on this architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn syscall_info(number: libc::c_long) -> Option<SyscallInfo> {
    use StallClass::{Io, Lock, Sleep, Unknown};
    let (name, class, first_argument_is_fd) = match number {
        libc::SYS_nanosleep => ("nanosleep", Sleep, false),
        libc::SYS_clock_nanosleep => ("clock_nanosleep", Sleep, false),
        libc::SYS_futex => ("futex", Lock, false),
        libc::SYS_futex_waitv => ("futex_waitv", Lock, false),
        libc::SYS_flock => ("flock", Lock, true),
        libc::SYS_read => ("read", Io, true),
        libc::SYS_write => ("write", Io, true),
        libc::SYS_readv => ("readv", Io, true),
        libc::SYS_writev => ("writev", Io, true),
        libc::SYS_pread64 => ("pread64", Io, true),
        libc::SYS_pwrite64 => ("pwrite64", Io, true),
        libc::SYS_preadv => ("preadv", Io, true),
        libc::SYS_pwritev => ("pwritev", Io, true),
        libc::SYS_preadv2 => ("preadv2", Io, true),
        libc::SYS_pwritev2 => ("pwritev2", Io, true),
        libc::SYS_recvfrom => ("recvfrom", Io, true),
        libc::SYS_recvmsg => ("recvmsg", Io, true),
        libc::SYS_recvmmsg => ("recvmmsg", Io, true),
        libc::SYS_sendto => ("sendto", Io, true),
        libc::SYS_sendmsg => ("sendmsg", Io, true),
        libc::SYS_sendmmsg => ("sendmmsg", Io, true),
        libc::SYS_sendfile => ("sendfile", Io, true),
        libc::SYS_connect => ("connect", Io, true),
        libc::SYS_accept => ("accept", Io, true),
        libc::SYS_accept4 => ("accept4", Io, true),
        libc::SYS_fsync => ("fsync", Io, true),
        libc::SYS_fdatasync => ("fdatasync", Io, true),
        libc::SYS_ppoll => ("ppoll", Io, false),
        libc::SYS_pselect6 => ("pselect6", Io, false),
        libc::SYS_epoll_pwait => ("epoll_pwait", Io, true),
        libc::SYS_epoll_pwait2 => ("epoll_pwait2", Io, true),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll => ("poll", Io, false),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_select => ("select", Io, false),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait => ("epoll_wait", Io, true),
        // Named so that an unknown stall still says what the thread was doing.
        libc::SYS_wait4 => ("wait4", Unknown, false),
        libc::SYS_waitid => ("waitid", Unknown, false),
        libc::SYS_restart_syscall => ("restart_syscall", Unknown, false),
        libc::SYS_openat => ("openat", Unknown, false),
        libc::SYS_close => ("close", Unknown, true),
        libc::SYS_ioctl => ("ioctl", Unknown, true),
        libc::SYS_mmap => ("mmap", Unknown, false),
        libc::SYS_munmap => ("munmap", Unknown, false),
        libc::SYS_madvise => ("madvise", Unknown, false),
        libc::SYS_getrandom => ("getrandom", Unknown, false),
        libc::SYS_rt_sigtimedwait => ("rt_sigtimedwait", Unknown, false),
        libc::SYS_rt_sigsuspend => ("rt_sigsuspend", Unknown, false),
        _ => return None,
    };
    Some(SyscallInfo {
        name,
        class,
        first_argument_is_fd,
    })
}

/// On other architectures no syscall is named, and classification relies on `wchan`.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn syscall_info(_number: libc::c_long) -> Option<SyscallInfo> {
    None
}

#[cfg(test)]
mod tests;
