//! pmtr-core: the pure core of pmtr. It owns the meaning of things — the
//! configuration language, supervision decisions, wire formats — and never
//! makes a syscall or reads a clock; the `pmtr` package does that.
#![forbid(unsafe_code)]

pub mod config;
pub mod metrics;
pub mod proto;
pub mod resources;
pub mod status;
pub mod supervise;
pub mod time;
