//! Integration tests of the `openrtc` CLI, in one test binary: rendered text fixtures (insta
//! snapshots), the live view's screens and keys, the built binary run against stand-in worker
//! sockets, the real worker under a real terminal (`live`), `openrtc logs` on generated log
//! files (`logs`), and `openrtc health` against the demo worker's HTTP endpoint and stand-in
//! HTTP servers (`health`), and `openrtc stress` against the demo worker's media WebSocket
//! (`stress`).

mod binary;
mod fixtures;
mod health;
mod live;
mod logs;
mod render;
mod stand_in_worker;
mod stress;
mod tui_keys;
mod tui_logged;
mod tui_render;
mod tui_tenants;
