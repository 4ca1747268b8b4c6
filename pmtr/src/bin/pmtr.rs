//! `pmtr`: the supervisor daemon's entry point.

use std::process::ExitCode;

use clap::Parser;
use pmtr::programs::pmtr::{check, cli::Args};

fn main() -> ExitCode {
    let args = Args::parse();
    if args.test {
        let valid = check::run(
            &args.config,
            &args.cgroup,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        );
        return if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Some(state) = &args.check_state {
        return pmtr::daemon::check_state(state, &args.config);
    }
    pmtr::daemon::run(&args)
}
