//! The operating-system edge: libc calls and `/proc` readings.
//!
//! It wraps the few libc calls the runtime needs (the caller's uid, thread id and stack, the
//! clock tick rate) and reads process figures from `/proc`. It is one of the four modules
//! allowed `unsafe`; the tracking allocator, stack capture (`stack::capture`, which installs
//! a signal handler) and the logging scope (`telemetry::current`) are the others.
#![allow(unsafe_code)]

/// The real user id of this process.
pub(crate) fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::getuid() }
}

/// The kernel's id of the calling thread (its tid), as named under `/proc/self/task/`.
pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::gettid() }
}

/// The calling thread's stack: its lowest and one-past-highest address, from
/// `pthread_getattr_np`; `None` if glibc cannot say.
pub(crate) fn current_thread_stack() -> Option<(usize, usize)> {
    let mut attributes = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_getattr_np initialises the attribute object it is given when it
    // returns 0; it is destroyed below on that path only.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), attributes.as_mut_ptr()) } != 0 {
        return None;
    }
    let mut low: *mut libc::c_void = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: the attribute object was initialised above; both out-pointers are valid.
    let read = unsafe { libc::pthread_attr_getstack(attributes.as_ptr(), &mut low, &mut size) };
    // SAFETY: initialised above and not used after this.
    unsafe { libc::pthread_attr_destroy(attributes.as_mut_ptr()) };
    let low = low as usize;
    (read == 0 && size > 0).then(|| (low, low.saturating_add(size)))
}

/// The text of `/proc/self/status` (empty if unreadable).
fn read_status() -> String {
    std::fs::read_to_string("/proc/self/status").unwrap_or_default()
}

/// A numeric field of a `status` text (`VmRSS:   1234 kB` gives 1234); `None` if absent.
fn field_of(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// A size field of a `status` text (counted in KiB there), in bytes; 0 if absent.
fn bytes_of(status: &str, name: &str) -> u64 {
    field_of(status, name).map_or(0, |kib| kib * 1024)
}

/// This process's resident set and thread count, from one reading of `/proc/self/status`
/// (zeros if unreadable).
pub(crate) fn resident_set_and_threads() -> (u64, u32) {
    let status = read_status();
    (
        bytes_of(&status, "VmRSS"),
        field_of(&status, "Threads")
            .map_or(0, |threads| u32::try_from(threads).unwrap_or(u32::MAX)),
    )
}

/// The resident set size of this process in bytes, from `/proc/self/status`; 0 if unreadable.
pub(crate) fn resident_set_bytes() -> u64 {
    bytes_of(&read_status(), "VmRSS")
}

/// The highest resident set size this process has had, in bytes; 0 if unreadable.
pub(crate) fn peak_resident_set_bytes() -> u64 {
    bytes_of(&read_status(), "VmHWM")
}

/// `utime + stime` from a `stat` line (of the process or one of its threads), as a duration
/// (the kernel counts it in clock ticks, typically 10 ms each).
pub(crate) fn stat_cpu_time(stat: &str) -> Option<std::time::Duration> {
    let nanoseconds =
        u128::from(stat_cpu_ticks(stat)?) * 1_000_000_000 / u128::from(clock_ticks_per_second());
    Some(std::time::Duration::from_nanos(
        u64::try_from(nanoseconds).unwrap_or(u64::MAX),
    ))
}

/// `utime + stime` in clock ticks from a `stat` line (of the process or one of its threads):
/// fields 14 and 15, counted after the command name, which may hold spaces and `)`.
pub(crate) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // After the name, the state is index 0, so fields 14 and 15 are indexes 11 and 12.
    let mut fields = stat_fields_after_name(stat)?.skip(11);
    let user_ticks = fields.next()?.parse::<u64>().ok()?;
    let system_ticks = fields.next()?.parse::<u64>().ok()?;
    Some(user_ticks.saturating_add(system_ticks))
}

/// The fields of a `stat` line after the command name, starting with the state letter.
pub(crate) fn stat_fields_after_name(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    stat.rsplit_once(')')
        .map(|(_, after_name)| after_name.split_whitespace())
}

/// CPU time this process has used (user + system, all threads), from `/proc/self/stat`.
pub(crate) fn process_cpu_time() -> std::time::Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_cpu_time(&stat))
        .unwrap_or_default()
}

/// The kernel's clock tick rate (`_SC_CLK_TCK`), the unit of CPU times in `/proc/*/stat`.
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// The number of open file descriptors of this process; 0 if unreadable.
pub(crate) fn open_fd_count() -> u32 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |entries| {
        // The directory handle itself is one of the entries while we read it.
        u32::try_from(entries.count().saturating_sub(1)).unwrap_or(u32::MAX)
    })
}

/// The process's soft limit on open file descriptors (`RLIMIT_NOFILE`); `None` if it cannot
/// be read or is unlimited.
pub(crate) fn open_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through the pointer, which is valid and ours for
    // the call's duration.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Whether a process with this pid exists (used to find sockets left by dead workers).
