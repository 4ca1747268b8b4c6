//! One job as the supervisor tracks it: its definition, its history, and
//! its `Phase` — one value saying what the job is doing, carrying exactly
//! the data of that state (a process only while there is one, a deadline
//! only while one is due).

use std::sync::Arc;

use super::event::{ExitStatus, JobId, Pid};
use crate::config::{Job, Readiness};
use crate::time::Mono;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    pub id: JobId,
    /// Shared with the `Spawn` actions that start it: no copy per start.
    pub def: Arc<Job>,
    pub phase: Phase,
    /// The definition to start with once the process group is gone (a
    /// reload changed the job while it ran).
    pub pending: Option<Box<Job>>,
    /// Enabled or disabled by a control request, until the next reload.
    pub enabled_override: Option<bool>,
    /// For a `wait` job: it has exited since pmtr started, so the jobs
    /// after it may start.
    pub gate_open: bool,
    pub starts: u32,
    pub last_exit: Option<ExitStatus>,
    /// The last start never reached `execv`.
    pub start_failed: bool,
    /// Rapid exits in a row (runs shorter than `stable`), which the
    /// backoff grows with; a stable run resets it.
    pub rapid_exits: u32,
    /// The last line of the last readiness or health check's output.
    pub check_output: Option<String>,
    /// The job's last `STATUS=` (sd_notify).
    pub notify_status: Option<String>,
    /// Where each job of `def.after` is in the supervisor's list, and its
    /// id, kept by `Supervisor::reindex`.
    pub after_indices: Vec<(usize, JobId)>,
}

/// What a job is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// To be started once `until` has come, no `wait` job ahead of it
    /// holds it, and its dependency files exist. `missing_logged`: a
    /// missing dependency was logged (once per wait).
    Waiting {
        until: Mono,
        missing_logged: bool,
    },
    /// `Action::Spawn` went out; `Spawned` or `SpawnFailed` comes next
    /// (the shell forks in batches, after the events already queued). A
    /// stop asked for meanwhile waits in `stop` and is carried out on
    /// `Spawned`.
    Starting {
        stop: Option<StopReason>,
    },
    /// Its process group runs, undisturbed.
    Running(Run),
    /// pmtr signalled the group to stop it for `why`; the leader lives.
    Stopping {
        run: Run,
        why: StopReason,
        signals: Signals,
    },
    /// The leader was reaped; its group may still have members, which
    /// pmtr probes for. `then` follows once the group is empty.
    Draining {
        run: Run,
        then: Then,
        /// None until pmtr signals leftovers (or was stopping the job).
        signals: Option<Signals>,
        /// When to ask again whether the group is empty (after SIGKILL:
        /// members that are not pmtr's children send no SIGCHLD).
        probe_at: Option<Mono>,
    },
    /// Exited and not restarted; why, for the log.
    Done(&'static str),
    /// `give up after N`: N rapid exits in a row. Started again only by
    /// a restart or enable request, or a reload that changes the job.
    Failed,
    Disabled,
}

/// A started process group, led by `pid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub pid: Pid,
    pub started: Mono,
    /// The child reported a failed step before `execv`.
    pub setup_failed: bool,
    /// Ready by its `ready` option (at once without one).
    pub ready: bool,
    /// The job's one check: a readiness check until it is ready, a health
    /// check after (SPEC 11.4: at most one at a time).
    pub check: CheckState,
    /// The wait before the next readiness check after a failed one: 50 ms
    /// doubling to 1 s.
    pub check_delay_millis: u64,
    /// Health checks failed in a row.
    pub failures: u32,
    /// A health check has answered since the job became ready.
    pub checked: bool,
    /// When the next `WATCHDOG=1` must have come by.
    pub watchdog_due: Option<Mono>,
    /// The job sent `STOPPING=1`: it is on its way out, so its checks and
    /// watchdog no longer count.
    pub stopping_announced: bool,
}

/// Where a job's check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckState {
    /// No check is due: none configured, or waiting for an event.
    Idle,
    /// The next check goes out at this time.
    Due(Mono),
    /// A check went out at this time and has not answered.
    Out(Mono),
}

