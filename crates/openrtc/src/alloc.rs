//! The opt-in tracking global allocator: exact live and peak heap bytes per session.
//!
//! Install it in the binary that runs the pool:
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: openrtc::alloc::TrackingAllocator = openrtc::alloc::TrackingAllocator::system();
//! ```
//!
//! Each block carries a 16-byte header (more for alignments above 16) naming the account it
//! was charged to: the session whose task was being polled on that thread, or the `runtime`
//! bucket outside any session. A free is credited to that owner, whichever thread or session
//! frees it, and after the owner has ended its blocks count in the `ended` bucket. The
//! allocator takes no lock, allocates nothing and cannot panic; a session's counters are
//! touched only by threads polling it (or freeing its blocks), the tracked total and the
//! `runtime` bucket live in per-thread shards.
//!
//! Without it installed, snapshots fall back to an equal share of process RSS and say so
//! (`mem_source: "rss_share"`).
#![allow(unsafe_code)]

pub(crate) mod accounts;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The header in front of every tracked block (its size; alignments above it use more).
const HEADER_BYTES: usize = 16;

/// Whether a tracking allocator has handled an allocation in this process.
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The account charged for allocations on this thread now: 0 outside any session.
    static CURRENT_ACCOUNT: Cell<u32> = const { Cell::new(0) };
}

