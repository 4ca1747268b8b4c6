//! The command line of `pmtr-ctl`, defined once for the parser, `--help`,
//! the man page and the shell completions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::programs::pmtr::cli::DEFAULT_SOCKET;

/// A duration as the configuration writes it, in milliseconds.
fn duration_millis(text: &str) -> Result<u64, String> {
    pmtr_core::config::duration_millis(text)
}

/// pmtr-ctl: asks a running pmtr for the state of its jobs, enables,
/// disables and restarts them, reloads its configuration and shows job
/// output — through pmtr's local socket, or (`-s HOST`) over UDP to a
/// remote pmtr's `listen on` address. A job defined with `instances N` is
/// named `NAME` (every copy) or `NAME.i` (one copy).
#[derive(Debug, Parser)]
#[command(name = "pmtr-ctl", version, about, long_about = None)]
pub struct CtlArgs {
    /// pmtr's control socket
    #[arg(long, value_name = "PATH", env = "PMTR_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,

    /// Send enable/disable over UDP to the pmtr listening on HOST
    #[arg(short = 's', long = "server", value_name = "HOST")]
    pub server: Option<String>,

    /// UDP port of the remote pmtr (with -s)
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        default_value_t = 10000
    )]
    pub port: u16,

    /// Sign the UDP datagram with this key file (the remote pmtr's `udp key`)
    #[arg(short = 'k', long = "key", value_name = "KEYFILE", requires = "server")]
    pub key: Option<PathBuf>,

    /// Say what is sent
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each job: state, pid, uptime, restarts, last exit
    Status {
        /// Only this job
        name: Option<String>,
        /// Print JSON (stable field names) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Enable jobs until the next reload
    Enable {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Disable (stop) jobs until the next reload
    Disable {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Restart jobs now
    Restart {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Read the configuration file again now
    Reload,
    /// Upgrade pmtr under its running jobs: exec the binary now at pmtr's
    /// path, which takes the jobs over (same pids, output, timers)
    Reexec,
    /// Wait until every job named is ready (exit 0); exit 1 when one fails
    /// to become ready or the timeout passes
    Wait {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Give up after this long (`500ms`, `30s`, `5m`); without it,
        /// wait as long as it takes
        #[arg(long, value_name = "DURATION", value_parser = duration_millis)]
        timeout: Option<u64>,
    },
    /// Show a job's captured output (its `syslog` streams)
    Logs {
        name: String,
        /// How many of the last lines
        #[arg(short = 'n', long = "lines", default_value_t = 10)]
        lines: usize,
        /// Keep printing new lines until interrupted
        #[arg(short = 'f', long = "follow")]
        follow: bool,
    },
}
