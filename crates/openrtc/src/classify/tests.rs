//! Tests of the classifier: its pure core on literal `/proc` texts, the socket-table lookups,
//! and real threads blocked in each way.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use super::fd::{describe_inet_socket, describe_unix_socket, socket_inode};
use super::*;
use crate::os::stat_cpu_ticks;

/// The CPU sampling interval the tests use, as the watchdog would.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(5);

/// How long a test thread may take to reach its blocking call on a loaded machine.
const BLOCKING_DEADLINE: Duration = Duration::from_secs(30);

/// The interval the pure-core tests pretend the CPU clock was sampled over.
const LITERAL_INTERVAL: Duration = Duration::from_millis(4);

/// A `stat` line of a thread named `name` in `state`, with 7 + 3 ticks of CPU time.
fn stat_line(name: &str, state: char) -> String {
    format!(
        "4242 ({name}) {state} 4200 4200 4100 0 -1 4194368 81 0 0 0 7 3 0 0 20 0 9 0 \
         392919 4595712 400 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
    )
}

/// A `syscall` line for syscall `number` with `first_argument` and made-up other fields.
fn syscall_line(number: libc::c_long, first_argument: &str) -> String {
    format!("{number} {first_argument} 0x7f12c0000b70 0x400 0x0 0x0 0x0 0x7ffd8e1c 0x7f12c1")
}

/// Classifies literal texts; the resolver answers `fd:<n>` and records what it was asked.
fn classify_texts(
    stat: Option<&str>,
    syscall: Option<&str>,
    wchan: Option<&str>,
    cpu_advance: Option<Duration>,
) -> (StallDiagnosis, Vec<i32>) {
    let mut resolved_fds = Vec::new();
    let readings = ThreadReadings {
        stat,
        syscall,
        wchan,
        cpu_advance,
        interval: LITERAL_INTERVAL,
    };
    let diagnosis = classify(&readings, &mut |fd| {
        resolved_fds.push(fd);
        Some(format!("fd:{fd}"))
    });
    (diagnosis, resolved_fds)
}

/// Classifies a sleeping (`S`) thread in syscall `number` with first argument `argument`.
fn classify_sleeping_in(number: libc::c_long, argument: &str) -> (StallDiagnosis, Vec<i32>) {
    let stat = stat_line("worker-1", 'S');
    let syscall = syscall_line(number, argument);
    classify_texts(Some(&stat), Some(&syscall), Some("0"), Some(Duration::ZERO))
}

#[track_caller]
fn check_class(
    number: libc::c_long,
    expected_class: StallClass,
    expected_name: &str,
    expected_fd: Option<i32>,
) {
    let (diagnosis, resolved_fds) = classify_sleeping_in(number, "0x2a");
    assert_eq!(diagnosis.class, expected_class, "{diagnosis:?}");
    assert_eq!(diagnosis.syscall, Some(expected_name));
    assert_eq!(diagnosis.syscall_number, Some(number));
    assert_eq!(diagnosis.thread_state, Some('S'));
    assert_eq!(resolved_fds, Vec::from_iter(expected_fd));
    assert_eq!(
        diagnosis.fd_target,
        expected_fd.map(|fd| format!("fd:{fd}"))
    );
}

#[test]
fn the_state_is_read_after_the_last_parenthesis_of_the_name() {
    let stat = stat_line("tokio ) R (worker 1", 'S');
    assert_eq!(stat_state(&stat), Some('S'));
    assert_eq!(stat_cpu_ticks(&stat), Some(10));
    let syscall = syscall_line(libc::SYS_futex, "0x7f12c0001a28");
    let (diagnosis, resolved_fds) = classify_texts(
        Some(&stat),
        Some(&syscall),
        Some("futex_wait_queue\n"),
        Some(Duration::ZERO),
    );
    assert_eq!(
        diagnosis,
        StallDiagnosis {
            class: StallClass::Lock,
            thread_state: Some('S'),
            syscall: Some("futex"),
            syscall_number: Some(libc::SYS_futex),
            wchan: Some("futex_wait_queue".to_owned()),
            fd_target: None,
        }
    );
    assert!(resolved_fds.is_empty(), "a futex takes no descriptor");
    assert_eq!(diagnosis.to_string(), "lock in futex");
}

