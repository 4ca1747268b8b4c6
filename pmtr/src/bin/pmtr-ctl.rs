//! `pmtr-ctl`: controls a running pmtr. See `pmtr::ctl`.

use std::process::ExitCode;

use clap::Parser;
use pmtr::ctl_cli::CtlArgs;

fn main() -> ExitCode {
    pmtr::ctl::run(&CtlArgs::parse())
}
