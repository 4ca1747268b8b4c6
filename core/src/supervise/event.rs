//! What the shell tells the supervisor (`Event`) and what the supervisor
//! asks the shell to do (`Action`): the whole vocabulary between the pure
//! core and the imperative shell.

use std::fmt;
use std::sync::Arc;

use crate::config::{Config, Globals, Job};
use crate::proto::notify::Notice;
use crate::status::JobStatus;

/// A process id, as the kernel gives it.
pub type Pid = i32;

/// A job's identity for the life of the supervisor; it survives reloads
/// that keep the job, and is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u32);

/// Names the client waiting for the answer to a control request; the
/// shell makes it, the core hands it back in [`Action::Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyToken(pub u64);

/// How a process ended, as `waitpid` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    /// Killed by a signal; the name comes from the shell, which knows the
    /// platform's numbering.
    Signal {
        number: i32,
        name: &'static str,
    },
    /// A process pmtr adopted from the pmtr before it and so cannot reap:
    /// it ended, how is not known (SPEC 11.8).
    Unknown,
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit status {code}"),
            ExitStatus::Signal { number, name } => write!(f, "signal {number} ({name})"),
            ExitStatus::Unknown => write!(f, "exit status unknown (adopted)"),
        }
    }
}

/// The step of a job's start that failed in the child, before `execv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupStep {
    /// Moving into the job's cgroup (SPEC 11.7).
    Cgroup,
    /// Making the child's descriptor table its own.
    Descriptors,
    ProcessGroup,
    Chdir,
    Nice,
    Affinity,
    Rlimit,
    Groups,
    Gid,
    Uid,
    Stdin,
    Stdout,
    Stderr,
    Exec,
}

/// Why a job could not be started, found in the parent before or at fork.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpawnFailure {
    /// The system is short of something (fork EAGAIN, EMFILE, ENOMEM): the
    /// job is fine and the start is retried soon.
    Transient(String),
    /// The job cannot start as defined (unknown user, ...): counts as an
    /// immediate exit, under the rapid-restart guard.
    Job(String),
}

/// Signals the supervisor sends, always to a job's whole process group:
/// a job's `stop signal`, and SIGKILL.
pub use crate::config::StopSignal;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// pmtr is up: start the jobs.
    Start,
    /// The shell forked the job's process.
    Spawned {
        job: JobId,
        pid: Pid,
    },
    SpawnFailed {
        job: JobId,
        failure: SpawnFailure,
    },
    /// The child reported that a step before `execv` failed.
    SetupFailed {
        pid: Pid,
        step: SetupStep,
        reason: String,
    },
    /// `waitpid` returned this process: a job's or an orphan's.
    Reaped {
        pid: Pid,
        status: ExitStatus,
    },
    /// Answer to [`Action::Probe`]: does the process group still have members?
    Probed {
        pgid: Pid,
        alive: bool,
    },
    /// A deadline from `next_deadline` has come.
    Timer,
    /// SIGTERM, SIGINT or SIGQUIT.
    Shutdown {
        signal: i32,
    },
    /// Something happened to the configuration (a file of it written,
    /// renamed over, deleted). `saved`: a writer finished — a rename over
    /// the file, or a close after writing — so the file is read at once;
    /// otherwise (a write to a file still open, a delete, a create) once
    /// the burst settles.
    ConfigTouched {
        saved: bool,
    },
    /// SIGHUP or `pmtr-ctl reload`: read the file now, even if unchanged.
    /// With a token (`pmtr-ctl reload`), the core answers once the file
    /// was read: applied, or why not.
    ReloadRequested {
        reply: Option<ReplyToken>,
    },
    /// `pmtr-ctl reexec` (SPEC 11.8): hand the jobs to the binary now at
    /// pmtr's path. Refused here while a handover cannot be made; else
    /// the shell carries it out and answers.
    Reexec {
        reply: ReplyToken,
    },
    /// Answer to [`Action::ReadConfig`]: the file's content hash, and the
    /// configuration or the rendered errors.
    ConfigRead {
        hash: u64,
        forced: bool,
        result: Result<Box<Config>, String>,
    },
    /// Something happened to a dependency file (resolved path).
    DependencyTouched {
        path: String,
    },
    /// Content hashes of dependency files; `None` for a missing file.
    FilesHashed {
        hashes: Vec<(String, Option<u64>)>,
    },
    /// A control request: enable or disable a job until the next reload.
    /// With a token (`pmtr-ctl`), the core answers with [`Action::Reply`];
    /// without one (a UDP datagram), nobody waits for an answer.
    SetEnabled {
        name: String,
        enabled: bool,
        reply: Option<ReplyToken>,
    },
    /// A control request: restart a job now; answered like `SetEnabled`.
    Restart {
        name: String,
        reply: Option<ReplyToken>,
    },
    /// Answer to [`Action::Check`]: passed or not, and the last line the
    /// check wrote (a command's output, or why it failed).
    Checked {
        job: JobId,
        pid: Pid,
        ok: bool,
        output: Option<String>,
    },
    /// A datagram on the notify socket from a process of group `pgid`.
    Notified {
        pgid: Pid,
        notice: Notice,
    },
    /// `pmtr-ctl wait JOB...`: answered once every job named is ready,
    /// one has failed, or `timeout_millis` has passed.
    Wait {
        jobs: Vec<String>,
        timeout_millis: Option<u64>,
        reply: ReplyToken,
    },
    /// `pmtr-ctl status [JOB]`: answered with [`Reply::Status`].
    Status {
        job: Option<String>,
        reply: ReplyToken,
    },
    /// `pmtr-ctl logs JOB`: answered with [`Reply::Logs`] when the job
    /// exists.
    Logs {
        job: String,
        reply: ReplyToken,
    },
}

