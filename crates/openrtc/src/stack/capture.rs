//! Capturing the stack of one stuck thread, from another thread, without stopping the process.
//!
//! The capturing thread (the watchdog) arms a process-wide capture area with the target's
//! thread id and stack bounds, then sends that one thread a real-time signal with `tgkill`.
//! The handler, running on the stuck thread, checks that the capture is meant for it, walks
//! the frame-pointer chain from the interrupted registers into the area's fixed array and marks
//! it done. The capturing thread waits for that up to a deadline; a thread that does not take
//! the signal in time (in uninterruptible sleep, say) is reported as such, and its late
//! handler finds the area no longer armed for it and does nothing.
//!
//! The handler is async-signal-safe: it touches only atomics of a static and the stuck
//! thread's own stack, reads a word only after checking it lies inside that stack (so a broken
//! chain ends the walk rather than faulting), allocates nothing, takes no lock and keeps
//! `errno`. Only one capture runs at a time in the process (a mutex on the capturing side).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The most frames one capture records.
pub(crate) const MAX_FRAMES: usize = 64;

const IDLE: u64 = 0;
const ARMED: u64 = 1;
const WRITING: u64 = 2;
const DONE: u64 = 3;
/// The low bits of the state word hold the phase; the high bits, the capture's number, so a
/// handler that runs late (after its capture was given up and another armed) cannot mistake
/// the new capture for its own.
const PHASE: u64 = 0xFF;

/// The one capture in flight: written by the capturing thread while `IDLE`, by the handler
/// while `WRITING`, read back by the capturing thread once `DONE`.
struct CaptureArea {
    state: AtomicU64,
    target_tid: AtomicI32,
    stack_low: AtomicUsize,
    stack_high: AtomicUsize,
    len: AtomicUsize,
    frames: [AtomicUsize; MAX_FRAMES],
}

/// The executable's code (low, high): the walk's test for "is this a return address into Rust
/// code", read from `/proc/self/maps` when the handler is installed.
static TEXT_LOW: AtomicUsize = AtomicUsize::new(0);
static TEXT_HIGH: AtomicUsize = AtomicUsize::new(0);

/// How many stack words above the stack pointer the handler searches for the return address
/// out of a C function that keeps no frame pointer (a libc syscall wrapper, the unwinder).
const SCAN_WORDS: usize = 256;

static AREA: CaptureArea = CaptureArea {
    state: AtomicU64::new(IDLE),
    target_tid: AtomicI32::new(0),
    stack_low: AtomicUsize::new(0),
    stack_high: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    frames: [const { AtomicUsize::new(0) }; MAX_FRAMES],
};

/// Serialises captures on the capturing side (several pools may each run a watchdog).
static CAPTURING: Mutex<()> = Mutex::new(());

/// The signal the handler is installed on, once per process; or why capture is unavailable.
static INSTALLED: OnceLock<Result<libc::c_int, Unavailable>> = OnceLock::new();

/// Why this process cannot capture stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Stack capture is implemented for x86_64 and aarch64 Linux only.
    Architecture,
    /// Every real-time signal already has a handler: none is free for capture.
    NoFreeSignal,
}

/// Why one capture gave no frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Capture cannot work in this process.
    Unavailable(Unavailable),
    /// The thread did not run the handler within the deadline (uninterruptible sleep, or
    /// not scheduled).
    NotAnswered(Duration),
    /// The thread's stack bounds are unknown, so its frames cannot be read safely.
    NoStackBounds,
    /// The thread no longer exists.
    ThreadGone,
}

/// The raw addresses of one capture: the interrupted instruction first, then return
/// addresses, innermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawStack {
    pub(crate) addresses: Vec<usize>,
}

/// Installs the handler (once per process) and says which signal it is on.
pub(crate) fn install() -> Result<libc::c_int, Unavailable> {
    *INSTALLED.get_or_init(install_handler)
}

