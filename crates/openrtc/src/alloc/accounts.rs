//! The memory accounts the tracking allocator charges: one per session, plus per-thread shards
//! for the tracked total and the `runtime` bucket.
//!
//! Everything the allocator touches is a static table of atomics: no allocation, no lock. The
//! bookkeeping around it (claiming an account for a new session, recycling an ended one) runs
//! outside the allocator and may lock.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Session accounts in the static table (index 0 is never handed out: it means "no session").
pub(crate) const MAX_ACCOUNTS: usize = 1 << 16;

/// Per-thread shards of the tracked total and the `runtime` bucket. A thread takes a free shard
/// on its first allocation and gives it back when it exits; threads past this many live at
/// once share the last shard, which takes atomic read-modify-writes.
const THREAD_SHARDS: usize = 1024;

/// The shared overflow shard.
const OVERFLOW_SHARD: usize = THREAD_SHARDS - 1;

const FREE: u8 = 0;
const ACTIVE: u8 = 1;
const RETIRED: u8 = 2;
/// An account that is no session's: a pool's prewarm (its shared state), counted in the
/// `runtime` bucket by snapshots.
const SHARED: u8 = 3;

/// One session's memory account.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Account {
    live_bytes: AtomicU64,
    peak_bytes: AtomicU64,
    alloc_count: AtomicU64,
    limit_bytes: AtomicU64,
    over_limit: AtomicBool,
    state: AtomicU8,
}

impl Account {
    const fn new() -> Self {
        Self {
            live_bytes: AtomicU64::new(0),
            peak_bytes: AtomicU64::new(0),
            alloc_count: AtomicU64::new(0),
            limit_bytes: AtomicU64::new(0),
            over_limit: AtomicBool::new(false),
            state: AtomicU8::new(FREE),
        }
    }

    /// Charges an allocation of `bytes`; one compare checks the cap.
    #[inline(always)]
    pub(crate) fn charge(&self, bytes: u64) {
        self.alloc_count.fetch_add(1, Ordering::Relaxed);
        self.grow(bytes);
    }

    /// Adds `bytes` to the live bytes, raising the peak and the over-limit flag as needed.
    #[inline(always)]
    fn grow(&self, bytes: u64) {
        let live = self
            .live_bytes
            .fetch_add(bytes, Ordering::Relaxed)
            .wrapping_add(bytes);
        if live > self.peak_bytes.load(Ordering::Relaxed) {
            self.peak_bytes.fetch_max(live, Ordering::Relaxed);
        }
        let limit = self.limit_bytes.load(Ordering::Relaxed);
        if limit != 0 && live > limit {
            self.over_limit.store(true, Ordering::Relaxed);
        }
    }

