//! `onconnect`: runs a program per TCP connection. See
//! `pmtr::programs::onconnect`.

use std::process::ExitCode;

use clap::Parser;
use pmtr::programs::onconnect::{self, cli::Args};

fn main() -> ExitCode {
    onconnect::run(&Args::parse())
}
