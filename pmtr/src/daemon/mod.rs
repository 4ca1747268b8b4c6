//! Running pmtr: the start-up sequence from a parsed command line to the
//! event loop, and the mapping of start-up errors to exit codes. Once the
//! loop runs, pmtr does not exit until it is told to.

pub mod cgroups;
mod checks;
mod control;
pub mod handover;
pub mod log;
mod logfiles;
pub mod looper;
mod metrics;
mod notices;
pub mod notify;
pub mod output;
pub mod pidfile;
mod registry;
mod requests;
mod rings;
mod spawner;
mod test_times;
pub(crate) mod udp;
mod usage;
pub mod watch;

use pmtr_common::reason::Text;
use std::process::ExitCode;

use nix::sys::stat::{umask, Mode};
use nix::unistd::getpid;
use pmtr_core::supervise::event::Level;

use crate::config_file;
use crate::programs::pmtr::cli::Args;
use crate::sys::daemonize::{daemonize, detach_stdio, ensure_stdio_open, Readiness};
use crate::sys::plan::PlanContext;
use crate::sys::{process, signals};
use cgroups::{Choice, Containment};
use handover::{Inherited, StateFile};
use log::Logger;
use looper::Daemon;
use pidfile::Pidfile;

/// Most configuration errors printed when pmtr refuses to start.
const SHOWN_ERRORS: usize = 100;

pub fn run(args: &Args) -> ExitCode {
    let is_init = getpid().as_raw() == 1;
    let foreground = args.foreground || is_init;
    let reading = config_file::load(&args.config);
    let (config_hash, includes) = (reading.hash, reading.includes);
    // By value: a `_` in the pattern would leave the file's text in
    // `reading`, held for as long as pmtr runs.
    let config = match reading.result {
        Ok((config, sources)) => {
            drop(sources);
            config
        }
        Err(error) => {
            if let config_file::LoadError::Invalid { .. } = error {
                eprint!("{}", error.render(SHOWN_ERRORS));
            }
            eprintln!("pmtr: {error}");
            return ExitCode::FAILURE;
        }
    };
    ensure_stdio_open();
    // A reexec's pmtr is the same process: already a daemon if it was one.
    let readiness = if foreground || args.handover.is_some() {
        None
    } else {
        match daemonize() {
            Ok(readiness) => Some(readiness),
            Err(errno) => {
                eprintln!("pmtr: unable to become a daemon: {}", Text(errno));
                return ExitCode::FAILURE;
            }
        }
    };
    // The supervisor keeps its own copy of the jobs: the parsed file is
    // not held for the daemon's life.
    let started = start(args, &config, config_hash, &includes, foreground, is_init);
    drop(config);
    match started {
        Err(message) => {
            match readiness {
                Some(readiness) => readiness.failed(&message),
                None => eprintln!("{message}"),
            }
            ExitCode::FAILURE
        }
        Ok((mut daemon, pidfile)) => {
            if let Some(readiness) = readiness {
                let _ = detach_stdio();
                Readiness::ready(readiness);
            }
            let status = daemon.run();
            drop(daemon);
            drop(pidfile);
            ExitCode::from(status)
        }
    }
}

/// Everything between a valid configuration and a running loop; an error
/// here is reported to whoever started pmtr.
fn start(
    args: &Args,
    config: &pmtr_core::config::Config,
    config_hash: u64,
    includes: &config_file::Includes,
    foreground: bool,
    is_init: bool,
) -> Result<(Daemon, Option<Pidfile>), String> {
    process::close_inherited_on_exec();
    let pidfile = match &args.pidfile {
        Some(path) => Some(Pidfile::create(path).map_err(|e| format!("pmtr: {e}"))?),
        None => None,
    };
    // Jobs' output files are created 0644 whatever umask pmtr was given.
    umask(Mode::from_bits_truncate(0o022));
    let mut logger = Logger::new(foreground, args.verbose);
    let open_files = match process::raise_open_file_limit() {
        Ok(limits) => Some(limits),
        Err(errno) => {
            logger.log(
                Level::Warning,
                &format!("unable to raise the open-file limit: {}", Text(errno)),
            );
            None
        }
    };
    if !is_init {
        if let Err(errno) = process::become_subreaper() {
            logger.log(
                Level::Warning,
                &format!("unable to become the child subreaper: {}", Text(errno)),
            );
        }
    }
    let signals = signals::take_signals()
        .map_err(|e| format!("pmtr: unable to set up signals: {}", Text(e)))?;
    let context = PlanContext::capture(open_files);
    let containment = contain(args, config, is_init, &mut logger);
    let inherited = inherit(args, &mut logger);
    let daemon = Daemon::new(
        config,
        config_hash,
        (&args.config, includes),
        Some(&args.socket),
        signals,
        logger,
        (context, containment, inherited),
    )
    .map_err(|e| format!("pmtr: {e}"))?;
    Ok((daemon, pidfile))
}

