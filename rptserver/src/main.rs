//! `pmtr-rptserver`: collects the status reports of many pmtr hosts. Keeps
//! the status file of the original collector (`-f`), and with `--http`
//! serves a live web page of the fleet, `/status.json` and `/metrics`.

use std::net::UdpSocket;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use pmtr_common::clock::local_time_text;
use pmtr_common::reason::Reason;
use pmtr_core::proto::auth::{self, Key, Kind, ReplayGuard};
use pmtr_core::proto::report;

use pmtr_rptserver::cli::Args;
use pmtr_rptserver::fleet::{Fleet, Limits, Taken};
use pmtr_rptserver::{server, web};

/// How often the status file may be rewritten.
const FILE_EVERY: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = Args::parse();
    let key = match &args.key {
        None => None,
        Some(path) => match pmtr_common::keyfile::load(path) {
            Ok(key) => Some(key),
            Err(reason) => {
                eprintln!("pmtr-rptserver: key {}: {reason}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let socket = match UdpSocket::bind((args.address, args.port)) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!(
                "pmtr-rptserver: unable to listen on UDP {}:{}: {}",
                args.address,
                args.port,
                Reason(&error)
            );
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let first_generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let limits = Limits {
        max_hosts: args.max_hosts,
        max_jobs: args.max_jobs,
    };
    let fleet = Arc::new(Mutex::new(
        Fleet::starting_at(first_generation).with_limits(limits),
    ));
    if let Some(address) = &args.http {
        let options = web::Options {
            metrics_jobs: args.metrics_jobs,
        };
        if let Err(message) = server::serve(address, Arc::clone(&fleet), started, options) {
            eprintln!("pmtr-rptserver: {message}");
            return ExitCode::FAILURE;
        }
    }
    run(&args, &socket, key.as_ref(), &fleet, started)
}

fn run(
    args: &Args,
    socket: &UdpSocket,
    key: Option<&Key>,
    fleet: &Mutex<Fleet>,
    started: Instant,
) -> ExitCode {
    let mut buffer = vec![0u8; 65_536];
    let mut last_write: Option<Instant> = None;
    let mut dirty = true;
    // The generation in the status file: the web thread may settle the
    // fleet (forget a host) between two rewrites.
    let mut written = 0;
    let mut replays = ReplayGuard::default();
    let mut drops = DropLog::default();
    loop {
        let wait = last_write
            .map_or(FILE_EVERY, |t| FILE_EVERY.saturating_sub(t.elapsed()))
            .max(Duration::from_millis(10));
        let _ = socket.set_read_timeout(Some(wait));
        let received = socket.recv_from(&mut buffer);
        let now = started.elapsed().as_secs_f64();
        if let Ok((n, from)) = received {
            let outcome = accept(&buffer[..n], key, &mut replays);
            let Ok(mut fleet) = fleet.lock() else {
                return ExitCode::FAILURE;
            };
            match outcome {
                Ok(report) => {
                    if args.verbose {
                        eprintln!(
                            "pmtr-rptserver: report from {} ({from}): {} jobs",
                            report.host,
                            report.jobs.len()
                        );
                    }
                    fleet.received += 1;
                    if fleet.record(report, &from.to_string(), now) != Taken::Dropped {
                        dirty = true;
                    }
                    drops.note(&fleet, args);
                }
                Err(reason) => {
                    fleet.refused += 1;
                    if args.verbose {
                        eprintln!("pmtr-rptserver: refused a datagram from {from}: {reason}");
                    }
                }
            }
        }
        if last_write.is_none_or(|t| t.elapsed() >= FILE_EVERY) {
            let Ok(mut fleet) = fleet.lock() else {
                return ExitCode::FAILURE;
            };
            dirty |= fleet.settle(now) || fleet.generation() != written;
            written = fleet.generation();
            if dirty {
                let text = fleet.status_file(now, &local_time_text(unix_now() as i64));
                drop(fleet);
                if let Err(error) = write_atomically(&args.file, &text) {
                    eprintln!(
                        "pmtr-rptserver: unable to write {}: {}",
                        args.file.display(),
                        Reason(&error)
                    );
                }
                dirty = false;
            }
            last_write = Some(Instant::now());
        }
    }
}

/// A report from a datagram: verified first when there is a key.
fn accept<'a>(
    datagram: &'a [u8],
    key: Option<&Key>,
    replays: &mut ReplayGuard,
) -> Result<report::Report, String> {
    let payload: &'a [u8] = match key {
        None if auth::is_signed(datagram) => {
            // Signed, but this collector has no key: read it anyway.
            datagram
                .iter()
                .position(|&b| b == b'\n')
                .map_or(datagram, |i| &datagram[i + 1..])
        }
        None => datagram,
        Some(key) => {
            let verified = auth::verify(key, Kind::Report, datagram).map_err(|r| r.to_string())?;
            // Stale, from the future, or seen before: refused.
            replays
                .admit(&verified, unix_now())
                .map_err(|r| r.to_string())?;
            verified.payload
        }
    };
    report::decode(payload).map_err(|e| e.to_string())
}

/// Says what the limits dropped, at most once every 10 s: a flood of
/// reports must not become a flood of log lines.
#[derive(Default)]
struct DropLog {
    logged_at: Option<Instant>,
    reports: u64,
    jobs: u64,
}

impl DropLog {
    fn note(&mut self, fleet: &Fleet, args: &Args) {
        let (reports, jobs) = (fleet.reports_dropped, fleet.jobs_dropped);
        if (reports, jobs) == (self.reports, self.jobs)
            || self.logged_at.is_some_and(|t| t.elapsed() < FILE_EVERY)
        {
            return;
        }
        eprintln!(
            "pmtr-rptserver: dropped {} reports of new hosts (--max-hosts {}) and {} jobs (--max-jobs {}) since the last such line",
            reports - self.reports,
            args.max_hosts,
            jobs - self.jobs,
            args.max_jobs
        );
        (self.reports, self.jobs) = (reports, jobs);
        self.logged_at = Some(Instant::now());
    }
}

/// Writes `path` whole or not at all, through a temporary of this
/// collector's (`files::replace` never writes through a planted link).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    pmtr_common::files::replace(path, &temporary, text.as_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