#[test]
fn a_running_or_cpu_advancing_thread_is_cpu() {
    let running = stat_line("worker-0", 'R');
    let (diagnosis, _) = classify_texts(Some(&running), Some("running\n"), Some("0"), None);
    assert_eq!(diagnosis.class, StallClass::Cpu);
    assert_eq!((diagnosis.syscall, diagnosis.syscall_number), (None, None));
    assert_eq!(diagnosis.to_string(), "cpu");

    // The thread woke between the reads of `stat` and `syscall`.
    let sleeping = stat_line("worker-0", 'S');
    let (diagnosis, _) = classify_texts(Some(&sleeping), Some("running"), Some("0"), None);
    assert_eq!(diagnosis.class, StallClass::Cpu);

    // Half the interval on a CPU makes it CPU-bound even if sampled while in a read.
    let reading = syscall_line(libc::SYS_read, "0x5");
    let (diagnosis, resolved_fds) = classify_texts(
        Some(&sleeping),
        Some(&reading),
        Some("pipe_read"),
        Some(LITERAL_INTERVAL / 2),
    );
    assert_eq!(diagnosis.class, StallClass::Cpu);
    assert!(
        resolved_fds.is_empty(),
        "a CPU-bound thread costs no fd lookup"
    );
    let (diagnosis, resolved_fds) = classify_texts(
        Some(&sleeping),
        Some(&reading),
        Some("pipe_read"),
        Some(LITERAL_INTERVAL / 2 - Duration::from_nanos(1)),
    );
    assert_eq!(diagnosis.class, StallClass::Io);
    assert_eq!(resolved_fds, [5]);
}