/// What a readiness or health check looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Does this file (resolved) exist?
    File(String),
    /// Does a TCP connection to this address succeed?
    Tcp(std::net::SocketAddr),
    /// Does this command exit 0, run as `def`'s user, in its `dir`, with
    /// its `env`?
    Cmd { def: Arc<Job>, argv: Arc<[String]> },
}

/// The core's answer to a control request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Carried out (`ok`) or refused, and what to tell the client.
    Done { ok: bool, message: String },
    /// The status of the jobs asked for, in start order.
    Status(Vec<JobStatus>),
    /// The job exists: the shell sends the lines it captured.
    Logs { job: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the job as `def` says: build its plan, fork, exec; answer
    /// with `Spawned` or `SpawnFailed`.
    Spawn {
        job: JobId,
        def: Arc<Job>,
    },
    /// Send a signal to the process group `pgid`.
    Signal {
        pgid: Pid,
        signal: StopSignal,
    },
    /// Check whether process group `pgid` still has members; answer with
    /// `Probed`.
    Probe {
        pgid: Pid,
    },
    Log {
        level: Level,
        message: String,
    },
    /// Read and validate the configuration file; answer with `ConfigRead`.
    ReadConfig {
        forced: bool,
    },
    /// Watch these dependency files (replacing the previous set), and
    /// answer with `FilesHashed` for all of them.
    WatchFiles {
        paths: Vec<String>,
    },
    /// Hash these files; answer with `FilesHashed`.
    HashFiles {
        paths: Vec<String>,
    },
    /// Run `check` for the job started as `pid` (at most one at a time
    /// per job); answer with `Checked`.
    Check {
        job: JobId,
        pid: Pid,
        check: Check,
    },
    /// Abandon the job's check under way, if any (it timed out, or the
    /// job stops): kill its command, close its socket, send no answer.
    CancelCheck {
        job: JobId,
    },
    /// Every enabled job is ready or has failed to become so: tell
    /// systemd (`READY=1`). Sent once.
    Ready,
    /// Send the status report (`Supervisor::report`) to every `report to`
    /// destination.
    SendReport,
    /// Make the sockets, key and metrics file the global statements ask
    /// for (at start, and for each configuration applied).
    ApplyGlobals {
        /// Boxed: the statements are large, and every action is as large
        /// as the largest (a thousand `Spawn`s go out at start).
        globals: Box<Globals>,
    },
    /// The answer to the control request that carried `token`.
    Reply {
        token: ReplyToken,
        reply: Reply,
    },
    /// Everything is stopped: remove the pidfile and exit with `status`
    /// (0 after a shutdown by signal; a `critical` job's status).
    Exit {
        status: u8,
    },
    /// Hand the jobs to the binary at pmtr's path and answer `reply` with
    /// how that went (SPEC 11.8).
    Reexec {
        reply: ReplyToken,
    },
    /// Job `name` was removed from the file and has stopped: send `signal`
    /// to each process it left re-parented to pmtr — marked by
    /// `PMTR_JOB=name` in its environment, outside the job's process group
    /// (`setsid`, a double fork) — and to that process's own group if it
    /// leads one (SPEC 11.7).
    EndEscapees {
        name: String,
        signal: StopSignal,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every action is as large as the largest variant, and a start sends
    /// one per job: keep the big payloads boxed.
    #[test]
    fn actions_stay_small() {
        assert!(
            std::mem::size_of::<Action>() <= 48,
            "{}",
            std::mem::size_of::<Action>()
        );
    }
}
