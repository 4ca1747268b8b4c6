//! pmtr's state file (SPEC 11.8): what the next pmtr needs to take the
//! jobs over — after an exec of a new binary (`pmtr-ctl reexec`, which
//! also hands over descriptors) or after a crash. JSON, versioned: a file
//! of another format, a later version, or larger than [`MAX_BYTES`] is
//! refused whole, never half read. Documented in docs/PROTOCOL.md.

use serde::{Deserialize, Serialize};

use crate::supervise::event::Pid;
use crate::supervise::handover::SavedJob;

/// What the file says it is.
pub const FORMAT: &str = "pmtr-state";
/// The version this pmtr writes and reads. A later one is refused: its
/// meaning is not known here.
pub const VERSION: u32 = 1;
/// Largest state file read: 10 000 jobs take about 3 MB.
pub const MAX_BYTES: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    pub version: u32,
    /// The pmtr that wrote it: pid and start time (clock ticks after
    /// boot), so that a pmtr that reuses the pid is not taken for it.
    pub owner: Pid,
    pub owner_start: u64,
    pub jobs: Vec<StateJob>,
    /// Descriptors kept open across the exec, for the next pmtr (only in
    /// the file a reexec writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed: Option<Handed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateJob {
    #[serde(flatten)]
    pub saved: SavedJob,
    /// Start time of the running process (clock ticks after boot): with
    /// the pid, its identity — a reused pid has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
    /// Its output goes through pmtr: lost with a pmtr that dies.
    #[serde(default)]
    pub captured: bool,
    /// It speaks sd_notify to pmtr's socket, which dies with pmtr.
    #[serde(default)]
    pub notify: bool,
}

/// Descriptors a reexec hands over, by number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    /// The control socket's listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<i32>,
    /// The sd_notify socket, and the address jobs know it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<(i32, String)>,
    #[serde(default)]
    pub captures: Vec<HandedCapture>,
}

impl Handed {
    /// Every descriptor number it names.
    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        let notify = self.notify.iter().map(|(fd, _)| *fd);
        let captures = self.captures.iter().map(|capture| capture.fd);
        self.control.into_iter().chain(notify).chain(captures)
    }
}

/// The read end of a job's output pipe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedCapture {
    pub job: String,
    pub pid: Pid,
    pub fd: i32,
    /// Which of the job's pipes: 0 for the first destination of its
    /// streams (stdout's), 1 for the second.
    pub index: usize,
    /// The start of a line not ended yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("not JSON of a pmtr state: {0}")]
    Malformed(String),
    #[error("not a pmtr state file (format `{0}`)")]
    Foreign(String),
    #[error("written by a later pmtr (state version {0}; this pmtr reads {VERSION})")]
    FutureVersion(u32),
}

impl State {
    pub fn new(owner: Pid, owner_start: u64, jobs: Vec<StateJob>) -> State {
        State {
            format: FORMAT.to_string(),
            version: VERSION,
            owner,
            owner_start,
            jobs,
            handed: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<State, StateError> {
        if bytes.len() > MAX_BYTES {
            return Err(StateError::TooLarge);
        }
        // The format and version first: a later version may not parse as
        // this one, and should say so rather than "malformed".
        #[derive(Deserialize)]
        struct Head {
            format: String,
            version: u32,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| StateError::Malformed(e.to_string()))?;
        if head.format != FORMAT {
            return Err(StateError::Foreign(head.format.chars().take(40).collect()));
        }
        if head.version > VERSION {
            return Err(StateError::FutureVersion(head.version));
        }
        serde_json::from_slice(bytes).map_err(|e| StateError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::handover::{SavedExit, SavedRun};

    fn state() -> State {
        let saved = SavedJob {
            name: "web".into(),
            fingerprint: "00ff".into(),
            run: Some(SavedRun {
                pid: 42,
                started: 1_000,
                ready: true,
            }),
            start_at: None,
            ended: false,
            failed: false,
            enabled_override: Some(true),
            starts: 3,
            rapid_exits: 1,
            last_exit: Some(SavedExit::Signal(9)),
            gate_open: false,
        };
        let mut state = State::new(
            7,
            123,
            vec![StateJob {
                saved,
                process_start: Some(456),
                captured: true,
                notify: false,
            }],
        );
        state.handed = Some(Handed {
            control: Some(5),
            notify: Some((6, "@pmtr/7/notify".into())),
            captures: vec![HandedCapture {
                job: "web".into(),
                pid: 42,
                fd: 9,
                index: 0,
                partial: b"half a li".to_vec(),
            }],
        });
        state
    }

    #[test]
    fn a_state_round_trips() {
        let state = state();
        assert_eq!(State::decode(&state.encode()), Ok(state));
    }

    #[test]
    fn foreign_future_truncated_and_huge_files_are_refused() {
        let text = String::from_utf8(state().encode()).unwrap();
        let foreign = text.replace("pmtr-state", "other");
        assert!(matches!(
            State::decode(foreign.as_bytes()),
            Err(StateError::Foreign(_))
        ));
        let future = text.replace("\"version\":1", "\"version\":2");
        assert_eq!(
            State::decode(future.as_bytes()),
            Err(StateError::FutureVersion(2))
        );
        let truncated = &text.as_bytes()[..text.len() / 2];
        assert!(matches!(
            State::decode(truncated),
            Err(StateError::Malformed(_))
        ));
        assert!(matches!(State::decode(b""), Err(StateError::Malformed(_))));
        assert!(matches!(
            State::decode(b"[1,2,3]"),
            Err(StateError::Malformed(_))
        ));
        let huge = vec![b' '; MAX_BYTES + 1];
        assert_eq!(State::decode(&huge), Err(StateError::TooLarge));
    }
}
