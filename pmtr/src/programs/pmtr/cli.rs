//! The command line of `pmtr`, defined once for the parser, `--help`,
//! and the generated man page and shell completions.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

pub const DEFAULT_CONFIG: &str = "/etc/pmtr.conf";

/// Where pmtr serves `pmtr-ctl`, and where `pmtr-ctl` looks for it.
pub const DEFAULT_SOCKET: &str = "/run/pmtr/pmtr.sock";

/// pmtr: starts the jobs listed in one configuration file, keeps them
/// running, and applies edits to the file as soon as they are saved.
#[derive(Debug, Parser)]
#[command(
    name = "pmtr",
    version,
    about,
    long_about = None,
    after_help = "Environment:\n  PMTR_REMOTE_FSTYPES=TYPE,...  more filesystem types (besides network and FUSE ones)\n                                on which a job's start is forked, so that only the job\n                                waits if the filesystem hangs"
)]
pub struct Args {
    /// Configuration file
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Stay in the foreground (implied as PID 1 and with -t)
    #[arg(short = 'F', long = "foreground")]
    pub foreground: bool,

    /// Check the configuration and exit: 0 when valid, 1 when not
    #[arg(short = 't', long = "test")]
    pub test: bool,

    /// More logging; repeatable
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// Write a pidfile (locked while pmtr runs; removed on exit)
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Control socket for pmtr-ctl (mode 0600 in a 0700 directory)
    #[arg(long = "socket", value_name = "PATH", env = "PMTR_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Where jobs are contained: `auto` (a delegated cgroup v2, or pmtr as
    /// PID 1 with a writable one; process groups otherwise), `off`
    /// (process groups only), or a cgroup v2 directory pmtr may manage
    #[arg(
        long = "cgroup",
        value_name = "auto|off|DIR",
        env = "PMTR_CGROUP",
        default_value = "auto"
    )]
    pub cgroup: String,

    /// Check that this pmtr can take over the state in FILE (and read the
    /// configuration), then exit: 0 when it can, 1 with the reason when
    /// not. `pmtr-ctl reexec` runs the new binary so before it execs it
    #[arg(long = "check-state", value_name = "FILE")]
    pub check_state: Option<PathBuf>,

    /// Take over the jobs of the pmtr that exec'd this one (internal: set
    /// by `pmtr-ctl reexec`)
    #[arg(long = "handover", value_name = "FILE", hide = true)]
    pub handover: Option<PathBuf>,

    /// Accepted for compatibility with the original pmtr; has no effect
    #[arg(short = 'I', hide = true)]
    pub echo_to_stderr: bool,
}
