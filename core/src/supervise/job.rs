//! One job as the supervisor tracks it: its definition, the process group
//! it runs as (if any), and what is planned for it next.

use super::event::{ExitStatus, JobId, Pid};
use crate::config::Job;
use crate::time::Mono;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    pub id: JobId,
    pub def: Job,
    /// The running (or still draining) process group of the job.
    pub instance: Option<Instance>,
    /// What happens once no instance is left.
    pub next: Next,
    /// Why pmtr is stopping the instance, if it is.
    pub stop: Option<StopReason>,
    /// The definition to start with once the instance is gone (a reload
    /// changed the job while it ran).
    pub pending: Option<Box<Job>>,
    /// A missing dependency was logged (once per wait).
    pub missing_logged: bool,
    /// Enabled or disabled by a control request, until the next reload.
    pub enabled_override: Option<bool>,
    /// For a `wait` job: it has exited since pmtr started, so the jobs
    /// after it may start.
    pub gate_open: bool,
    pub starts: u32,
    pub last_exit: Option<ExitStatus>,
    /// The last start never reached `execv`.
    pub start_failed: bool,
}

/// What is planned for a job that has no instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start when this time has come (and no `wait` job gates it).
    StartAt(Mono),
    /// The shell is forking it now.
    Spawning,
    /// Not started again.
    Rest(Rest),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    Disabled,
    /// Exited and not restarted (`once`, exit status 33).
    Done,
}

/// Why pmtr stopped a job, which decides what follows the stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Shutdown,
    /// Start it again at once when it is gone (changed, bounced, a
    /// dependency changed).
    Restart,
    /// Keep it stopped (disabled in the file).
    Disable,
    /// Forget it (deleted from the file).
    Remove,
}

/// A started job: its process group, led by `pid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance {
    pub pid: Pid,
    pub started: Mono,
    /// The group leader (the process pmtr forked) has not been reaped yet.
    pub leader_alive: bool,
    /// The child reported a failed step before `execv`.
    pub setup_failed: bool,
    /// When SIGTERM went to the group.
    pub term_sent: Option<Mono>,
    pub kill_sent: bool,
    /// When to ask again whether the group still has members.
    pub probe_at: Option<Mono>,
}

impl Instance {
    pub fn new(pid: Pid, started: Mono) -> Instance {
        Instance {
            pid,
            started,
            leader_alive: true,
            setup_failed: false,
            term_sent: None,
            kill_sent: false,
            probe_at: None,
        }
    }

    /// When SIGKILL is due, if SIGTERM was sent and SIGKILL was not.
    pub fn kill_due(&self, grace_millis: u64) -> Option<Mono> {
        match self.term_sent {
            Some(sent) if !self.kill_sent => Some(sent.plus_millis(grace_millis)),
            _ => None,
        }
    }
}

impl JobState {
    pub fn new(id: JobId, def: Job) -> JobState {
        let next = if def.disabled {
            Next::Rest(Rest::Disabled)
        } else {
            Next::StartAt(Mono::ZERO)
        };
        JobState {
            id,
            def,
            instance: None,
            next,
            stop: None,
            pending: None,
            missing_logged: false,
            enabled_override: None,
            gate_open: false,
            starts: 0,
            last_exit: None,
            start_failed: false,
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
        def.depends.iter().map(move |path| def.resolve(path))
    }

    /// Running and not being stopped: what a bounce or a dependency change
    /// may restart.
    pub fn running_undisturbed(&self) -> bool {
        self.stop.is_none()
            && self
                .instance
                .is_some_and(|i| i.leader_alive && i.term_sent.is_none())
    }

    /// The leader's pid, while the leader lives.
    pub fn leader(&self) -> Option<Pid> {
        self.instance.filter(|i| i.leader_alive).map(|i| i.pid)
    }
}
