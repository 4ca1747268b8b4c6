//! The `pmtr` package: the imperative shell around `pmtr-core` — the
//! programs' front ends (`programs/`), the daemon's event loop and its
//! parts (`daemon/`), and the thin syscall layer (`sys/`, the only place
//! with `unsafe`).

pub mod config_file;
pub mod daemon;
pub mod programs;
pub mod sys;
