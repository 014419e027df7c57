//! The operating-system edge: the only module of the runtime with `unsafe`.
//!
//! It wraps the few libc calls the runtime needs (the caller's uid) and
//! reads process figures from `/proc`.
#![allow(unsafe_code)]

/// The real user id of this process.
pub(crate) fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::getuid() }
}

/// The resident set size of this process in bytes, from `/proc/self/status`; 0 if unreadable.
pub(crate) fn resident_set_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Whether a process with this pid exists (used to find sockets left by dead workers).
pub(crate) fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_this_process_are_plausible() {
        assert!(
            resident_set_bytes() > 1024 * 1024,
            "a test binary uses over 1 MiB"
        );
        assert!(process_exists(std::process::id()));
        let proc_owner = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").expect("/proc is mounted"),
        );
        assert_eq!(current_uid(), proc_owner);
    }
}