fn install_handler() -> Result<libc::c_int, Unavailable> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err(Unavailable::Architecture);
    }
    if let Some((low, high)) = executable_text() {
        TEXT_LOW.store(low, Ordering::Relaxed);
        TEXT_HIGH.store(high, Ordering::Release);
    }
    // Leave the lowest real-time signals to others (glibc already keeps its own below
    // SIGRTMIN); take the first one above them that nobody handles.
    for signal in (libc::SIGRTMIN() + 4)..=libc::SIGRTMAX() {
        let mut previous = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a null new action only reads the current one into `previous`.
        if unsafe { libc::sigaction(signal, std::ptr::null(), previous.as_mut_ptr()) } != 0 {
            continue;
        }
        // SAFETY: sigaction succeeded, so `previous` is initialised.
        let previous = unsafe { previous.assume_init() };
        if previous.sa_sigaction != libc::SIG_DFL {
            continue;
        }
        // SAFETY: all-zero is a valid sigaction (no flags, empty mask, SIG_DFL); the fields
        // set below make it the one wanted.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_signal;
        action.sa_sigaction = handler as usize;
        // SA_RESTART: a syscall the signal interrupts is restarted where the kernel can.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t inside `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: the action is fully initialised and the handler is async-signal-safe.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } == 0 {
            return Ok(signal);
        }
    }
    Err(Unavailable::NoFreeSignal)
}

/// The span of the executable's own code, from its executable mappings in `/proc/self/maps`.
fn executable_text() -> Option<(usize, usize)> {
    let executable = std::fs::read_link("/proc/self/exe").ok()?;
    let executable = executable.to_str()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let permissions = fields.next()?;
            let path = fields.nth(3)?;
            if !permissions.contains('x') || path != executable {
                return None;
            }
            let (low, high) = range.split_once('-')?;
            Some((
                usize::from_str_radix(low, 16).ok()?,
                usize::from_str_radix(high, 16).ok()?,
            ))
        })
        .reduce(|(low, high), (next_low, next_high)| (low.min(next_low), high.max(next_high)))
}

