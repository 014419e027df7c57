//! The tenant heap budget: while a tenant's live sessions together hold more live heap than
//! its `max_heap_mb`, its new sessions are refused (running ones are untouched).

use crate::Rejected;

use super::Limits;

/// Refuses when the tenant has a budget and its sessions hold more than it. The live heap is
/// figured only for a tenant with a budget.
pub(super) fn check(tenant: &str, limits: &dyn Limits) -> Result<(), Rejected> {
    let Some(budget_bytes) = limits.tenant_heap_budget() else {
        return Ok(());
    };
    let live_bytes = limits.tenant_live_heap();
    if live_bytes > budget_bytes {
        return Err(Rejected::TenantHeap {
            tenant: tenant.to_owned(),
            live_bytes,
            budget_bytes,
        });
    }
    Ok(())
}