    /// Credits a free of `bytes`.
    #[inline(always)]
    pub(crate) fn credit(&self, bytes: u64) {
        self.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Charges (positive) or credits (negative) a reallocation's change of size.
    #[inline(always)]
    pub(crate) fn resize(&self, old_bytes: u64, new_bytes: u64) {
        if new_bytes >= old_bytes {
            self.grow(new_bytes - old_bytes);
        } else {
            self.credit(old_bytes - new_bytes);
        }
    }

    pub(crate) fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn peak_bytes(&self) -> u64 {
        self.peak_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn alloc_count(&self) -> u64 {
        self.alloc_count.load(Ordering::Relaxed)
    }

    /// Whether an allocation took the account over its cap.
    #[inline(always)]
    pub(crate) fn is_over_limit(&self) -> bool {
        self.over_limit.load(Ordering::Relaxed)
    }

    pub(crate) fn limit_bytes(&self) -> u64 {
        self.limit_bytes.load(Ordering::Relaxed)
    }
}

/// A per-thread shard: the tracked total and the `runtime` bucket, as the thread saw them.
/// Written by one thread only (but the shared overflow shard), read by snapshots.
#[derive(Debug)]
#[repr(align(64))]
struct ThreadShard {
    total_bytes: AtomicU64,
    runtime_bytes: AtomicU64,
}

impl ThreadShard {
    const fn new() -> Self {
        Self {
            total_bytes: AtomicU64::new(0),
            runtime_bytes: AtomicU64::new(0),
        }
    }
}

static ACCOUNTS: [Account; MAX_ACCOUNTS] = [const { Account::new() }; MAX_ACCOUNTS];
static SHARDS: [ThreadShard; THREAD_SHARDS] = [const { ThreadShard::new() }; THREAD_SHARDS];
/// Which shards are taken: one bit per shard (the overflow shard is never taken).
static SHARDS_TAKEN: [AtomicU64; THREAD_SHARDS / 64] =
    [const { AtomicU64::new(0) }; THREAD_SHARDS / 64];
/// One past the highest account index ever handed out.
static HIGH_WATER: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// This thread's shard index plus one (0: not assigned yet). No destructor: it stays
    /// readable while the thread's other thread-locals are torn down.
    static SHARD: Cell<u32> = const { Cell::new(0) };
    /// Gives the shard back when the thread exits.
    static SHARD_RELEASE: ShardRelease = const { ShardRelease };
}

/// Returns this thread's shard to the pool when the thread exits.
struct ShardRelease;

impl Drop for ShardRelease {
    fn drop(&mut self) {
        let assigned = SHARD.get();
        // Anything the exiting thread still allocates or frees goes to the shared shard.
        SHARD.set(OVERFLOW_SHARD as u32 + 1);
        if assigned != 0 && assigned as usize - 1 != OVERFLOW_SHARD {
            let index = assigned as usize - 1;
            SHARDS_TAKEN[index / 64].fetch_and(!(1 << (index % 64)), Ordering::Release);
        }
    }
}

/// Takes a free shard (lock-free: a compare-and-swap on a bitmap), or the overflow shard.
#[cold]
fn take_shard() -> usize {
    for (word_index, word) in SHARDS_TAKEN.iter().enumerate() {
        let mut taken = word.load(Ordering::Relaxed);
        while taken != u64::MAX {
            let bit = (!taken).trailing_zeros() as usize;
            let index = word_index * 64 + bit;
            if index == OVERFLOW_SHARD {
                break;
            }
            match word.compare_exchange_weak(
                taken,
                taken | (1 << bit),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return index,
                Err(actual) => taken = actual,
            }
        }
    }
    OVERFLOW_SHARD
}

/// The account at `index` (index 0 and out-of-range indexes are never charged: see callers).
#[inline(always)]
pub(crate) fn account(index: u32) -> &'static Account {
    &ACCOUNTS[(index as usize) & (MAX_ACCOUNTS - 1)]
}

#[inline(always)]
fn shard_index() -> usize {
    let assigned = SHARD.get();
    if assigned != 0 {
        return assigned as usize - 1;
    }
    // A thread's first allocation through the tracking allocator: it is installed.
    super::mark_installed();
    let index = take_shard();
    SHARD.set(index as u32 + 1);
    // Registers the release for when the thread exits. glibc keeps the list of thread-local
    // destructors with its own malloc, so this does not re-enter the tracking allocator. If
    // the thread is already tearing down, the shard is simply kept.
    let _ = SHARD_RELEASE.try_with(|_| ());
    index
}

/// Adds a signed change to a shard counter: a plain load and store on a thread's own shard,
/// an atomic add on the shared overflow shard.
#[inline(always)]
fn add_to(counter: &AtomicU64, index: usize, delta: u64) {
    if index == OVERFLOW_SHARD {
        counter.fetch_add(delta, Ordering::Relaxed);
    } else {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    }
}

/// Records `delta` (wrapping: a free is the negation) in this thread's tracked total, and in
/// its `runtime` bucket when `runtime` is set.
#[inline(always)]
pub(crate) fn record_thread(delta: u64, runtime: bool) {
    let index = shard_index();
    let shard = &SHARDS[index];
    add_to(&shard.total_bytes, index, delta);
    if runtime {
        add_to(&shard.runtime_bytes, index, delta);
    }
}

/// The tracked total (every live block the allocator handed out) and the `runtime` bucket
/// (live bytes allocated outside any session), read in one pass over the thread shards so
/// that a thread's own allocations in between change both alike.
pub(crate) fn tracked_and_runtime_bytes() -> (u64, u64) {
    SHARDS
        .iter()
        .fold((0_u64, 0_u64), |(total, runtime), shard| {
            (
                total.wrapping_add(shard.total_bytes.load(Ordering::Relaxed)),
                runtime.wrapping_add(shard.runtime_bytes.load(Ordering::Relaxed)),
            )
        })
}

