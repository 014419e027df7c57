//! The per-tenant and per-agent counters admission reserves places in: live sessions,
//! sessions started and failed, and refusals by reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::RefusalCounters;
use crate::events::EventHub;

/// What one tenant runs and was refused. Created on the tenant's first launch (or when the
/// tenant config names it) and kept for the worker's life, so its figures never go back.
#[derive(Debug, Default)]
pub(crate) struct TenantCounters {
    /// The tenant's name.
    pub(crate) name: Arc<str>,
    /// Its circuit breaker.
    pub(crate) breaker: Mutex<super::tenant_breaker::TenantBreaker>,
    /// Its live sessions and the places reserved for its sessions being launched.
    pub(crate) active: AtomicU32,
    /// Its sessions started.
    pub(crate) started: AtomicU64,
    /// Its sessions that ended as the agent's own failure.
    pub(crate) failed: AtomicU64,
    /// Its refused launches, by reason.
    pub(crate) refused: RefusalCounters,
    /// Inbound audio frames missing from its calls' sequences, since the worker started.
    pub(crate) call_frames_missing: AtomicU64,
    /// Inbound events its calls' sessions were too slow to take (dropped), since the worker
    /// started.
    pub(crate) call_frames_dropped: AtomicU64,
    /// The allocator accounts of its live sessions, by session key: its live heap is theirs.
    members: Mutex<HashMap<u64, u32>>,
    /// The live heap of its isolated sessions, by session key, as their processes last
    /// reported it (every 200 ms): heap in another process, counted as the tenant's all the
    /// same.
    isolated_heap: Mutex<HashMap<u64, u64>>,
    /// The pool's event stream, told of its breaker's changes (`None` in tests of admission
    /// alone).
    pub(crate) events: Option<Arc<EventHub>>,
    /// Its offences, for automatic isolation (cold: a stall, a kill, a panic).
    pub(crate) offences: Mutex<crate::isolation::offences::Record>,
    /// Whether it is moved to process isolation now (read at each launch).
    auto_isolated: std::sync::atomic::AtomicBool,
}

impl TenantCounters {
    /// Whether automatic isolation has moved it to process isolation.
    pub(crate) fn is_auto_isolated(&self) -> bool {
        self.auto_isolated
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn set_auto_isolated(&self, isolated: bool) {
        self.auto_isolated
            .store(isolated, std::sync::atomic::Ordering::Release);
    }

    /// Counts the heap of the session `key`, charged to allocator `account`, as the tenant's.
    pub(crate) fn join(&self, key: u64, account: u32) {
        if account != 0 {
            crate::lock(&self.members).insert(key, account);
        }
    }

    /// The isolated session `key`'s process reported this live heap for it.
    pub(crate) fn note_isolated_heap(&self, key: u64, bytes: u64) {
        crate::lock(&self.isolated_heap).insert(key, bytes);
    }

    /// The session `key` has ended: its heap is no longer the tenant's.
    pub(crate) fn leave(&self, key: u64) {
        crate::lock(&self.members).remove(&key);
        crate::lock(&self.isolated_heap).remove(&key);
    }

    /// The live heap the tenant's live sessions hold, exact with the tracking allocator (0
    /// without it): one atomic read per live session of the tenant, and for its isolated
    /// sessions what their processes last reported.
    pub(crate) fn live_heap(&self) -> u64 {
        let in_worker: u64 = crate::lock(&self.members)
            .values()
            .map(|&account| crate::alloc::accounts::account(account).live_bytes())
            .sum();
        let isolated: u64 = crate::lock(&self.isolated_heap).values().sum();
        in_worker.saturating_add(isolated)
    }
}

/// What one registered agent runs and was refused.
#[derive(Debug, Default)]
pub(crate) struct AgentCounters {
    /// Its live sessions and the places reserved for its sessions being launched.
    pub(crate) active: AtomicU32,
    /// Its refused launches, by reason.
    pub(crate) refused: RefusalCounters,
}

/// Counters with a count of live sessions that a cap is checked against.
pub(crate) trait Occupancy: Send + Sync + 'static {
    /// The live sessions and reserved places.
    fn active(&self) -> &AtomicU32;
}

impl Occupancy for TenantCounters {
    fn active(&self) -> &AtomicU32 {
        &self.active
    }
}

impl Occupancy for AgentCounters {
    fn active(&self) -> &AtomicU32 {
        &self.active
    }
}

/// Reserves a place under `cap` (`None`: no cap, the place is only counted): one atomic
/// `fetch_update`, so concurrent launches never overshoot it. `Err` carries the cap.
pub(crate) fn reserve<T: Occupancy>(counters: &Arc<T>, cap: Option<u32>) -> Result<Place<T>, u32> {
    let cap_or_max = cap.unwrap_or(u32::MAX);
    counters
        .active()
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
            (taken < cap_or_max).then_some(taken + 1)
        })
        .map_err(|_| cap_or_max)?;
    Ok(Place(Some(Arc::clone(counters))))
}

/// A place reserved in a tenant's or agent's count. Dropped, it gives the place back, once:
/// whether a later admission check refused the launch, or the session it was kept for ended.
#[derive(Debug)]
#[must_use = "a place dropped at once gives itself back"]
pub(crate) struct Place<T: Occupancy>(Option<Arc<T>>);

impl<T: Occupancy> Place<T> {
    /// The counters the place is counted in.
    pub(crate) fn counters(&self) -> Option<&Arc<T>> {
        self.0.as_ref()
    }
}

impl<T: Occupancy> Drop for Place<T> {
    fn drop(&mut self) {
        if let Some(counters) = self.0.take() {
            counters.active().fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Every tenant seen, by name. Read-locked on each launch to find the tenant (a write lock
/// only for a tenant's first launch); never touched on the poll path.
#[derive(Debug, Default)]
pub(crate) struct TenantRegistry {
    tenants: RwLock<HashMap<Arc<str>, Arc<TenantCounters>>>,
    /// The pool's event stream, handed to each tenant.
    events: Option<Arc<EventHub>>,
}

impl TenantRegistry {
    /// An empty registry whose tenants report to `events`.
    pub(crate) fn new(events: Arc<EventHub>) -> Self {
        Self {
            tenants: RwLock::default(),
            events: Some(events),
        }
    }

    /// The tenant's counters (its name among them), created on first use.
    pub(crate) fn get_or_create(&self, tenant: &str) -> Arc<TenantCounters> {
        if let Some(counters) = read(&self.tenants).get(tenant) {
            return Arc::clone(counters);
        }
        let mut tenants = write(&self.tenants);
        // Another launch may have created it between the two locks.
        if let Some(counters) = tenants.get(tenant) {
            return Arc::clone(counters);
        }
        let counters = Arc::new(TenantCounters {
            name: tenant.into(),
            events: self.events.clone(),
            ..TenantCounters::default()
        });
        tenants.insert(Arc::clone(&counters.name), Arc::clone(&counters));
        counters
    }

    /// Every tenant's counters, in no particular order.
    pub(crate) fn all(&self) -> Vec<Arc<TenantCounters>> {
        read(&self.tenants).values().cloned().collect()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
