//! Integration tests of the runtime: real pools, real threads, real sockets, and the tracking
//! allocator as the global allocator (as a worker binary would install it).

#[global_allocator]
static ALLOCATOR: openrtc::alloc::TrackingAllocator = openrtc::alloc::TrackingAllocator::system();

mod calls;
mod drain_log;
mod events;
mod failure_budget;
mod handles;
mod http;
mod isolation;
mod lifecycle;
mod livekit;
mod livekit_server;
mod media;
mod memory;
mod prewarm;
mod socket;
mod support;
mod telemetry;
mod tenant_limits;
mod tenants;
mod timing;
