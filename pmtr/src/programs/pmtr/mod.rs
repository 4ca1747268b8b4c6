//! `pmtr`: its command line, and `pmtr -t` (check the configuration and
//! the machine, then exit); otherwise `daemon::run` takes over.

pub mod check;
pub mod cli;
pub mod preflight;
