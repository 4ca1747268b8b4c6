//! `pmtr-ctl`: controls a running pmtr. See `pmtr::programs::ctl`.

use std::process::ExitCode;

use clap::Parser;
use pmtr::programs::ctl::{self, cli::CtlArgs};

fn main() -> ExitCode {
    ctl::run(&CtlArgs::parse())
}
