//! `pmtr`: the supervisor daemon's entry point. Maps start-up errors to
//! exit codes; everything after start-up lives in the library.

use std::process::ExitCode;

use clap::Parser;
use pmtr::check;
use pmtr::cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.test {
        let valid = check::run(&args.config, &mut std::io::stdout(), &mut std::io::stderr());
        return if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    eprintln!("pmtr: running jobs is not built yet; use -t to check a configuration");
    ExitCode::FAILURE
}
