//! Integration tests of the `openrtc` CLI, in one test binary: rendered text fixtures (insta
//! snapshots), the live view's screens and keys, the built binary run against stand-in worker
//! sockets, the real worker under a real terminal (`live`), and `openrtc logs` on generated
//! log files (`logs`).

mod binary;
mod fixtures;
mod live;
mod logs;
mod render;
mod stand_in_worker;
mod tui_keys;
mod tui_logged;
mod tui_render;
mod tui_tenants;