#[test]
fn timers_futexes_and_descriptor_calls_are_named_and_classified() {
    check_class(libc::SYS_nanosleep, StallClass::Sleep, "nanosleep", None);
    check_class(
        libc::SYS_clock_nanosleep,
        StallClass::Sleep,
        "clock_nanosleep",
        None,
    );
    check_class(libc::SYS_futex, StallClass::Lock, "futex", None);
    check_class(libc::SYS_flock, StallClass::Lock, "flock", Some(42));
    for (number, name) in [
        (libc::SYS_read, "read"),
        (libc::SYS_write, "write"),
        (libc::SYS_readv, "readv"),
        (libc::SYS_writev, "writev"),
        (libc::SYS_pread64, "pread64"),
        (libc::SYS_pwrite64, "pwrite64"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_recvmsg, "recvmsg"),
        (libc::SYS_sendto, "sendto"),
        (libc::SYS_sendmsg, "sendmsg"),
        (libc::SYS_connect, "connect"),
        (libc::SYS_accept, "accept"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_epoll_pwait, "epoll_pwait"),
        (libc::SYS_fsync, "fsync"),
    ] {
        check_class(number, StallClass::Io, name, Some(42));
    }
    check_class(libc::SYS_ppoll, StallClass::Io, "ppoll", None);
    check_class(libc::SYS_pselect6, StallClass::Io, "pselect6", None);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_64_syscall_numbers_are_the_kernel_ones() {
    let names: Vec<_> = [35, 230, 202, 0, 1, 45, 42, 288, 7, 23, 232]
        .into_iter()
        .map(|number| syscall_info(number).map(|info| info.name))
        .collect();
    assert_eq!(
        names,
        [
            "nanosleep",
            "clock_nanosleep",
            "futex",
            "read",
            "write",
            "recvfrom",
            "connect",
            "accept4",
            "poll",
            "select",
            "epoll_wait"
        ]
        .map(Some)
    );
    // A literal line as read from a thread blocked in `recv` on descriptor 7.
    let stat = stat_line("worker-2", 'S');
    let (diagnosis, resolved_fds) = classify_texts(
        Some(&stat),
        Some("45 0x7 0x7f3a5c000b70 0x2000 0x0 0x0 0x0 0x7f3a6d7fe5c8 0x7f3a6e11c9dd\n"),
        Some("wait_woken"),
        Some(Duration::ZERO),
    );
    assert_eq!(diagnosis.class, StallClass::Io);
    assert_eq!(resolved_fds, [7]);
    assert_eq!(diagnosis.to_string(), "io in recvfrom on fd:7");
    // `poll` takes an array of descriptors, not one: nothing is resolved.
    let (diagnosis, resolved_fds) = classify_sleeping_in(7, "0x7f3a5c000b70");
    assert_eq!(
        (diagnosis.class, diagnosis.fd_target),
        (StallClass::Io, None)
    );
    assert!(resolved_fds.is_empty());
}

#[test]
fn uninterruptible_sleep_is_a_fault_unless_the_call_is_io() {
    let stat = stat_line("worker-3", 'D');
    let (diagnosis, resolved_fds) = classify_texts(
        Some(&stat),
        Some("-1 0x7ffd8e1c2f00 0x55d1c0a1b2c3\n"),
        Some("folio_wait_bit_common"),
        Some(Duration::ZERO),
    );
    assert_eq!(
        diagnosis,
        StallDiagnosis {
            class: StallClass::Fault,
            thread_state: Some('D'),
            syscall: None,
            syscall_number: None,
            wchan: Some("folio_wait_bit_common".to_owned()),
            fd_target: None,
        }
    );
    assert!(resolved_fds.is_empty());
    assert_eq!(diagnosis.to_string(), "fault at folio_wait_bit_common");

    let fsync = syscall_line(libc::SYS_fsync, "0x9");
    let (diagnosis, resolved_fds) = classify_texts(
        Some(&stat),
        Some(&fsync),
        Some("jbd2_log_wait_commit"),
        None,
    );
    assert_eq!(diagnosis.class, StallClass::Io);
    assert_eq!(resolved_fds, [9]);
    assert_eq!(diagnosis.to_string(), "io in fsync on fd:9");

    let mmap = syscall_line(libc::SYS_mmap, "0x0");
    let (diagnosis, _) = classify_texts(Some(&stat), Some(&mmap), None, None);
    assert_eq!(diagnosis.class, StallClass::Fault);
    assert_eq!(diagnosis.syscall, Some("mmap"));

    let futex = syscall_line(libc::SYS_futex, "0x7f12c0001a28");
    let (diagnosis, _) = classify_texts(Some(&stat), Some(&futex), None, None);
    assert_eq!(
        diagnosis.class,
        StallClass::Fault,
        "a D-state futex is no plain lock"
    );
}

#[test]
fn other_calls_and_states_are_unknown_with_what_is_known() {
    let (diagnosis, resolved_fds) = classify_sleeping_in(libc::SYS_wait4, "0xffffffff");
    assert_eq!(diagnosis.class, StallClass::Unknown);
    assert_eq!(diagnosis.syscall, Some("wait4"));
    assert!(resolved_fds.is_empty());
    assert_eq!(diagnosis.to_string(), "unknown in wait4");

    let (diagnosis, resolved_fds) = classify_sleeping_in(987_654, "0x3");
    assert_eq!(diagnosis.class, StallClass::Unknown);
    assert_eq!(diagnosis.syscall, None);
    assert_eq!(diagnosis.syscall_number, Some(987_654));
    assert!(
        resolved_fds.is_empty(),
        "an unnamed call's arguments mean nothing"
    );
    assert_eq!(diagnosis.to_string(), "unknown in syscall 987654");

    for state in ['T', 't', 'Z', 'X'] {
        let stat = stat_line("worker-4", state);
        let nanosleep = syscall_line(libc::SYS_nanosleep, "0x7ffd8e1c2f00");
        let (diagnosis, _) = classify_texts(Some(&stat), Some(&nanosleep), None, None);
        assert_eq!(diagnosis.class, StallClass::Unknown, "state {state}");
        assert_eq!(diagnosis.thread_state, Some(state));
    }
}

#[test]
fn without_a_syscall_the_wait_channel_decides() {
    let stat = stat_line("worker-5", 'S');
    for (wchan, expected_class) in [
        ("hrtimer_nanosleep", StallClass::Sleep),
        ("futex_wait_queue_me", StallClass::Lock),
        ("pipe_read", StallClass::Io),
        ("anon_pipe_read", StallClass::Io),
        ("wait_woken", StallClass::Io),
        ("do_sys_poll", StallClass::Io),
        ("do_wait", StallClass::Unknown),
    ] {
        for syscall in [None, Some("-1 0x7ffd8e1c2f00 0x55d1c0a1b2c3")] {
            let (diagnosis, _) = classify_texts(Some(&stat), syscall, Some(wchan), None);
            assert_eq!(diagnosis.class, expected_class, "{wchan} with {syscall:?}");
            assert_eq!(diagnosis.wchan.as_deref(), Some(wchan));
        }
    }
    // `restart_syscall` (a sleep interrupted by a signal and resumed) is named by wchan.
    let (diagnosis, _) = classify_texts(
        Some(&stat),
        Some(&syscall_line(libc::SYS_restart_syscall, "0x0")),
        Some("hrtimer_nanosleep"),
        None,
    );
    assert_eq!(diagnosis.class, StallClass::Sleep);
    assert_eq!(diagnosis.syscall, Some("restart_syscall"));
    let (diagnosis, _) = classify_texts(Some(&stat), None, Some("0\n"), None);
    assert_eq!(
        (diagnosis.class, diagnosis.wchan),
        (StallClass::Unknown, None)
    );
}

#[test]
fn unreadable_or_garbled_texts_never_panic() {
    let unreadable = StallDiagnosis::unreadable();
    for stat in [
        None,
        Some(""),
        Some("4242 no name"),
        Some("4242 (worker)"),
        Some("1 (x) 7"),
    ] {
        let (diagnosis, _) = classify_texts(stat, Some("running"), Some("0"), None);
        assert_eq!(diagnosis, unreadable, "{stat:?}");
    }
    let stat = stat_line("worker-6", 'S');
    for syscall in ["", "zzz 0x1", "0 0xZZ", "0", "0 0xffffffffffffff9c"] {
        let (diagnosis, resolved_fds) = classify_texts(Some(&stat), Some(syscall), None, None);
        assert!(resolved_fds.is_empty(), "{syscall:?} names no descriptor");
        assert_eq!(diagnosis.fd_target, None);
    }
    assert_eq!(stat_cpu_ticks("4242 (worker) S 1 2"), None);
}

#[cfg(target_endian = "little")]
#[test]
fn inet_tables_name_the_peer_or_the_listening_address() {
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1460 1 00000000a1703e4e 100 0 0 10 0
   1: 0100007F:A3C2 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 12345 1 00000000c1e31a68 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:B2A4 00000000000000000000000001000000:1538 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:B2A6 0000000000000000FFFF00000A00000A:0050 01 00000000:00000000 00:00000000 00000000  1000        0 778 1 0000000000000000 20 4 30 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 555 2 0000000000000000 0
";
    let lookup = |table: &str, protocol: &str, inode: u64| {
        describe_inet_socket(table.as_bytes(), protocol, inode)
    };
    assert_eq!(
        lookup(TCP, "tcp", 12345).as_deref(),
        Some("tcp 127.0.0.1:5432")
    );
    assert_eq!(
        lookup(TCP, "tcp", 1460).as_deref(),
        Some("tcp listener 127.0.0.1:8080")
    );
    assert_eq!(lookup(TCP, "tcp", 1461), None);
    assert_eq!(lookup(TCP6, "tcp", 777).as_deref(), Some("tcp [::1]:5432"));
    assert_eq!(
        lookup(TCP6, "tcp", 778).as_deref(),
        Some("tcp 10.0.0.10:80")
    );
    assert_eq!(
        lookup(UDP, "udp", 555).as_deref(),
        Some("udp bound to 0.0.0.0:5353")
    );
    assert_eq!(lookup("", "tcp", 555), None);
}

#[test]
fn unix_table_names_the_path_if_any() {
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
00000000c1e31a68: 00000003 00000000 00000000 0001 03 297653
0000000008b181a7: 00000002 00000000 00010000 0001 01 297652 /run/openrtc/edge-1.sock
0000000012345678: 00000002 00000000 00010000 0001 01 297651 @openrtc-abstract
";
    let lookup = |inode| describe_unix_socket(UNIX.as_bytes(), inode);
    assert_eq!(lookup(297_653).as_deref(), Some("unix socket"));
    assert_eq!(
        lookup(297_652).as_deref(),
        Some("unix socket /run/openrtc/edge-1.sock")
    );
    assert_eq!(
        lookup(297_651).as_deref(),
        Some("unix socket @openrtc-abstract")
    );
    assert_eq!(lookup(1), None);
    assert_eq!(socket_inode("socket:[297652]"), Some(297_652));
    assert_eq!(socket_inode("pipe:[297652]"), None);
    assert_eq!(socket_inode("socket:[oops]"), None);
}

/// Runs `blocker` on a new thread that first reports its kernel thread id.
fn spawn_reporting_tid<T: Send + 'static>(
    name: &str,
    blocker: impl FnOnce() -> T + Send + 'static,
) -> (i32, JoinHandle<T>) {
    // A one-slot channel is preallocated, so sending the tid neither allocates nor blocks.
    let (tid_sender, tid_receiver) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            tid_sender
                .send(crate::os::current_tid())
                .expect("the test waits for the tid");
            blocker()
        })
        .expect("the test thread starts");
    let tid = tid_receiver.recv().expect("the thread reports its tid");
    (tid, thread)
}