/// Whether the tracking allocator is this process's global allocator (it has allocated).
pub(crate) fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Makes `account` the one charged on this thread and returns the previous one (the probe
/// calls this around every poll of a session).
#[inline(always)]
pub(crate) fn enter_account(account: u32) -> u32 {
    CURRENT_ACCOUNT.replace(account)
}

/// Restores the account that [`enter_account`] replaced.
#[inline(always)]
pub(crate) fn leave_account(previous: u32) {
    CURRENT_ACCOUNT.set(previous);
}

/// A [`GlobalAlloc`] that wraps another (the system allocator by default, or mimalloc,
/// jemalloc…) and charges every block to the session that allocated it.
#[derive(Debug, Default)]
pub struct TrackingAllocator<A = System> {
    inner: A,
}

impl TrackingAllocator<System> {
    /// The tracking allocator over the system allocator.
    #[must_use]
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> TrackingAllocator<A> {
    /// The tracking allocator over `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

/// Where the user's block starts inside the inner block, and the inner block's layout.
#[inline(always)]
fn outer_layout(layout: Layout) -> Option<(usize, Layout)> {
    let offset = layout.align().max(HEADER_BYTES);
    let size = layout.size().checked_add(offset)?;
    let outer = Layout::from_size_align(size, layout.align()).ok()?;
    Some((offset, outer))
}

/// Charges a new block of `bytes` to this thread's current account and returns its owner tag.
#[inline(always)]
fn charge_new(bytes: u64) -> u32 {
    let owner = CURRENT_ACCOUNT.get();
    accounts::record_thread(bytes, owner == 0);
    if owner != 0 {
        accounts::account(owner).charge(bytes);
    }
    owner
}

/// Credits a freed block of `bytes` to its owner.
#[inline(always)]
fn credit_freed(owner: u32, bytes: u64) {
    accounts::record_thread(bytes.wrapping_neg(), owner == 0);
    if owner != 0 {
        accounts::account(owner).credit(bytes);
    }
}

/// Writes the owner tag just before the user's block.
///
/// # Safety
///
/// `user` must point `HEADER_BYTES` or more bytes into a live block of ours.
#[inline(always)]
unsafe fn write_owner(user: *mut u8, owner: u32) {
    // SAFETY: the caller guarantees the 4 bytes before `user` are inside our block's header;
    // an inner allocator need not align them for a u32, hence the unaligned write.
    unsafe { user.sub(4).cast::<u32>().write_unaligned(owner) }
}

/// Reads the owner tag written by [`write_owner`].
///
/// # Safety
///
/// `user` must be a pointer this allocator returned and has not freed.
#[inline(always)]
unsafe fn read_owner(user: *mut u8) -> u32 {
    // SAFETY: as for `write_owner`: the header precedes every block we hand out.
    unsafe { user.sub(4).cast::<u32>().read_unaligned() }
}

// SAFETY: every method forwards to the inner allocator with a layout that has room for the
// header in front of the user's block and the user's alignment; the pointers handed out are
// `offset` bytes into the inner block, a multiple of the alignment, so they keep it. The
// bookkeeping touches only static atomics and const-initialised thread-locals: it does not
// allocate, lock or panic.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((offset, outer)) = outer_layout(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size (offset ≥ 16) and a valid alignment.
        let base = unsafe { self.inner.alloc(outer) };
        // SAFETY: `base` is null or a block for `outer`, which `offset` leaves room in.
        unsafe { tag_new_block(base, offset, layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some((offset, outer)) = outer_layout(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: as in `alloc`.
        let base = unsafe { self.inner.alloc_zeroed(outer) };
        // SAFETY: as in `alloc`.
        unsafe { tag_new_block(base, offset, layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, user: *mut u8, layout: Layout) {
        let Some((offset, outer)) = outer_layout(layout) else {
            return;
        };
        // SAFETY: `user` came from `alloc` with this layout: the header precedes it.
        let owner = unsafe { read_owner(user) };
        credit_freed(owner, layout.size() as u64);
        // SAFETY: `user - offset` is the inner block `alloc` got for `outer`.
        unsafe { self.inner.dealloc(user.sub(offset), outer) };
    }

    #[inline]
    unsafe fn realloc(&self, user: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some((offset, outer)) = outer_layout(layout) else {
            return std::ptr::null_mut();
        };
        let Some(new_outer_size) = new_size.checked_add(offset) else {
            return std::ptr::null_mut();
        };
        if Layout::from_size_align(new_outer_size, layout.align()).is_err() {
            return std::ptr::null_mut();
        }
        // SAFETY: `user - offset` is the inner block for `outer`; the new size keeps the
        // header and is a valid layout size for this alignment (checked above).
        let base = unsafe { self.inner.realloc(user.sub(offset), outer, new_outer_size) };
        if base.is_null() {
            return base;
        }
        // SAFETY: the inner realloc kept the header bytes; the block still starts `offset`
        // bytes in.
        let moved = unsafe { base.add(offset) };
        // SAFETY: the header was copied with the block.
        let owner = unsafe { read_owner(moved) };
        let (old_bytes, new_bytes) = (layout.size() as u64, new_size as u64);
        accounts::record_thread(new_bytes.wrapping_sub(old_bytes), owner == 0);
        if owner != 0 {
            accounts::account(owner).resize(old_bytes, new_bytes);
        }
        moved
    }
}

/// Charges a block the inner allocator just returned (or passes its null on), writes its
/// owner in its header, and returns the pointer handed to the caller.
///
/// # Safety
///
/// `base` must be null or the start of a live block at least `offset + layout.size()` bytes
/// long, with `offset ≥ HEADER_BYTES` a multiple of `layout.align()`.
#[inline(always)]
unsafe fn tag_new_block(base: *mut u8, offset: usize, layout: Layout) -> *mut u8 {
    if base.is_null() {
        return base;
    }
    // SAFETY: `offset` is inside the block (the caller's contract).
    let user = unsafe { base.add(offset) };
    let owner = charge_new(layout.size() as u64);
    // SAFETY: `user` is `offset ≥ 16` bytes into the block: the header precedes it.
    unsafe { write_owner(user, owner) };
    user
}

/// Notes that the tracking allocator is in use: called once per thread, at its first
/// allocation (see `accounts::shard_index`).
fn mark_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Step {
        Alloc {
            size: usize,
            align_log2: u32,
            zeroed: bool,
        },
        Realloc {
            pick: usize,
            new_size: usize,
        },
        Free {
            pick: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1_usize..70_000, 0_u32..=12, any::<bool>()).prop_map(|(size, align_log2, zeroed)| {
                Step::Alloc {
                    size,
                    align_log2,
                    zeroed,
                }
            }),
            (any::<usize>(), 1_usize..70_000)
                .prop_map(|(pick, new_size)| Step::Realloc { pick, new_size }),
            any::<usize>().prop_map(|pick| Step::Free { pick }),
        ]
    }

    /// A block the test holds: where, its layout, and the byte it is filled with.
    struct Held {
        pointer: *mut u8,
        layout: Layout,
        fill: u8,
    }

    fn fill(held: &Held) {
        // SAFETY: the block is live and `layout.size()` bytes long.
        unsafe { std::ptr::write_bytes(held.pointer, held.fill, held.layout.size()) };
    }

    fn holds_fill(pointer: *mut u8, len: usize, byte: u8) -> bool {
        // SAFETY: the caller passes a live block of at least `len` bytes.
        unsafe { std::slice::from_raw_parts(pointer, len) }
            .iter()
            .all(|&b| b == byte)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_layout_is_served_aligned_intact_and_accounted(steps in prop::collection::vec(step(), 1..48)) {
            let allocator = TrackingAllocator::system();
            let account = accounts::claim(0).expect("a free account");
            let previous = enter_account(account);
            let mut held: Vec<Held> = Vec::new();
            let mut allocations = 0_u64;
            let mut highest = 0_u64;
            for (index, step) in steps.into_iter().enumerate() {
                let byte = (index % 251) as u8 + 1;
                match step {
                    Step::Alloc { size, align_log2, zeroed } => {
                        let layout = Layout::from_size_align(size, 1 << align_log2).expect("valid");
                        // SAFETY: the layout has a non-zero size.
                        let pointer = unsafe {
                            if zeroed { allocator.alloc_zeroed(layout) } else { allocator.alloc(layout) }
                        };
                        prop_assert!(!pointer.is_null());
                        prop_assert_eq!(pointer as usize % layout.align(), 0);
                        if zeroed {
                            prop_assert!(holds_fill(pointer, size, 0));
                        }
                        let block = Held { pointer, layout, fill: byte };
                        fill(&block);
                        held.push(block);
                        allocations += 1;
                    }
                    Step::Realloc { pick, new_size } if !held.is_empty() => {
                        let position = pick % held.len();
                        let block = &mut held[position];
                        let kept = block.layout.size().min(new_size);
                        // SAFETY: the block is live with this layout; the new size is non-zero.
                        let moved = unsafe { allocator.realloc(block.pointer, block.layout, new_size) };
                        prop_assert!(!moved.is_null());
                        prop_assert_eq!(moved as usize % block.layout.align(), 0);
                        prop_assert!(holds_fill(moved, kept, block.fill), "realloc kept the contents");
                        block.pointer = moved;
                        block.layout = Layout::from_size_align(new_size, block.layout.align()).expect("valid");
                        block.fill = byte;
                        fill(block);
                    }
                    Step::Free { pick } if !held.is_empty() => {
                        let block = held.swap_remove(pick % held.len());
                        prop_assert!(holds_fill(block.pointer, block.layout.size(), block.fill));
                        // SAFETY: the block is live with this layout.
                        unsafe { allocator.dealloc(block.pointer, block.layout) };
                    }
                    Step::Realloc { .. } | Step::Free { .. } => {}
                }
                let expected: u64 = held.iter().map(|block| block.layout.size() as u64).sum();
                highest = highest.max(expected);
                let charged = accounts::account(account);
                prop_assert_eq!(charged.live_bytes(), expected);
                prop_assert_eq!(charged.alloc_count(), allocations);
                prop_assert_eq!(charged.peak_bytes(), highest);
            }
            // Blocks freed on another account's watch are still credited to their owner.
            leave_account(previous);
            for block in held.drain(..) {
                // SAFETY: the block is live with this layout.
                unsafe { allocator.dealloc(block.pointer, block.layout) };
            }
            prop_assert_eq!(accounts::account(account).live_bytes(), 0);
            accounts::retire(account, 0, 0);
        }
    }

    #[test]
    fn a_cap_is_one_compare_that_raises_a_flag() {
        let allocator = TrackingAllocator::system();
        let account = accounts::claim(1000).expect("a free account");
        let previous = enter_account(account);
        let small = Layout::from_size_align(600, 8).expect("valid");
        // SAFETY: non-zero layouts; each block is freed with its own layout below.
        let first = unsafe { allocator.alloc(small) };
        assert!(!accounts::account(account).is_over_limit());
        // SAFETY: as above.
        let second = unsafe { allocator.alloc(small) };
        assert!(
            accounts::account(account).is_over_limit(),
            "1200 bytes live over a 1000 cap"
        );
        leave_account(previous);
        // SAFETY: both blocks are live with this layout.
        unsafe {
            allocator.dealloc(first, small);
            allocator.dealloc(second, small);
        }
        assert_eq!(accounts::account(account).live_bytes(), 0);
        accounts::retire(account, 0, 0);
    }

    #[test]
    fn an_account_released_empty_is_free_at_once_and_one_still_charged_is_not() {
        let allocator = TrackingAllocator::system();
        let layout = Layout::from_size_align(64, 8).expect("valid");
        let charged = accounts::claim(0).expect("a free account");
        let previous = enter_account(charged);
        // SAFETY: a non-zero layout; freed with it below.
        let block = unsafe { allocator.alloc(layout) };
        leave_account(previous);
        accounts::release(charged);
        let empty = accounts::claim(0).expect("a free account");
        assert_ne!(empty, charged, "an account still charged is not handed out");
        accounts::release(empty);
        // Other tests claim accounts concurrently: the freed one is reused unless one of
        // them took it first, so look for it among a few claims.
        let claimed: Vec<u32> = (0..8).map_while(|_| accounts::claim(0)).collect();
        assert!(
            claimed.contains(&empty),
            "{empty} is free again: {claimed:?}"
        );
        for account in claimed {
            accounts::release(account);
        }
        // SAFETY: the block is live with this layout.
        unsafe { allocator.dealloc(block, layout) };
        assert_eq!(accounts::account(charged).live_bytes(), 0);
    }
}
