//! `pmtr-ctl`: sends one request to pmtr and shows the answer. Locally it
//! speaks the protocol of `pmtr_core::proto::local` over pmtr's socket;
//! with `-s HOST` it sends the original UDP control datagram.
//!
//! Exit status: 0 done, 1 refused (unknown job, bad request, not
//! allowed), 2 pmtr could not be reached.

pub mod cli;

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use pmtr_core::proto::auth::Kind;
use pmtr_core::proto::local::{Request, Response};
use pmtr_core::status::{duration_text, JobStatus, State};

use cli::{Command, CtlArgs};
use pmtr_common::reason::Reason;

const REFUSED: u8 = 1;
const UNREACHABLE: u8 = 2;
/// How long to wait for pmtr's answer (but for `logs --follow` and
/// `wait`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: &CtlArgs) -> ExitCode {
    if let Some(server) = &args.server {
        return remote(args, server);
    }
    let request = match &args.command {
        Command::Status { name, .. } => Request::Status { job: name.clone() },
        Command::Enable { names } => Request::Enable {
            jobs: names.clone(),
        },
        Command::Disable { names } => Request::Disable {
            jobs: names.clone(),
        },
        Command::Restart { names } => Request::Restart {
            jobs: names.clone(),
        },
        Command::Reload => Request::Reload,
        Command::Reexec => Request::Reexec,
        Command::Wait { names, timeout } => Request::Wait {
            jobs: names.clone(),
            timeout_millis: *timeout,
        },
        Command::Logs {
            name,
            lines,
            follow,
        } => Request::Logs {
            job: name.clone(),
            lines: *lines,
            follow: *follow,
        },
    };
    let json = matches!(args.command, Command::Status { json: true, .. });
    let mut stream = match UnixStream::connect(&args.socket) {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!(
                "pmtr-ctl: cannot reach pmtr at {}: {} (is pmtr running? see --socket)",
                args.socket.display(),
                Reason(&error)
            );
            return ExitCode::from(UNREACHABLE);
        }
    };
    // Only a pmtr of root or of this user is told anything: a socket put
    // at the path by someone else would read the request and could answer
    // as it liked.
    let me = nix::unistd::geteuid().as_raw();
    match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(peer) if peer.uid() == 0 || peer.uid() == me => {}
        Ok(peer) => {
            eprintln!(
                "pmtr-ctl: {} is served by uid {}, neither root nor you: not talking to it",
                args.socket.display(),
                peer.uid()
            );
            return ExitCode::from(UNREACHABLE);
        }
        Err(errno) => {
            eprintln!(
                "pmtr-ctl: cannot tell who serves {}: {errno}",
                args.socket.display()
            );
            return ExitCode::from(UNREACHABLE);
        }
    }
    if args.verbose {
        eprint!("pmtr-ctl: sending {}", request.encode());
    }
    // pmtr may answer (a refusal) and close before reading the request:
    // read its answer before reporting a failed send.
    let sent = stream.write_all(request.encode().as_bytes());
    let answer_timeout = match args.command {
        Command::Logs { follow: true, .. } | Command::Wait { timeout: None, .. } => None,
        // pmtr answers at the timeout; the margin is for a pmtr that hangs.
        Command::Wait {
            timeout: Some(millis),
            ..
        } => Some(Duration::from_millis(millis) + ANSWER_TIMEOUT),
        _ => Some(ANSWER_TIMEOUT),
    };
    let _ = stream.set_read_timeout(answer_timeout);
    let mut answered = false;
    let mut refused = false;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stream).lines() {
        let line = match line {
            Ok(line) => line,
            Err(_) if answered => break,
            Err(error) => {
                eprintln!("pmtr-ctl: reading pmtr's answer: {}", Reason(&error));
                return ExitCode::from(UNREACHABLE);
            }
        };
        answered = true;
        match Response::decode(&line) {
            Err(error) => {
                eprintln!("pmtr-ctl: unreadable answer from pmtr: {error}");
                return ExitCode::from(UNREACHABLE);
            }
            Ok(Response::Error { message }) => {
                eprintln!("pmtr-ctl: {message}");
                refused = true;
            }
            Ok(Response::Status { jobs }) => {
                let shown = if json {
                    serde_json::to_string_pretty(&jobs)
                        .map(|s| s + "\n")
                        .unwrap_or_default()
                } else {
                    table(&jobs, std::io::stdout().is_terminal())
                };
                let _ = out.write_all(shown.as_bytes());
            }
            Ok(Response::Done { results }) => {
                for result in results {
                    let text = if result.job.is_empty() {
                        result.message
                    } else {
                        format!("{}: {}", result.job, result.message)
                    };
                    if result.ok {
                        let _ = writeln!(out, "{text}");
                    } else {
                        eprintln!("pmtr-ctl: {text}");
                        refused = true;
                    }
                }
            }
            Ok(Response::Line { line, .. }) => {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }
    if !answered {
        match sent {
            Err(error) => eprintln!("pmtr-ctl: cannot send to pmtr: {}", Reason(&error)),
            Ok(()) => eprintln!("pmtr-ctl: pmtr closed the connection without an answer"),
        }
        return ExitCode::from(UNREACHABLE);
    }
    if refused {
        ExitCode::from(REFUSED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The original remote control: `enable NAME...` or `disable NAME...` in
/// one UDP datagram to the pmtr listening on HOST:PORT.
fn remote(args: &CtlArgs, server: &str) -> ExitCode {
    let (verb, names) = match &args.command {
        Command::Enable { names } => ("enable", names),
        Command::Disable { names } => ("disable", names),
        _ => {
            eprintln!("pmtr-ctl: only enable and disable can be sent to a remote pmtr (-s)");
            return ExitCode::from(REFUSED);
        }
    };
    let message = pmtr_core::proto::control::encode(verb == "enable", names);
    let datagram = match &args.key {
        None => message.clone().into_bytes(),
        Some(path) => match pmtr_common::keyfile::load(path) {
            Ok(key) => pmtr_core::proto::auth::sign(
                &key,
                Kind::Control,
                pmtr_common::keyfile::unix_now(),
                pmtr_common::keyfile::nonce(),
                message.as_bytes(),
            ),
            Err(reason) => {
                eprintln!("pmtr-ctl: key {}: {reason}", path.display());
                return ExitCode::from(REFUSED);
            }
        },
    };
    let target = match (server, args.port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(target)) => target,
        Ok(None) => {
            eprintln!("pmtr-ctl: {server} has no address");
            return ExitCode::from(UNREACHABLE);
        }
        Err(error) => {
            eprintln!("pmtr-ctl: cannot resolve {server}: {error}");
            return ExitCode::from(UNREACHABLE);
        }
    };
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sent = UdpSocket::bind(bind).and_then(|socket| socket.send_to(&datagram, target));
    match sent {
        Ok(_) => {
            if args.verbose {
                eprintln!("pmtr-ctl: sent \"{message}\" to {target}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pmtr-ctl: cannot send to {target}: {}", Reason(&error));
            ExitCode::from(UNREACHABLE)
        }
    }
}

/// The status table, columns aligned; the state coloured on a terminal.
pub fn table(jobs: &[JobStatus], colour: bool) -> String {
    let header = [
        "JOB",
        "STATE",
        "PID",
        "UPTIME",
        "MEM",
        "CPU",
        "RESTARTS",
        "LAST EXIT",
        "NOTE",
    ];
    let rows: Vec<[String; 9]> = jobs
        .iter()
        .map(|job| {
            [
                job.name.clone(),
                match (&job.waiting_for, job.healthy) {
                    (Some(name), _) => format!("waiting for {name}"),
                    (None, Some(true)) => format!("{}, healthy", job.state.label()),
                    (None, Some(false)) => format!(
                        "{}, unhealthy ({} failed)",
                        job.state.label(),
                        job.health_failures
                    ),
                    (None, None) => job.state.label().to_string(),
                },
                job.pid.map_or("-".into(), |p| p.to_string()),
                match (job.uptime_seconds, job.restart_in_seconds) {
                    (Some(up), _) => duration_text(up),
                    (None, Some(wait)) => format!("in {}", duration_text(wait)),
                    _ => "-".into(),
                },
                job.memory_bytes.map_or("-".into(), memory_text),
                job.cpu_millis.map_or("-".into(), cpu_text),
                job.restarts.to_string(),
                job.last_exit.as_ref().map_or("-".into(), |e| e.describe()),
                note(job),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String; 9], state: Option<State>, out: &mut String| {
        for (i, cell) in cells.iter().enumerate() {
            let padded = format!("{cell:<width$}", width = widths[i]);
            match (i, state, colour) {
                (1, Some(state), true) => {
                    out.push_str(&format!("\x1b[{}m{padded}\x1b[0m", colour_of(state)))
                }
                _ => out.push_str(&padded),
            }
            out.push_str(if i + 1 < cells.len() { "  " } else { "" });
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&header.map(String::from), None, &mut out);
    for (row, job) in rows.iter().zip(jobs) {
        line(row, Some(job.state), &mut out);
    }
    out
}

/// Memory as `top` shows it: `812K`, `12.3M`, `1.2G`.
fn memory_text(bytes: u64) -> String {
    let units = [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (unit, size) in units {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return match value < 10.0 {
                true => format!("{value:.1}{unit}"),
                false => format!("{value:.0}{unit}"),
            };
        }
    }
    format!("{bytes}B")
}

/// CPU time: `0.42s` under a minute, then as uptimes are shown.
fn cpu_text(millis: u64) -> String {
    match millis < 60_000 {
        true => format!("{:.2}s", millis as f64 / 1000.0),
        false => duration_text(millis / 1000),
    }
}

/// What the job said of itself (`STATUS=`), or what its last check said
/// while that matters: not ready yet, or unhealthy.
fn note(job: &JobStatus) -> String {
    let check_matters = job.state == State::Starting || job.healthy == Some(false);
    match (&job.notify_status, &job.check_output) {
        (Some(status), _) => status.clone(),
        (None, Some(output)) if check_matters => output.clone(),
        _ => String::new(),
    }
}

fn colour_of(state: State) -> &'static str {
    match state {
        State::Running => "32",
        State::WaitingToRestart
        | State::Waiting
        | State::Stopping
        | State::Backoff
        | State::Starting => "33",
        State::FailedToStart | State::Failed => "31",
        State::Disabled | State::Done => "2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmtr_core::status::LastExit;

    fn job(name: &str, state: State, pid: Option<i32>, up: Option<u64>) -> JobStatus {
        JobStatus {
            name: name.into(),
            state,
            enabled: true,
            pid,
            uptime_seconds: up,
            restart_in_seconds: if up.is_none() { Some(7) } else { None },
            restarts: 2,
            last_exit: Some(LastExit {
                code: None,
                signal: Some("SIGKILL".into()),
            }),
            started: None,
            waiting_for: None,
            healthy: None,
            health_failures: 0,
            check_output: None,
            notify_status: None,
            memory_bytes: None,
            cpu_millis: None,
        }
    }

    #[test]
    fn the_table_is_aligned() {
        let mut web = job("web", State::Running, Some(1234), Some(3_725));
        (web.memory_bytes, web.cpu_millis) = (Some(12_900_000), Some(421));
        let mut sick = job("api", State::Running, Some(77), Some(9));
        (sick.memory_bytes, sick.cpu_millis) = (Some(812 * 1024), Some(125_000));
        sick.healthy = Some(false);
        sick.health_failures = 2;
        sick.check_output = Some("curl: (7) Failed to connect".into());
        let text = table(
            &[
                web,
                job("a-long-name", State::WaitingToRestart, None, None),
                sick,
            ],
            false,
        );
        assert_eq!(
            text,
            "JOB          STATE                          PID   UPTIME    MEM   CPU    RESTARTS  LAST EXIT  NOTE\n\
             web          running                        1234  1h 2m 5s  12M   0.42s  2         SIGKILL\n\
             a-long-name  waiting to restart             -     in 7s     -     -      2         SIGKILL\n\
             api          running, unhealthy (2 failed)  77    9s        812K  2m 5s  2         SIGKILL    curl: (7) Failed to connect\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let jobs = [job("web", State::Running, Some(1), Some(1))];
        assert!(!table(&jobs, false).contains('\x1b'));
        assert!(table(&jobs, true).contains("\x1b[32mrunning"));
    }
}