/// `pmtr --check-state FILE`: whether this binary can take over the state
/// in FILE and run the configuration — what `pmtr-ctl reexec` asks the new
/// binary before pmtr execs it (SPEC 11.8).
pub fn check_state(path: &std::path::Path, config: &std::path::Path) -> ExitCode {
    let state = match StateFile::read(path) {
        Ok(Some(state)) => state,
        Ok(None) => {
            eprintln!("pmtr: no state file at {}", path.display());
            return ExitCode::FAILURE;
        }
        Err(why) => {
            eprintln!("pmtr: {why}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = config_file::load(config).result {
        eprintln!("pmtr: {error}");
        return ExitCode::FAILURE;
    }
    println!(
        "pmtr: the state of {} jobs can be taken over",
        state.jobs.len()
    );
    ExitCode::SUCCESS
}

/// What the pmtr before this one left (SPEC 11.8): the state a reexec
/// handed over, or the state file of one that died. A file whose owner
/// still runs is another pmtr's, and left alone.
fn inherit(args: &Args, logger: &mut Logger) -> Inherited {
    if let Some(path) = &args.handover {
        return match StateFile::read(path) {
            Ok(Some(state)) => Inherited::Exec(state),
            Ok(None) => Inherited::Nothing,
            Err(why) => {
                logger.log(Level::Error, &format!("reexec: ignoring the state: {why}"));
                Inherited::Nothing
            }
        };
    }
    let path = StateFile::path_beside(&args.socket);
    match StateFile::read(&path) {
        Ok(None) => Inherited::Nothing,
        Ok(Some(state)) if handover::owner_runs(&state) => {
            let message = format!(
                "the state file {} belongs to pmtr [{}], which runs: not taking its jobs over",
                path.display(),
                state.owner
            );
            logger.log(Level::Warning, &message);
            Inherited::Nothing
        }
        Ok(Some(state)) => {
            let message = format!(
                "pmtr [{}] ended without stopping its jobs: taking over those that still run",
                state.owner
            );
            logger.log(Level::Warning, &message);
            Inherited::Crashed(state)
        }
        Err(why) => {
            logger.log(Level::Warning, &format!("ignoring the state file: {why}"));
            Inherited::Nothing
        }
    }
}

/// Enters the cgroup subtree `--cgroup` names, if pmtr may manage one
/// (SPEC 11.7); says how jobs are contained, and which limits will not be
/// applied.
fn contain(
    args: &Args,
    config: &pmtr_core::config::Config,
    is_init: bool,
    logger: &mut Logger,
) -> Option<Containment> {
    let choice = Choice::parse(&args.cgroup);
    let found = cgroups::find(&choice, is_init);
    for warning in cgroups::limit_warnings(&config.jobs, found.as_ref().map_err(String::as_str)) {
        logger.log(Level::Warning, &warning);
    }
    let fallback = "jobs are contained in their process groups";
    let (level, why) = match found.map(Containment::enter) {
        Ok(Ok(containment)) => {
            let message = format!(
                "jobs are contained in cgroups under {}",
                containment.base().display()
            );
            logger.log(Level::Info, &message);
            return Some(containment);
        }
        Ok(Err(why)) => (Level::Warning, why),
        // An explicit directory pmtr cannot use is worth a warning.
        Err(why) if matches!(choice, Choice::Dir(_)) => (Level::Warning, why),
        // As the original: nothing to say by default (`-v` says it).
        Err(why) => (Level::Debug, why),
    };
    logger.log(level, &format!("{fallback}: {why}"));
    None
}