/// Diagnoses `tid` until it is no longer running on its way to the blocking call.
#[track_caller]
fn diagnose_once_blocked(tid: i32) -> StallDiagnosis {
    let deadline = Instant::now() + BLOCKING_DEADLINE;
    loop {
        let diagnosis = diagnose(tid, SAMPLE_INTERVAL);
        if diagnosis.class != StallClass::Cpu {
            return diagnosis;
        }
        assert!(
            Instant::now() < deadline,
            "thread {tid} never blocked: {diagnosis:?}"
        );
    }
}

#[test]
fn a_sleeping_thread_is_sleep() {
    let stop = Arc::new(AtomicBool::new(false));
    let (tid, thread) = spawn_reporting_tid("classify-sleep", {
        let stop = Arc::clone(&stop);
        move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    let diagnosis = diagnose_once_blocked(tid);
    stop.store(true, Ordering::Release);
    assert_eq!(diagnosis.class, StallClass::Sleep, "{diagnosis:?}");
    assert_eq!(diagnosis.thread_state, Some('S'));
    assert!(
        matches!(diagnosis.syscall, Some("nanosleep" | "clock_nanosleep")),
        "{diagnosis:?}"
    );
    assert_eq!(diagnosis.fd_target, None);
    thread.join().expect("the sleeper stops");
}

#[test]
fn a_thread_waiting_for_a_held_mutex_is_lock() {
    let mutex = Arc::new(Mutex::new(0_u32));
    let guard = mutex.lock().expect("the mutex is not poisoned");
    let (tid, thread) = spawn_reporting_tid("classify-lock", {
        let mutex = Arc::clone(&mutex);
        move || *mutex.lock().expect("the mutex is not poisoned") += 1
    });
    let diagnosis = diagnose_once_blocked(tid);
    drop(guard);
    assert_eq!(diagnosis.class, StallClass::Lock, "{diagnosis:?}");
    assert_eq!(diagnosis.syscall, Some("futex"));
    assert_eq!(diagnosis.fd_target, None);
    thread.join().expect("the waiter takes the lock");
    assert_eq!(*mutex.lock().expect("the mutex is not poisoned"), 1);
}

#[test]
fn a_thread_reading_a_silent_tcp_peer_is_io_on_that_peer() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let listener_address = listener.local_addr().expect("the bound address");
    let mut client = TcpStream::connect(listener_address).expect("connect");
    let (mut server_side, _) = listener.accept().expect("accept");
    let (tid, thread) = spawn_reporting_tid("classify-tcp", move || {
        let mut buffer = [0_u8; 16];
        client.read(&mut buffer).expect("the read ends with data")
    });
    let diagnosis = diagnose_once_blocked(tid);
    server_side.write_all(b"x").expect("wake the reader");
    assert_eq!(diagnosis.class, StallClass::Io, "{diagnosis:?}");
    assert_eq!(diagnosis.syscall, Some("recvfrom"));
    assert_eq!(
        diagnosis.fd_target,
        Some(format!("tcp {listener_address}")),
        "the peer is the listener"
    );
    assert_eq!(thread.join().expect("the reader returns"), 1);
}

#[test]
fn a_thread_accepting_on_a_quiet_listener_is_io_on_the_listening_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let listener_address = listener.local_addr().expect("the bound address");
    let (tid, thread) = spawn_reporting_tid("classify-accept", move || {
        listener.accept().expect("the accept ends with a peer").1
    });
    let diagnosis = diagnose_once_blocked(tid);
    let client = TcpStream::connect(listener_address).expect("wake the acceptor");
    assert_eq!(diagnosis.class, StallClass::Io, "{diagnosis:?}");
    assert!(
        matches!(diagnosis.syscall, Some("accept" | "accept4")),
        "{diagnosis:?}"
    );
    assert_eq!(
        diagnosis.fd_target,
        Some(format!("tcp listener {listener_address}"))
    );
    let peer = thread.join().expect("the acceptor returns");
    assert_eq!(Some(peer), client.local_addr().ok());
}