impl CheckState {
    pub fn due(self) -> Option<Mono> {
        match self {
            CheckState::Due(at) => Some(at),
            CheckState::Idle | CheckState::Out(_) => None,
        }
    }
}

impl Run {
    /// A group just forked, ready at once unless `def` says how to tell.
    pub fn new(pid: Pid, started: Mono, def: &Job) -> Run {
        let mut run = Run {
            pid,
            started,
            setup_failed: false,
            ready: false,
            check: CheckState::Idle,
            check_delay_millis: FIRST_CHECK_DELAY_MILLIS,
            failures: 0,
            checked: false,
            watchdog_due: None,
            stopping_announced: false,
        };
        match def.extras.ready {
            Readiness::Started => run.become_ready(started, def),
            Readiness::Notify => {}
            Readiness::File(_) | Readiness::Tcp(_) | Readiness::Cmd(_) => {
                run.check = CheckState::Due(started)
            }
        }
        run
    }

    /// The job is ready from `now`: its health checks and watchdog begin.
    pub fn become_ready(&mut self, now: Mono, def: &Job) {
        self.ready = true;
        self.watch_health(now, def);
    }

    /// Starts (or starts over) the health checks and watchdog of a ready
    /// job: the first check one `health every` from `now`.
    pub fn watch_health(&mut self, now: Mono, def: &Job) {
        self.failures = 0;
        self.checked = false;
        self.check = match def.extras.health.check {
            Some(_) => CheckState::Due(now.plus_millis(def.extras.health.every())),
            None => CheckState::Idle,
        };
        self.watchdog_due = def
            .extras
            .health
            .watchdog_millis
            .map(|ms| now.plus_millis(ms));
    }

    /// When the job must be ready by, while it is not.
    pub fn ready_due(&self, def: &Job) -> Option<Mono> {
        let timeout = def
            .extras
            .ready_timeout_millis
            .unwrap_or(READY_TIMEOUT_MILLIS);
        (!self.ready).then(|| self.started.plus_millis(timeout))
    }

    /// When the health check under way times out.
    pub fn check_expires(&self, def: &Job) -> Option<Mono> {
        match self.check {
            CheckState::Out(since) if self.ready => {
                Some(since.plus_millis(def.extras.health.timeout()))
            }
            // A readiness check is bounded by the ready timeout.
            CheckState::Out(_) | CheckState::Idle | CheckState::Due(_) => None,
        }
    }

    /// Healthy or not, once a health check has answered.
    pub fn healthy(&self) -> Option<bool> {
        self.checked.then_some(self.failures == 0)
    }
}

/// Default `ready timeout`.
pub const READY_TIMEOUT_MILLIS: u64 = 60_000;
/// Readiness checks back off from this...
pub const FIRST_CHECK_DELAY_MILLIS: u64 = 50;
/// ...to this.
pub const MAX_CHECK_DELAY_MILLIS: u64 = 1_000;

/// The stop signals pmtr sent a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signals {
    pub term_sent: Mono,
    pub kill_sent: bool,
}

impl Signals {
    pub fn term(now: Mono) -> Signals {
        Signals {
            term_sent: now,
            kill_sent: false,
        }
    }

    /// When SIGKILL is due, unless it was sent.
    pub fn kill_due(&self, grace_millis: u64) -> Option<Mono> {
        (!self.kill_sent).then(|| self.term_sent.plus_millis(grace_millis))
    }
}

/// What follows once a draining job's group is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// It exited on its own: the restart rule says when it starts again.
    StartAt(Mono),
    /// It exited on its own and is not restarted.
    Done(&'static str),
    /// It exited on its own once too often (`give up after`).
    Failed,
    /// pmtr stopped it: what the stop was for.
    Stopped(StopReason),
}

/// Why pmtr stopped a job, which decides what follows the stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Shutdown,
    /// Start it again at once when it is gone (changed, bounced, a
    /// dependency changed, unhealthy, restarted on request).
    Restart,
    /// Keep it stopped (disabled in the file or on request).
    Disable,
    /// Forget it (deleted from the file).
    Remove,
    /// Not ready within its `ready timeout`: a failed start, under the
    /// restart policy.
    NotReady,
}

