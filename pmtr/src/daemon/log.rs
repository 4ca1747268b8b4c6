//! pmtr's log: syslog (ident `pmtr` with its pid, facility local0 as the
//! original) and, in the foreground, standard error. Without a syslog
//! socket, standard error alone, and the socket is tried again (at most
//! once a second, when there is a line to log) so that a syslog daemon
//! restarted, or started after pmtr, is found. Lines the socket could not
//! take are counted and the count logged once it takes them again.
//! Sending never blocks the event loop.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pmtr_core::supervise::event::Level;

const SYSLOG_SOCKET: &str = "/dev/log";
/// A debug build (the test suite) may name another socket.
const SYSLOG_SOCKET_VARIABLE: &str = "PMTR_TEST_SYSLOG";
/// LOG_LOCAL0, as the original pmtr's `openlog`.
const FACILITY: u8 = 16;
/// Longest message sent; syslog daemons cut long datagrams anyway.
const MAX_MESSAGE: usize = 4096;
/// Without a syslog socket, it is tried again at most this often.
const RETRY: Duration = Duration::from_secs(1);

pub struct Logger {
    syslog: Option<UnixDatagram>,
    path: PathBuf,
    /// When the socket was last tried, while there is none.
    tried_at: Option<Instant>,
    to_stderr: bool,
    /// Standard error opened anew without blocking, where it can be: a
    /// reader that stalls (a full pipe) must not stall pmtr's loop. The
    /// descriptor pmtr was given stays as it is (shared with others).
    stderr: Option<std::fs::File>,
    /// Lines standard error could not take, not yet said.
    stderr_dropped: u64,
    verbosity: u8,
    pid: u32,
    /// Lines syslog did not get (its socket full, or gone), not yet said.
    dropped: u64,
    /// Syslog was there once: lines logged while it is gone are counted.
    had_syslog: bool,
}

impl Logger {
    pub fn new(to_stderr: bool, verbosity: u8) -> Logger {
        let path = match std::env::var_os(SYSLOG_SOCKET_VARIABLE) {
            Some(path) if cfg!(debug_assertions) => PathBuf::from(path),
            _ => PathBuf::from(SYSLOG_SOCKET),
        };
        let syslog = connect(&path);
        Logger {
            had_syslog: syslog.is_some(),
            syslog,
            tried_at: Some(Instant::now()),
            path,
            to_stderr,
            // Only in the foreground: a daemon's stderr is /dev/null, and a
            // second descriptor of the pipe it was started with would keep
            // that pipe open (its starter waiting for the end of it).
            stderr: to_stderr.then(nonblocking_stderr).flatten(),
            stderr_dropped: 0,
            verbosity,
            pid: std::process::id(),
            dropped: 0,
        }
    }

    pub fn log(&mut self, level: Level, message: &str) {
        if level == Level::Debug && self.verbosity == 0 {
            return;
        }
        // A message of several lines (the errors of a configuration that
        // was not applied) is logged as that many lines, each one whole.
        for line in truncate(message, MAX_MESSAGE).split('\n') {
            self.log_line(level, line);
        }
    }

    fn log_line(&mut self, level: Level, message: &str) {
        // Whatever a message quotes (a datagram's key id, a job's line, a
        // file name) reaches a terminal or journalctl: no escape sequence
        // or carriage return gets through.
        let message = harmless(message);
        let message = message.as_ref();
        self.reconnect_if_due();
        if self.to_stderr || self.syslog.is_none() {
            // One write per line: stderr is unbuffered, and a line written
            // in pieces costs a syscall a piece (and may interleave).
            let line = format!("pmtr[{}]: {message}\n", self.pid);
            self.write_stderr(&line);
        }
        if self.syslog.is_some() && self.dropped > 0 {
            let note = format!(
                "{} log lines did not reach syslog (its socket was full or gone)",
                self.dropped
            );
            if self.send(Level::Warning, &note) {
                self.dropped = 0;
            }
        }
        let sent = self.send(level, message);
        if !sent && self.syslog.is_some() || self.syslog.is_none() && self.had_syslog {
            self.dropped += 1;
        }
    }