pub(crate) fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The host's CPU time in clock ticks, all CPUs together: `(total, steal)` from the `cpu`
/// line of `/proc/stat` (pure). `None` for a text without one, or without the steal column
/// (kernels before 2.6.11).
pub(crate) fn host_cpu_ticks(proc_stat: &str) -> Option<(u64, u64)> {
    let line = proc_stat.lines().find(|line| line.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
    // already counted in user and nice, so the total stops at steal.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let steal = *ticks.get(7)?;
    Some((ticks.iter().sum(), steal))
}

/// [`host_cpu_ticks`] of this host now; `None` if `/proc/stat` is unreadable.
pub(crate) fn read_host_cpu_ticks() -> Option<(u64, u64)> {
    host_cpu_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Another process's resident set and CPU time (user + system, all threads), from
/// `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` once the process is gone.
pub(crate) fn process_figures(pid: u32) -> Option<(u64, std::time::Duration)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some((bytes_of(&status, "VmRSS"), stat_cpu_time(&stat)?))
}

/// Asks the kernel to kill this process when the thread that spawned it exits, then checks
/// that its parent is still `expected_parent`: `false` if it is not (the parent died before
/// the request was in place, and the process would outlive it).
pub(crate) fn die_with_parent(expected_parent: u32) -> bool {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no preconditions, cannot fail and touches no memory of ours.
    let parent = unsafe { libc::getppid() };
    set == 0 && u32::try_from(parent).is_ok_and(|parent| parent == expected_parent)
}

/// Sends SIGKILL to the process group `group` (a child started in a group of its own, whose
/// id is its pid). `false` if there was no such group left.
pub(crate) fn kill_process_group(group: u32) -> bool {
    let Ok(group) = libc::pid_t::try_from(group) else {
        return false;
    };
    if group <= 1 {
        // 0 and 1 would name our own group or every process we may signal.
        return false;
    }
    // SAFETY: kill takes a process group (negated) and a signal, and touches no memory of
    // ours; the group is a child's own, never ours (checked above and by its caller).
    unsafe { libc::kill(-group, libc::SIGKILL) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_s_figures_are_read_and_its_group_killed() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        let (rss_bytes, _cpu) = process_figures(child.id()).expect("a live child's figures");
        assert!(rss_bytes > 0, "a running process has resident pages");
        assert!(kill_process_group(child.id()));
        let status = child.wait().expect("reaped");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(
            process_figures(child.id()),
            None,
            "a reaped child has no figures"
        );
        assert!(!kill_process_group(0), "never our own group");
        assert!(!kill_process_group(1), "never every process");
    }

    #[test]
    fn a_process_whose_parent_is_another_is_told_so() {
        // The real parent passes the check; any other pid fails it.
        let parent = std::os::unix::process::parent_id();
        assert!(die_with_parent(parent));
        assert!(!die_with_parent(parent.wrapping_add(1)));
        // Undo the request at once: the test runner's thread that spawned this process may
        // exit before the process does.
        // SAFETY: as in die_with_parent; signal 0 clears the request.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) },
            0
        );
    }

    #[test]
    fn figures_of_this_process_are_plausible() {
        assert!(
            resident_set_bytes() > 1024 * 1024,
            "a test binary uses over 1 MiB"
        );
        assert!(process_exists(std::process::id()));
        let (rss_bytes, threads) = resident_set_and_threads();
        assert!(threads >= 1);
        assert!(rss_bytes > 1024 * 1024);
        assert!(peak_resident_set_bytes() >= resident_set_bytes());
        let before = open_fd_count();
        let file = std::fs::File::open("/proc/self/status").expect("open");
        assert_eq!(open_fd_count(), before + 1);
        drop(file);
        let cpu_before = process_cpu_time();
        let started = std::time::Instant::now();
        let mut spin = 0_u64;
        while started.elapsed() < std::time::Duration::from_millis(60) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        assert!(
            process_cpu_time() > cpu_before,
            "60 ms of spinning shows in the CPU time"
        );
        let proc_owner = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").expect("/proc is mounted"),
        );
        assert_eq!(current_uid(), proc_owner);
    }

    #[test]
    fn host_cpu_ticks_sum_the_columns_up_to_steal() {
        let stat = "cpu  100 5 50 800 10 1 2 30 40 0\ncpu0 50 2 25 400 5 0 1 15 20 0\n";
        assert_eq!(host_cpu_ticks(stat), Some((998, 30)));
        assert_eq!(host_cpu_ticks("cpu  100 5 50 800 10 1 2\n"), None);
        assert_eq!(host_cpu_ticks("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(host_cpu_ticks("cpu  1 x 3 4 5 6 7 8\n"), None);
        assert!(read_host_cpu_ticks().is_some_and(|(total, steal)| total > 0 && steal <= total));
    }
}
