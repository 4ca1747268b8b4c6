//! The `pmtr` package: the imperative shell around `pmtr-core`. It reads
//! files, checks the machine, and (in later layers) runs the event loop
//! that executes what the core decides.

pub mod check;
pub mod cli;
pub mod config_file;
pub mod ctl;
pub mod ctl_cli;
pub mod daemon;
pub mod keyfile;
pub mod onconnect_cli;
pub mod preflight;
pub mod reason;
pub mod sys;
