//! The demo worker as a real process: its leaky agent meets its memory cap, and its memory
//! limit drains and exits it with the documented code.

mod live;
