//! pmtr's log: syslog (ident `pmtr` with its pid, facility local0 as the
//! original) and, in the foreground, standard error. Without a syslog
//! socket, standard error alone. Sending never blocks the event loop.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

use pmtr_core::supervise::event::Level;

const SYSLOG_SOCKET: &str = "/dev/log";
/// LOG_LOCAL0, as the original pmtr's `openlog`.
const FACILITY: u8 = 16;
/// Longest message sent; syslog daemons cut long datagrams anyway.
const MAX_MESSAGE: usize = 4096;

pub struct Logger {
    syslog: Option<UnixDatagram>,
    to_stderr: bool,
    verbosity: u8,
    pid: u32,
    /// Messages the syslog socket refused because it was full.
    dropped: u64,
}

impl Logger {
    pub fn new(to_stderr: bool, verbosity: u8) -> Logger {
        Logger {
            syslog: connect(),
            to_stderr,
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
        if self.to_stderr || self.syslog.is_none() {
            // One write per line: stderr is unbuffered, and a line written
            // in pieces costs a syscall a piece (and may interleave).
            let line = format!("pmtr[{}]: {message}\n", self.pid);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        self.send(level, message);
    }

    fn send(&mut self, level: Level, message: &str) {
        let severity = match level {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
            Level::Debug => 7,
        };
        let Some(socket) = &self.syslog else {
            return;
        };
        let datagram = format!("<{}>pmtr[{}]: {message}", FACILITY * 8 + severity, self.pid);
        match socket.send(datagram.as_bytes()) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => self.dropped += 1,
            Err(_) => {
                // The syslog daemon restarted: reconnect once, then give up
                // on this message.
                self.syslog = connect();
                if let Some(socket) = &self.syslog {
                    let _ = socket.send(datagram.as_bytes());
                }
            }
        }
    }
}

fn connect() -> Option<UnixDatagram> {
    let socket = UnixDatagram::unbound().ok()?;
    socket.connect(SYSLOG_SOCKET).ok()?;
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