    /// Writes a line to standard error, or counts it if stderr is full.
    fn write_stderr(&mut self, line: &str) {
        let Some(file) = &mut self.stderr else {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            return;
        };
        if self.stderr_dropped > 0 {
            let note = format!(
                "pmtr[{}]: {} log lines did not reach standard error (its reader was not reading)\n",
                self.pid, self.stderr_dropped
            );
            if file.write(note.as_bytes()).is_ok_and(|n| n == note.len()) {
                self.stderr_dropped = 0;
            }
        }
        // A line is written whole or not at all when it fits the pipe's
        // atomic size; a longer one may be cut, which is still better than
        // a loop that waits.
        if file.write(line.as_bytes()).is_err() {
            self.stderr_dropped += 1;
        }
    }

    /// Without a socket, tries again once `RETRY` has passed.
    fn reconnect_if_due(&mut self) {
        if self.syslog.is_some() || self.tried_at.is_some_and(|t| t.elapsed() < RETRY) {
            return;
        }
        self.tried_at = Some(Instant::now());
        self.syslog = connect(&self.path);
        self.had_syslog |= self.syslog.is_some();
    }

    /// Sends one line to syslog; true if the socket took it.
    fn send(&mut self, level: Level, message: &str) -> bool {
        let severity = match level {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
            Level::Debug => 7,
        };
        let Some(socket) = &self.syslog else {
            return false;
        };
        let datagram = format!("<{}>pmtr[{}]: {message}", FACILITY * 8 + severity, self.pid);
        match socket.send(datagram.as_bytes()) {
            Ok(_) => true,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => {
                // The syslog daemon restarted: connect again now; if it is
                // not back yet, again at a later line.
                self.syslog = connect(&self.path);
                self.tried_at = Some(Instant::now());
                match &self.syslog {
                    Some(socket) => socket.send(datagram.as_bytes()).is_ok(),
                    None => false,
                }
            }
        }
    }
}

/// Standard error opened again, without blocking, as a file description of
/// pmtr's own (`O_NONBLOCK` on the one it was given would change it for
/// every process sharing it, a shell's terminal among them). None where it
/// cannot be opened so (a socket, as journald gives): then written as is.
fn nonblocking_stderr() -> Option<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let kind = std::fs::metadata("/proc/self/fd/2").ok()?.file_type();
    if !kind.is_fifo() {
        // A terminal or a file does not stall for long; only a pipe can
        // stall for good.
        return None;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/proc/self/fd/2")
        .ok()
}

fn connect(path: &std::path::Path) -> Option<UnixDatagram> {
    let socket = UnixDatagram::unbound().ok()?;
    socket.connect(path).ok()?;
    socket.set_nonblocking(true).ok()?;
    Some(socket)
}

fn truncate(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// `message` with its control characters (but tab) shown as `?`;
/// borrowed when it has none, as almost every message.
fn harmless(message: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if message.chars().any(unsafe_char) {
        message
            .chars()
            .map(|c| if unsafe_char(c) { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        message.into()
    }
}

/// Job output made safe for a log line: invalid UTF-8 replaced, control
/// characters (but tab) shown as `?`, as the original pmtr does.
pub fn sanitize(bytes: &[u8]) -> String {
    // Most lines are text already: borrowed through both steps, one copy.
    harmless(&String::from_utf8_lossy(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_made_harmless() {
        assert_eq!(sanitize(b"a\x1b[31mred\x07\tok\r"), "a?[31mred?\tok?");
        assert_eq!(sanitize(b"caf\xe9"), "caf\u{fffd}");
    }

    #[test]
    fn log_messages_carry_no_control_characters() {
        assert_eq!(
            harmless("bad key id \u{1b}]0;owned\u{7}\rok\tx"),
            "bad key id ?]0;owned??ok\tx"
        );
        assert!(matches!(
            harmless("clean line"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