/// The live bytes of accounts that are no live session's, in one pass over the accounts: the
/// `ended` bucket (sessions that have ended and still own blocks) and the `shared` accounts
/// (every pool's prewarm), which snapshots count in the `runtime` bucket though the allocator
/// charges them to their account rather than to a thread shard.
pub(crate) fn ended_and_shared_bytes() -> (u64, u64) {
    let high_water = HIGH_WATER.load(Ordering::Acquire) as usize;
    ACCOUNTS[1..high_water.min(MAX_ACCOUNTS)].iter().fold(
        (0_u64, 0_u64),
        |(ended, shared), account| match account.state.load(Ordering::Acquire) {
            RETIRED => (ended.wrapping_add(account.live_bytes()), shared),
            SHARED => (ended, shared.wrapping_add(account.live_bytes())),
            _ => (ended, shared),
        },
    )
}

/// How long a retired account waits before it may be recycled, on top of holding nothing and
/// no poll of its session running: a poll that read the account just before the session
/// ended has long published itself in its worker's poll slot by then.
pub(crate) const RECYCLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A retired account, the session it belonged to, and since when.
struct Retired {
    index: u32,
    pool_id: u64,
    session_key: u64,
    since: std::time::Instant,
}

/// The accounts handed out and not recycled yet, outside the allocator.
struct Book {
    free: Vec<u32>,
    retired: Vec<Retired>,
}

static BOOK: Mutex<Book> = Mutex::new(Book {
    free: Vec::new(),
    retired: Vec::new(),
});

/// Hands out a fresh account with the given cap (0: none). `None` when every account is in
/// use: the session is then charged to the `runtime` bucket.
pub(crate) fn claim(limit_bytes: u64) -> Option<u32> {
    let mut book = crate::lock(&BOOK);
    let index = match book.free.pop() {
        Some(index) => index,
        None => {
            let index = HIGH_WATER.load(Ordering::Acquire);
            if index as usize >= MAX_ACCOUNTS {
                return None;
            }
            HIGH_WATER.store(index + 1, Ordering::Release);
            index
        }
    };
    let account = account(index);
    account.live_bytes.store(0, Ordering::Relaxed);
    account.peak_bytes.store(0, Ordering::Relaxed);
    account.alloc_count.store(0, Ordering::Relaxed);
    account.limit_bytes.store(limit_bytes, Ordering::Relaxed);
    account.over_limit.store(false, Ordering::Relaxed);
    account.state.store(ACTIVE, Ordering::Release);
    Some(index)
}

/// Hands out a fresh account for a pool's shared state (no cap). `None` when every account is
/// in use. Give it back with [`release`] once nothing is charged to it any more.
pub(crate) fn claim_shared() -> Option<u32> {
    let index = claim(0)?;
    account(index).state.store(SHARED, Ordering::Release);
    Some(index)
}

/// Marks an ended session's account retired: what it still holds counts in the `ended` bucket,
/// and frees of its blocks keep crediting it.
pub(crate) fn retire(index: u32, pool_id: u64, session_key: u64) {
    account(index).state.store(RETIRED, Ordering::Release);
    crate::lock(&BOOK).retired.push(Retired {
        index,
        pool_id,
        session_key,
        since: std::time::Instant::now(),
    });
}

/// Frees an account at once if it holds nothing, else retires it as usual (`pool_id` 0): for a
/// caller whose charging is over, so no thread can still enter it (a pool's prewarm account
/// when the pool is dropped; tests and the benchmarks' entry points).
pub(crate) fn release(index: u32) {
    if account(index).live_bytes() != 0 {
        retire(index, 0, 0);
        return;
    }
    account(index).state.store(FREE, Ordering::Release);
    crate::lock(&BOOK).free.push(index);
}

/// Returns to the free list the retired accounts of pool `pool_id` that hold nothing, were
/// retired at least [`RECYCLE_GRACE`] ago, and whose session `is_polled` says no thread of
/// that pool is polling now.
pub(crate) fn recycle(pool_id: u64, mut is_polled: impl FnMut(u64) -> bool) {
    let mut book = crate::lock(&BOOK);
    let mut position = 0;
    while position < book.retired.len() {
        let retired = &book.retired[position];
        let index = retired.index;
        if retired.pool_id == pool_id
            && account(index).live_bytes() == 0
            && retired.since.elapsed() >= RECYCLE_GRACE
            && !is_polled(retired.session_key)
        {
            book.retired.swap_remove(position);
            account(index).state.store(FREE, Ordering::Release);
            book.free.push(index);
        } else {
            position += 1;
        }
    }
}
