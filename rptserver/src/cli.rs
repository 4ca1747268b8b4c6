//! The command line of `pmtr-rptserver`, defined once for the parser,
//! `--help` and the man page.

use std::path::PathBuf;

use clap::Parser;

use crate::metrics::MetricsJobs;

/// pmtr-rptserver: collects pmtr status reports into a status file, and
/// optionally a live web page, JSON and Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "pmtr-rptserver", version, about, long_about = None)]
pub struct Args {
    /// UDP port to receive reports on
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: u16,
    /// Address to receive reports on (default: all)
    #[arg(
        short = 'a',
        long = "address",
        value_name = "ADDR",
        default_value = "0.0.0.0"
    )]
    pub address: std::net::IpAddr,
    /// Status file, rewritten at most every 10 s
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Log each report received
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Accept only reports signed with this key (pmtr's `udp key`)
    #[arg(short = 'k', long = "key", value_name = "KEYFILE")]
    pub key: Option<PathBuf>,
    /// Serve the web page, /status.json and /metrics on ADDR:PORT
    #[arg(long = "http", value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Which jobs have series of their own in /metrics: all (three series
    /// per job), or problems (only jobs not up, for very large fleets)
    #[arg(long = "metrics-jobs", value_name = "WHICH", value_enum, default_value_t = MetricsJobs::All)]
    pub metrics_jobs: MetricsJobs,
    /// Hosts kept; reports from more are dropped (and counted)
    #[arg(long = "max-hosts", value_name = "N", default_value_t = 20_000)]
    pub max_hosts: usize,
    /// Jobs kept, in all hosts; more are dropped (and counted)
    #[arg(long = "max-jobs", value_name = "N", default_value_t = 200_000)]
    pub max_jobs: usize,
}