#[test]
fn a_thread_reading_an_empty_pipe_is_io_on_the_pipe() {
    // `cat` holds the writing end; it writes only what the test sends to its stdin.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cat runs");
    let mut cat_stdin = cat.stdin.take().expect("a piped stdin");
    let mut cat_stdout = cat.stdout.take().expect("a piped stdout");
    let (tid, thread) = spawn_reporting_tid("classify-pipe", move || {
        let mut buffer = [0_u8; 16];
        cat_stdout
            .read(&mut buffer)
            .expect("the read ends with data")
    });
    let diagnosis = diagnose_once_blocked(tid);
    cat_stdin.write_all(b"x").expect("feed cat");
    drop(cat_stdin);
    assert_eq!(diagnosis.class, StallClass::Io, "{diagnosis:?}");
    assert_eq!(diagnosis.syscall, Some("read"));
    let fd_target = diagnosis.fd_target.unwrap_or_default();
    assert!(fd_target.starts_with("pipe:["), "{fd_target}");
    assert_eq!(thread.join().expect("the reader returns"), 1);
    assert!(cat.wait().expect("cat exits").success());
}

#[test]
fn a_spinning_thread_is_cpu() {
    let stop = Arc::new(AtomicBool::new(false));
    let (tid, thread) = spawn_reporting_tid("classify-spin", {
        let stop = Arc::clone(&stop);
        move || {
            let mut spins = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
            spins
        }
    });
    let diagnoses: Vec<_> = (0..3).map(|_| diagnose(tid, SAMPLE_INTERVAL)).collect();
    stop.store(true, Ordering::Relaxed);
    for diagnosis in &diagnoses {
        assert_eq!(diagnosis.class, StallClass::Cpu, "{diagnosis:?}");
        assert_eq!(diagnosis.thread_state, Some('R'));
        assert_eq!(diagnosis.syscall, None);
    }
    assert!(thread.join().expect("the spinner stops") > 0);
}