/// Captures the stack of thread `tid` of this process, whose stack spans `stack` (low, high).
///
/// Waits at most `deadline` for the thread to take the signal. Call only while the thread is
/// known to be stuck (the watchdog's stall in progress): the signal interrupts it briefly, and
/// a blocking call it is in is restarted (or, for the few calls the kernel never restarts,
/// returns `EINTR`, which the standard library's calls retry).
pub(crate) fn capture(
    tid: i32,
    stack: Option<(usize, usize)>,
    deadline: Duration,
) -> Result<RawStack, Failed> {
    let signal = install().map_err(Failed::Unavailable)?;
    let (low, high) = stack.ok_or(Failed::NoStackBounds)?;
    let _one_at_a_time = crate::lock(&CAPTURING);
    AREA.target_tid.store(tid, Ordering::Relaxed);
    AREA.stack_low.store(low, Ordering::Relaxed);
    AREA.stack_high.store(high, Ordering::Relaxed);
    AREA.len.store(0, Ordering::Relaxed);
    let number = (AREA.state.load(Ordering::Relaxed) & !PHASE).wrapping_add(PHASE + 1);
    let armed = number | ARMED;
    AREA.state.store(armed, Ordering::Release);
    // SAFETY: tgkill only sends a signal; the target is a thread of this very process.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::c_long::from(tid),
            libc::c_long::from(signal),
        )
    };
    if sent != 0 {
        AREA.state.store(number | IDLE, Ordering::Release);
        return Err(Failed::ThreadGone);
    }
    let started = Instant::now();
    loop {
        match AREA.state.load(Ordering::Acquire) & PHASE {
            DONE => break,
            // Disarm, unless the handler has just begun: then it finishes in a moment.
            ARMED
                if started.elapsed() >= deadline
                    && AREA
                        .state
                        .compare_exchange(armed, number | IDLE, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok() =>
            {
                return Err(Failed::NotAnswered(deadline));
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let len = AREA.len.load(Ordering::Relaxed).min(MAX_FRAMES);
    let addresses = AREA.frames[..len]
        .iter()
        .map(|frame| frame.load(Ordering::Relaxed))
        .collect();
    AREA.state.store(number | IDLE, Ordering::Release);
    Ok(RawStack { addresses })
}

/// The signal handler. Async-signal-safe: atomics, one syscall (`gettid`) and reads of the
/// interrupted thread's own stack, each checked to lie inside it.
extern "C" fn on_signal(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for its lifetime.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above; read and restored so the interrupted code never sees it change.
    let saved_errno = unsafe { *errno };
    let armed = AREA.state.load(Ordering::Acquire);
    let number = armed & !PHASE;
    if armed & PHASE == ARMED
        // SAFETY: gettid has no preconditions.
        && AREA.target_tid.load(Ordering::Relaxed) == unsafe { libc::gettid() }
        && AREA
            .state
            .compare_exchange(armed, number | WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        let len = if context.is_null() {
            0
        } else {
            // SAFETY: for an SA_SIGINFO handler the kernel passes the interrupted context.
            let (pc, fp, sp) = unsafe { interrupted_registers(context) };
            // The handler runs on this same stack, below the interrupted frames: everything
            // from here up to the stack's top is mapped.
            let here = std::ptr::addr_of!(saved_errno) as usize;
            let low = here.max(AREA.stack_low.load(Ordering::Relaxed));
            let high = AREA.stack_high.load(Ordering::Relaxed);
            walk(pc, fp, sp, low, high)
        };
        AREA.len.store(len, Ordering::Relaxed);
        AREA.state.store(number | DONE, Ordering::Release);
    }
    // SAFETY: as above.
    unsafe { *errno = saved_errno };
}

/// The interrupted instruction, frame pointer and stack pointer.
///
/// # Safety
/// `context` must be the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
unsafe fn interrupted_registers(context: *mut libc::c_void) -> (usize, usize, usize) {
    let context = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the caller passes the kernel's context; gregs holds the saved registers.
        let registers = unsafe { &(*context).uc_mcontext.gregs };
        (
            registers[libc::REG_RIP as usize] as usize,
            registers[libc::REG_RBP as usize] as usize,
            registers[libc::REG_RSP as usize] as usize,
        )
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: the caller passes the kernel's context; x29 is the frame pointer.
        let machine = unsafe { &(*context).uc_mcontext };
        (
            machine.pc as usize,
            machine.regs[29] as usize,
            machine.sp as usize,
        )
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = context;
        (0, 0, 0)
    }
}

/// Whether `address` lies in the executable's code.
fn in_text(address: usize) -> bool {
    (TEXT_LOW.load(Ordering::Relaxed)..TEXT_HIGH.load(Ordering::Acquire)).contains(&address)
}

/// Whether `address` is a plausible return address: in the executable's code, right after a
/// call instruction (x86_64: `call rel32`, `call *reg`, `call *disp8(reg)`, `call *disp32`).
fn is_return_address(address: usize) -> bool {
    if !in_text(address) || !in_text(address.wrapping_sub(7)) {
        return false;
    }
    if !cfg!(target_arch = "x86_64") {
        // aarch64: every instruction is 4 bytes; a `bl`/`blr` check would go here.
        return address % 4 == 0;
    }
    // SAFETY: the 7 bytes before `address` lie in the executable's mapped code (checked).
    let byte = |back: usize| unsafe { std::ptr::read_volatile((address - back) as *const u8) };
    let calls_through_modrm = |back: usize| byte(back) == 0xFF && (byte(back - 1) >> 3) & 7 == 2;
    byte(5) == 0xE8 || calls_through_modrm(2) || calls_through_modrm(3) || calls_through_modrm(6)
}

/// Walks the frame-pointer chain into the capture area; returns the number of frames.
///
/// Each frame record is two words, the caller's frame pointer then the return address. A
/// record is read only if it lies wholly in `[low, high)` and is aligned, and the chain must
/// climb strictly, so a frame without a frame pointer (or garbage in the register) ends the
/// walk instead of reading outside the stack.
///
/// When the thread was caught in code outside the executable (a libc call, which keeps no
/// frame pointer), the frame pointer belongs to the Rust function that made the call, and the
/// return address into that function sits on the stack near the stack pointer: it is found by
/// searching a few hundred words for an address just after a call instruction into the
/// executable's code. If the frame pointer itself is not usable (the C code reused the
/// register), the walk resumes from the first plausible frame record above that address.
fn walk(pc: usize, fp: usize, sp: usize, low: usize, high: usize) -> usize {
    let mut len = 0;
    let mut push = |address: usize| {
        if len < MAX_FRAMES {
            AREA.frames[len].store(address, Ordering::Relaxed);
            len += 1;
        }
    };
    push(pc);
    let mut fp = fp;
    if in_text(pc) {
        if let Some(return_address) = return_address_outside_frame(pc, sp, low, high) {
            push(return_address);
        }
    } else {
        let word = std::mem::size_of::<usize>();
        let first = sp.max(low);
        // The return address lies below the caller's frame record, if the register still
        // points at one; C code may have reused it for anything.
        let limit = if fp > first && fp < high { fp } else { high };
        let found = (0..SCAN_WORDS)
            .map(|index| first + index * word)
            .take_while(|slot| slot + word <= limit)
            .find_map(|slot| {
                // SAFETY: the slot lies inside this thread's live stack (below `limit`).
                let value = unsafe { std::ptr::read_volatile(slot as *const usize) };
                is_return_address(value).then_some((slot, value))
            });
        if let Some((slot, return_address)) = found {
            push(return_address);
            if !is_frame_record(fp, slot + word, high) {
                fp = (1..SCAN_WORDS)
                    .map(|index| slot + index * word)
                    .find(|&candidate| is_frame_record(candidate, candidate, high))
                    .unwrap_or(0);
            }
        }
    }
    walk_chain(fp, low, high, &mut push);
    len
}

/// Where a stack word holding the return address sits, relative to the stack pointer, when
/// the interrupted instruction is one of the few at which the function has no frame record
/// of its own (x86_64): `push rbp` or `ret` (the return address is on top of the stack), or
/// the `mov rbp, rsp` right after `push rbp` (it is one word up). `code` is the byte before
/// the instruction, then the instruction's first three bytes.
fn return_slot_outside_frame(code: [u8; 4]) -> Option<usize> {
    match code {
        // push rbp; ret; rep ret
        [_, 0x55 | 0xC3, _, _] | [_, 0xF3, 0xC3, _] => Some(0),
        // push rbp, then mov rbp, rsp
        [0x55, 0x48, 0x89, 0xE5] => Some(std::mem::size_of::<usize>()),
        _ => None,
    }
}

/// The return address into the caller of a function caught in its prologue or epilogue, where
/// the frame pointer still (or again) holds the caller's record: the chain would skip the
/// caller. `None` elsewhere, and on other architectures.
fn return_address_outside_frame(pc: usize, sp: usize, low: usize, high: usize) -> Option<usize> {
    if !cfg!(target_arch = "x86_64") || !in_text(pc.wrapping_sub(1)) || !in_text(pc + 2) {
        return None;
    }
    // SAFETY: [pc - 1, pc + 3) lies in the executable's mapped code (checked).
    let byte = |at: usize| unsafe { std::ptr::read_volatile(at as *const u8) };
    let slot =
        sp + return_slot_outside_frame([byte(pc - 1), byte(pc), byte(pc + 1), byte(pc + 2)])?;
    let word = std::mem::size_of::<usize>();
    if slot < low || slot + word > high {
        return None;
    }
    // SAFETY: the slot lies inside this thread's live stack (checked).
    let value = unsafe { std::ptr::read_volatile(slot as *const usize) };
    is_return_address(value).then_some(value)
}

/// The frame record at `fp`, the caller's frame pointer and the return address, if the
/// record lies wholly in `[low, high)` and is aligned; `None` without reading otherwise.
fn frame_record(fp: usize, low: usize, high: usize) -> Option<(usize, usize)> {
    let word = std::mem::size_of::<usize>();
    if fp < low || fp % word != 0 || fp.checked_add(2 * word).is_none_or(|end| end > high) {
        return None;
    }
    // SAFETY: [fp, fp + 2 words) lies inside this thread's live stack (checked above).
    Some(unsafe {
        (
            std::ptr::read_volatile(fp as *const usize),
            std::ptr::read_volatile((fp + word) as *const usize),
        )
    })
}

/// Whether `fp` (at or above `low`) holds a plausible frame record: inside the stack, its
/// return address just after a call, its saved frame pointer higher up the stack.
fn is_frame_record(fp: usize, low: usize, high: usize) -> bool {
    frame_record(fp, low, high).is_some_and(|(next, return_address)| {
        next > fp && next < high && is_return_address(return_address)
    })
}

/// Follows frame records from `fp`, pushing each return address.
fn walk_chain(mut fp: usize, low: usize, high: usize, push: &mut impl FnMut(usize)) {
    for _ in 1..MAX_FRAMES {
        let Some((next, return_address)) = frame_record(fp, low, high) else {
            return;
        };
        if return_address == 0 {
            return;
        }
        push(return_address);
        if next <= fp {
            return;
        }
        fp = next;
    }
}

/// The return addresses on the calling thread's own stack, innermost first, at most `max`,
/// unresolved: one walk of the unwinder over the unwind tables.
///
/// The `backtrace` crate's `trace` takes a process-wide lock, and its symbolization holds the
/// same lock while it loads debug info (tens of milliseconds the first time): a worker thread
/// walking its stack for a panic would wait for a stall being symbolized elsewhere. This walk
/// takes no lock.
pub(crate) fn own_return_addresses(max: usize) -> Vec<usize> {
    let mut addresses = Vec::with_capacity(max);
    // SAFETY: `trace_unsynchronized` leaves it to the caller to serialize walks with an
    // unwinder that is not thread-safe (Windows' dbghelp). Here the walk is libgcc's
    // `_Unwind_Backtrace`, which many threads may run at once (it is what every Rust panic
    // runs), over the calling thread's own stack, and symbolization shares none of its state.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            addresses.push(frame.ip() as usize);
            addresses.len() < max
        });
    }
    addresses
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Arc, mpsc};

    use super::*;
    use crate::stack::symbols;

    /// A thread that runs `body` until told to stop, and says who it is.
    struct Subject {
        tid: i32,
        stack: Option<(usize, usize)>,
        stop: Arc<AtomicBool>,
        progress: Arc<AtomicU64>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Subject {
        fn start(body: fn(&AtomicBool, &AtomicU64)) -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let progress = Arc::new(AtomicU64::new(0));
            let (sender, receiver) = mpsc::channel();
            let thread = std::thread::spawn({
                let (stop, progress) = (Arc::clone(&stop), Arc::clone(&progress));
                move || {
                    sender
                        .send((crate::os::current_tid(), crate::os::current_thread_stack()))
                        .expect("the test waits for this");
                    body(&stop, &progress);
                }
            });
            let (tid, stack) = receiver.recv().expect("the subject starts");
            // Capture only once the body runs (it counts its first round).
            while progress.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            Self {
                tid,
                stack,
                stop,
                progress,
                thread,
            }
        }

        fn finish(self) -> u64 {
            self.stop.store(true, Ordering::Release);
            self.thread.join().expect("the subject thread survives");
            self.progress.load(Ordering::Acquire)
        }
    }

    #[inline(never)]
    fn sleeping_here(stop: &AtomicBool, progress: &AtomicU64) {
        progress.store(1, Ordering::Release);
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[inline(never)]
    fn spinning_here(stop: &AtomicBool, progress: &AtomicU64) {
        while !stop.load(Ordering::Acquire) {
            progress.fetch_add(1, Ordering::Relaxed);
            std::hint::spin_loop();
        }
    }

    fn captured_functions(subject: &Subject) -> Vec<String> {
        let raw = capture(subject.tid, subject.stack, Duration::from_secs(5)).expect("captured");
        symbols::resolve(&raw)
            .into_iter()
            .map(|frame| frame.function)
            .collect()
    }

    #[test]
    fn a_sleeping_thread_and_a_spinning_one_are_caught_in_their_functions() {
        for (body, name) in [
            (
                sleeping_here as fn(&AtomicBool, &AtomicU64),
                "sleeping_here",
            ),
            (spinning_here, "spinning_here"),
        ] {
            let subject = Subject::start(body);
            let functions = captured_functions(&subject);
            subject.finish();
            assert!(
                functions.iter().any(|function| function.ends_with(name)),
                "{name} is on the captured stack: {functions:#?}"
            );
        }
    }

    /// A leaf so small that a capture often lands on its prologue or epilogue.
    #[inline(never)]
    fn tiny_leaf(progress: &AtomicU64) {
        progress.fetch_add(1, Ordering::Relaxed);
    }

    #[inline(never)]
    fn calling_a_leaf_here(stop: &AtomicBool, progress: &AtomicU64) {
        while !stop.load(Ordering::Acquire) {
            tiny_leaf(progress);
        }
    }

    #[test]
    fn a_thread_caught_entering_or_leaving_a_function_still_shows_its_caller() {
        let subject = Subject::start(calling_a_leaf_here);
        let mut in_leaf = 0;
        for _ in 0..300 {
            let functions = captured_functions(&subject);
            let caller = functions
                .iter()
                .position(|function| function.ends_with("calling_a_leaf_here"));
            assert!(
                caller.is_some(),
                "the caller is on the captured stack: {functions:#?}"
            );
            // Caught in the leaf: the leaf is listed before its caller, wherever it is. What
            // comes first depends on inlining and on the debug info the machine has (an
            // inlined `atomic_add` is listed as a frame of its own above the leaf, and with
            // libc's debug files a frame inside libc may be named).
            in_leaf += usize::from(
                functions[..caller.unwrap_or(0)]
                    .iter()
                    .any(|function| function.ends_with("tiny_leaf")),
            );
        }
        subject.finish();
        // The loop spends most of its time in calls: the leaf itself was caught, so the
        // captures above include the moments the leaf's frame record was not yet (or no
        // longer) in place.
        assert!(in_leaf > 0, "never caught in the leaf");
    }

    #[test]
    fn a_thread_walks_its_own_stack_while_another_holds_the_backtrace_lock() {
        let (holding_tx, holding_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        // `backtrace::trace` holds the crate's lock while its callback runs, as a
        // symbolization loading debug info does.
        let holder = std::thread::spawn(move || {
            let mut once = Some((holding_tx, release_rx));
            backtrace::trace(|_| {
                if let Some((holding, release)) = once.take() {
                    let _ = holding.send(());
                    let _ = release.recv_timeout(Duration::from_secs(30));
                }
                false
            });
        });
        holding_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the holder takes the lock");
        let (walked_tx, walked_rx) = mpsc::channel();
        let walker = std::thread::spawn(move || {
            let _ = walked_tx.send(own_return_addresses(64));
        });
        let walked = walked_rx.recv_timeout(Duration::from_secs(10));
        let _ = release_tx.send(());
        holder.join().expect("the holder ends");
        walker.join().expect("the walker ends");
        let addresses = walked.expect("the walk does not wait for the lock");
        assert!(addresses.len() > 2, "{addresses:x?}");
        assert!(addresses.len() <= 64);
    }

    #[test]
    fn the_instructions_without_a_frame_record_are_recognised() {
        let word = std::mem::size_of::<usize>();
        // push rbp, at a function's entry
        assert_eq!(return_slot_outside_frame([0xCC, 0x55, 0x48, 0x89]), Some(0));
        // ret, and rep ret
        assert_eq!(return_slot_outside_frame([0x5D, 0xC3, 0xCC, 0xCC]), Some(0));
        assert_eq!(return_slot_outside_frame([0x5D, 0xF3, 0xC3, 0xCC]), Some(0));
        // mov rbp, rsp right after push rbp
        assert_eq!(
            return_slot_outside_frame([0x55, 0x48, 0x89, 0xE5]),
            Some(word)
        );
        // mov rbp, rsp elsewhere, and ordinary instructions: the frame record is in place
        assert_eq!(return_slot_outside_frame([0x90, 0x48, 0x89, 0xE5]), None);
        assert_eq!(return_slot_outside_frame([0x55, 0x48, 0x83, 0xEC]), None);
        assert_eq!(return_slot_outside_frame([0x55, 0x5D, 0xC3, 0xCC]), None);
    }

    /// Sleeps with every signal blocked until told to unblock them, then sleeps on: the
    /// stand-in for a thread in uninterruptible sleep, which takes no signal.
    #[inline(never)]
    fn deaf_then_hearing(stop: &AtomicBool, progress: &AtomicU64) {
        // SAFETY: a filled set, applied to this thread's own mask.
        unsafe {
            let mut all = std::mem::zeroed::<libc::sigset_t>();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
        progress.store(1, Ordering::Release);
        while progress.load(Ordering::Acquire) == 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: as above, now unblocking: the pending capture signal is delivered here.
        unsafe {
            let mut all = std::mem::zeroed::<libc::sigset_t>();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &all, std::ptr::null_mut());
        }
        progress.store(3, Ordering::Release);
        sleeping_here(stop, &AtomicU64::new(0));
    }

    #[test]
    fn a_thread_that_takes_no_signal_is_given_up_on_at_the_deadline_and_its_late_handler_is_harmless()
     {
        let subject = Subject::start(deaf_then_hearing);
        let started = Instant::now();
        let deadline = Duration::from_millis(30);
        assert_eq!(
            capture(subject.tid, subject.stack, deadline),
            Err(Failed::NotAnswered(deadline))
        );
        let waited = started.elapsed();
        assert!(
            waited >= deadline && waited < Duration::from_secs(5),
            "gave up after {waited:?}"
        );
        // Let the thread take its pending signal: the handler finds no capture for it.
        subject.progress.store(2, Ordering::Release);
        while subject.progress.load(Ordering::Acquire) != 3 {
            std::thread::yield_now();
        }
        {
            let _no_capture_in_flight = CAPTURING.lock().expect("not poisoned");
            assert_eq!(AREA.state.load(Ordering::Acquire) & PHASE, IDLE);
        }
        // The next capture of the same thread works as usual.
        let functions = captured_functions(&subject);
        subject.finish();
        assert!(
            functions
                .iter()
                .any(|function| function.ends_with("sleeping_here")),
            "{functions:#?}"
        );
    }

    #[test]
    fn a_thread_without_known_stack_bounds_is_not_signalled() {
        assert_eq!(
            capture(crate::os::current_tid(), None, Duration::from_millis(1)),
            Err(Failed::NoStackBounds)
        );
    }

    /// Allocates, frees, panics and unwinds in a loop: the handler must interrupt all of it.
    #[inline(never)]
    fn churning(stop: &AtomicBool, progress: &AtomicU64) {
        let mut round = 0_u64;
        while !stop.load(Ordering::Acquire) {
            round += 1;
            let mut kept: Vec<Vec<u8>> = (0..32).map(|size| vec![0_u8; size * 64]).collect();
            kept.retain(|block| block.len() % 128 == 0);
            let unwound = std::panic::catch_unwind(|| {
                let _dropped_while_unwinding: Vec<u64> = std::iter::repeat_n(round, 16).collect();
                // resume_unwind unwinds without calling the panic hook (no output).
                std::panic::resume_unwind(Box::new(round))
            });
            assert!(unwound.is_err());
            std::hint::black_box(&kept);
            if round % 64 == 0 {
                std::thread::yield_now();
            }
            progress.store(round, Ordering::Release);
        }
    }

    #[test]
    fn thousands_of_captures_of_threads_that_allocate_and_unwind_crash_nothing() {
        let subjects: Vec<Subject> = (0..3)
            .map(|index| Subject::start(if index == 2 { sleeping_here } else { churning }))
            .collect();
        let progress_before: Vec<u64> = subjects
            .iter()
            .map(|subject| subject.progress.load(Ordering::Acquire))
            .collect();
        let mut answered = 0;
        // Per subject: sampled stacks, and those that reach the subject's own loop.
        let mut sampled = [0_u32; 3];
        let mut reached = [0_u32; 3];
        const CAPTURES: usize = 3000;
        for capture_index in 0..CAPTURES {
            let which = capture_index % subjects.len();
            let subject = &subjects[which];
            let Ok(raw) = capture(subject.tid, subject.stack, Duration::from_secs(2)) else {
                continue;
            };
            answered += 1;
            assert!(!raw.addresses.is_empty() && raw.addresses.len() <= MAX_FRAMES);
            // Symbolizing every capture would be slow: sample one in fifty.
            if capture_index % 50 < 3 {
                sampled[which] += 1;
                let name = if which == 2 {
                    "sleeping_here"
                } else {
                    "churning"
                };
                if symbols::resolve(&raw)
                    .iter()
                    .any(|frame| frame.function.ends_with(name))
                {
                    reached[which] += 1;
                }
            }
        }
        let progress_during: Vec<u64> = subjects
            .iter()
            .map(|subject| subject.progress.load(Ordering::Acquire))
            .collect();
        for subject in subjects {
            subject.finish();
        }
        assert_eq!(
            answered, CAPTURES,
            "every capture of a live thread is answered"
        );
        // A thread caught in a syscall wrapper is always walked back to its caller; one
        // caught inside C code that reuses the frame-pointer register (malloc, the unwinder)
        // may not be, so churning threads only have to be reached sometimes.
        assert_eq!(
            reached[2], sampled[2],
            "the sleeping thread is always found in its loop"
        );
        assert!(
            reached[0] + reached[1] > 0,
            "churning stacks reach their loop at least sometimes: {reached:?} of {sampled:?}"
        );
        for index in 0..2 {
            assert!(
                progress_during[index] > progress_before[index],
                "churning thread {index} kept working through the captures: {progress_before:?} then {progress_during:?}"
            );
        }
    }
}