impl Phase {
    /// Waiting to start at `until`.
    pub fn waiting(until: Mono) -> Phase {
        Phase::Waiting {
            until,
            missing_logged: false,
        }
    }

    /// Has a process group, or is about to: what a stop must reach.
    pub fn is_active(&self) -> bool {
        matches!(self, Phase::Starting { .. }) || self.run().is_some()
    }

    /// The process group, in every phase that has one.
    pub fn run(&self) -> Option<&Run> {
        match self {
            Phase::Running(run) | Phase::Stopping { run, .. } | Phase::Draining { run, .. } => {
                Some(run)
            }
            _ => None,
        }
    }

    /// The leader's pid, while the leader lives.
    pub fn leader(&self) -> Option<Pid> {
        match self {
            Phase::Running(run) | Phase::Stopping { run, .. } => Some(run.pid),
            _ => None,
        }
    }

    /// The process group of the run under way (its leader's pid), while
    /// anything of it may live.
    pub fn group(&self) -> Option<Pid> {
        match self {
            Phase::Running(run) | Phase::Stopping { run, .. } | Phase::Draining { run, .. } => {
                Some(run.pid)
            }
            _ => None,
        }
    }

    /// Why pmtr is stopping the job, if it is.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self {
            Phase::Starting { stop } => *stop,
            Phase::Stopping { why, .. } => Some(*why),
            Phase::Draining {
                then: Then::Stopped(why),
                ..
            } => Some(*why),
            _ => None,
        }
    }

    /// Changes why pmtr is stopping the job; nothing if it is not.
    pub fn set_stop_reason(&mut self, reason: StopReason) {
        match self {
            Phase::Starting { stop: Some(why) } => *why = reason,
            Phase::Stopping { why, .. } => *why = reason,
            Phase::Draining {
                then: Then::Stopped(why),
                ..
            } => *why = reason,
            _ => {}
        }
    }

    /// The signals sent to the group, if any.
    pub fn signals(&self) -> Option<Signals> {
        match self {
            Phase::Stopping { signals, .. } => Some(*signals),
            Phase::Draining { signals, .. } => *signals,
            _ => None,
        }
    }
}

impl JobState {
    pub fn new(id: JobId, def: Job) -> JobState {
        let phase = if def.disabled {
            Phase::Disabled
        } else {
            Phase::waiting(Mono::ZERO)
        };
        JobState {
            id,
            def: Arc::new(def),
            phase,
            pending: None,
            enabled_override: None,
            gate_open: false,
            starts: 0,
            last_exit: None,
            start_failed: false,
            rapid_exits: 0,
            check_output: None,
            notify_status: None,
            after_indices: Vec::new(),
        }
    }

    /// Enabled by the file, unless a control request said otherwise.
    pub fn enabled(&self) -> bool {
        self.enabled_override.unwrap_or(!self.def.disabled)
    }

    /// Starts after the first one.
    pub fn restarts(&self) -> u32 {
        self.starts.saturating_sub(1)
    }

    /// True while this job keeps the jobs after it from starting.
    pub fn gates(&self) -> bool {
        self.def.wait && self.enabled() && !self.gate_open
    }

    /// The definition that counts: the pending one if a restart will bring
    /// it in.
    pub fn effective(&self) -> &Job {
        self.pending.as_deref().unwrap_or(&self.def)
    }

    /// Dependency files, resolved under `dir`.
    pub fn dependencies(&self) -> impl Iterator<Item = String> + '_ {
        let def = self.effective();
        def.extras.depends.iter().map(move |path| def.resolve(path))
    }

    /// The leader's pid, while the leader lives.
    pub fn leader(&self) -> Option<Pid> {
        self.phase.leader()
    }

    /// Deleted by a reload and still stopping: no request reaches it.
    pub fn is_being_removed(&self) -> bool {
        self.phase.stop_reason() == Some(StopReason::Remove)
    }

    /// For a copy of a job with `instances`, that job's name.
    pub fn group(&self) -> Option<&str> {
        self.def.extras.instance.as_ref().map(|i| i.group.as_str())
    }

    /// True when `name` names this job: its own name, or the name of the
    /// job with instances it is a copy of.
    pub fn is_named(&self, name: &str) -> bool {
        self.def.name == name || self.group() == Some(name)
    }
}