#[test]
fn a_thread_that_is_gone_is_unknown() {
    for tid in [0, -1, i32::MAX] {
        assert_eq!(
            diagnose(tid, Duration::from_millis(1)),
            StallDiagnosis::unreadable()
        );
    }
    let (tid, thread) = spawn_reporting_tid("classify-exit", || ());
    thread.join().expect("the thread exits");
    // The kernel may list an exiting thread a little after `join` returns.
    let deadline = Instant::now() + BLOCKING_DEADLINE;
    loop {
        let diagnosis = diagnose(tid, Duration::from_millis(1));
        if diagnosis == StallDiagnosis::unreadable() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "thread {tid} lingers: {diagnosis:?}"
        );
    }
}

#[test]
fn schedstat_gives_time_on_a_cpu_and_in_a_run_queue() {
    assert_eq!(
        parse_schedstat("194818 4460511 3\n"),
        Some(ThreadTime {
            on_cpu_ns: 194_818,
            run_queue_ns: 4_460_511
        })
    );
    assert_eq!(parse_schedstat(""), None);
    assert_eq!(parse_schedstat("12"), None);
    assert_eq!(parse_schedstat("x 1 2"), None);
    let later = ThreadTime {
        on_cpu_ns: 10,
        run_queue_ns: 50,
    };
    let earlier = ThreadTime {
        on_cpu_ns: 4,
        run_queue_ns: 60,
    };
    assert_eq!(
        later.since(earlier),
        ThreadTime {
            on_cpu_ns: 6,
            run_queue_ns: 0
        }
    );
}

