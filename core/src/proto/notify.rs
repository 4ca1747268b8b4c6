//! The sd_notify protocol as a job speaks it to pmtr (SPEC 11.3): one
//! datagram of `KEY=VALUE` lines. pmtr acts on `READY=1`, `STATUS=`,
//! `WATCHDOG=1` and `STOPPING=1` and ignores every other line, as systemd
//! ignores what it does not know.

/// Longest datagram pmtr reads; systemd's own limit is 4 KiB too.
pub const MAX_DATAGRAM: usize = 4096;

/// Longest `STATUS=` text kept, in characters.
pub const MAX_STATUS_CHARS: usize = 200;

/// What one datagram says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notice {
    pub ready: bool,
    pub watchdog: bool,
    pub stopping: bool,
    /// `STATUS=`: free text, control characters replaced, cut short.
    pub status: Option<String>,
}

impl Notice {
    /// Nothing pmtr acts on.
    pub fn is_empty(&self) -> bool {
        *self == Notice::default()
    }
}

/// Reads a datagram; lines pmtr does not act on, and bytes that are not
/// text, are passed over.
pub fn decode(datagram: &[u8]) -> Notice {
    let datagram = &datagram[..datagram.len().min(MAX_DATAGRAM)];
    let mut notice = Notice::default();
    for line in datagram.split(|&b| b == b'\n') {
        match line {
            b"READY=1" => notice.ready = true,
            b"WATCHDOG=1" => notice.watchdog = true,
            b"STOPPING=1" => notice.stopping = true,
            _ => {
                if let Some(text) = line.strip_prefix(b"STATUS=") {
                    let text = String::from_utf8_lossy(text);
                    let harmless = text
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .take(MAX_STATUS_CHARS)
                        .collect();
                    notice.status = Some(harmless);
                }
            }
        }
    }
    notice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_notify_ready_with_status() {
        let notice = decode(b"READY=1\nSTATUS=accepting connections");
        assert!(notice.ready && !notice.watchdog && !notice.stopping);
        assert_eq!(notice.status.as_deref(), Some("accepting connections"));
    }

    #[test]
    fn other_lines_and_values_are_ignored() {
        assert!(decode(b"MAINPID=4\nREADY=0\nBARRIER=1\nERRNO=2").is_empty());
        assert!(decode(b"").is_empty());
        assert!(decode(b"\xff\xfe\n=\n\n").is_empty());
        let notice = decode(b"WATCHDOG=1\nSTOPPING=1\n");
        assert!(notice.watchdog && notice.stopping && !notice.ready);
    }

    #[test]
    fn status_text_is_made_harmless_and_short() {
        let long = format!("STATUS=a\x1b[2Jb{}", "x".repeat(1000));
        let status = decode(long.as_bytes()).status.unwrap();
        assert!(status.starts_with("a [2Jb"));
        assert_eq!(status.chars().count(), MAX_STATUS_CHARS);
    }
}