#[test]
fn a_runnable_thread_that_ran_under_the_threshold_was_preempted() {
    const MS: u64 = 1_000_000;
    let watched = |watched_ms: u64, on_cpu_ms: u64| {
        Some(WatchedTime {
            watched_ns: watched_ms * MS,
            spent: ThreadTime {
                on_cpu_ns: on_cpu_ms * MS,
                run_queue_ns: (watched_ms - on_cpu_ms) * MS,
            },
            runnable_throughout: true,
        })
    };
    // 80 ms stall, 72 of them watched, 10 on a CPU: at most 18 ms of its own work.
    assert_eq!(
        judge(Some(StallClass::Cpu), watched(72, 10), 80 * MS, 50 * MS),
        Some(StallClass::Preempted)
    );
    // The unwatched 8 ms count as running: 43 + 8 = 51 ms may be its own, over 50.
    assert_eq!(
        judge(Some(StallClass::Cpu), watched(72, 43), 80 * MS, 50 * MS),
        Some(StallClass::Cpu)
    );
    // A long computation on a busy host ran past the threshold: still the session's.
    assert_eq!(
        judge(Some(StallClass::Cpu), watched(290, 120), 300 * MS, 50 * MS),
        Some(StallClass::Cpu)
    );
    // Only a runnable thread can be preempted: a sleep stays a sleep.
    assert_eq!(
        judge(Some(StallClass::Sleep), watched(290, 0), 300 * MS, 50 * MS),
        Some(StallClass::Sleep)
    );
    // Nothing watched: the class seen in progress stands.
    assert_eq!(
        judge(Some(StallClass::Cpu), None, 80 * MS, 50 * MS),
        Some(StallClass::Cpu)
    );
    assert_eq!(
        judge(Some(StallClass::Cpu), watched(0, 0), 80 * MS, 50 * MS),
        Some(StallClass::Cpu)
    );
    // Ended before it was diagnosed: runnable throughout by the scheduler's own figures.
    assert_eq!(
        judge(None, watched(45, 9), 55 * MS, 50 * MS),
        Some(StallClass::Preempted)
    );
    assert_eq!(
        judge(None, watched(45, 44), 55 * MS, 50 * MS),
        Some(StallClass::Cpu)
    );
    // Diagnosed `cpu` at the instant it was seen, but asleep (in a read) for most of the
    // watched time: not the host's doing, the class stands.
    let slept_then_computed = Some(WatchedTime {
        watched_ns: 50 * MS,
        spent: ThreadTime {
            on_cpu_ns: 10 * MS,
            run_queue_ns: 0,
        },
        runnable_throughout: false,
    });
    assert_eq!(
        judge(Some(StallClass::Cpu), slept_then_computed, 55 * MS, 50 * MS),
        Some(StallClass::Cpu)
    );
    // Asleep for most of the watched time: not judged without a diagnosis.
    let asleep = Some(WatchedTime {
        watched_ns: 45 * MS,
        spent: ThreadTime {
            on_cpu_ns: MS,
            run_queue_ns: MS,
        },
        runnable_throughout: false,
    });
    assert_eq!(judge(None, asleep, 55 * MS, 50 * MS), None);
}
