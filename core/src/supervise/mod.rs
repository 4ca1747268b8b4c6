//! The supervisor: every decision about jobs — start, restart, stop,
//! escalate, shut down — as a pure function of its state, an event and
//! `now`. The shell feeds it events and executes the actions it returns;
//! `next_deadline` is the only timer the shell may wait for.

pub mod event;
pub mod job;
pub mod messages;
pub mod policy;

#[cfg(test)]
mod tests;

use event::{Action, Event, ExitStatus, JobId, Level, Pid, SetupStep, SpawnFailure, StopSignal};
use job::{Instance, JobState, Next, Rest, StopReason};
use policy::AfterExit;

use crate::config::{Config, Job};
use crate::time::Mono;

#[derive(Debug)]
pub struct Supervisor {
    /// In start order: by `order`, file order breaking ties.
    jobs: Vec<JobState>,
    next_id: u32,
    started: bool,
    shutdown: Option<Shutdown>,
    exit_sent: bool,
}

#[derive(Clone, Copy, Debug)]
struct Shutdown {
    /// A second SIGTERM/SIGINT came: SIGKILL was sent to everything.
    forced: bool,
}

impl Supervisor {
    pub fn new(config: &Config) -> Supervisor {
        let mut supervisor = Supervisor {
            jobs: Vec::with_capacity(config.jobs.len()),
            next_id: 0,
            started: false,
            shutdown: None,
            exit_sent: false,
        };
        for index in config.start_order() {
            let id = supervisor.new_id();
            supervisor
                .jobs
                .push(JobState::new(id, config.jobs[index].clone()));
        }
        supervisor
    }

    fn new_id(&mut self) -> JobId {
        self.next_id += 1;
        JobId(self.next_id)
    }

    /// The jobs in start order, for status and reports.
    pub fn jobs(&self) -> &[JobState] {
        &self.jobs
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id).map(|j| &j.def)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// Applies one event at `now` and returns what the shell must do, in
    /// order.
    pub fn handle(&mut self, event: Event, now: Mono) -> Vec<Action> {
        let mut out = Actions::default();
        match event {
            Event::Start => self.on_start(&mut out),
            Event::Spawned { job, pid } => self.on_spawned(job, pid, now, &mut out),
            Event::SpawnFailed { job, failure } => {
                self.on_spawn_failed(job, failure, now, &mut out)
            }
            Event::SetupFailed { pid, step, reason } => {
                self.on_setup_failed(pid, step, &reason, &mut out)
            }
            Event::Reaped { pid, status } => self.on_reaped(pid, status, now, &mut out),
            Event::Probed { pgid, alive } => self.on_probed(pgid, alive, now, &mut out),
            Event::Timer => self.on_timer(now, &mut out),
            Event::Shutdown { signal } => self.on_shutdown(signal, now, &mut out),
        }
        self.start_due(now, &mut out);
        self.exit_if_done(&mut out);
        out.0
    }

    /// The earliest time something is due: a start, a SIGKILL, a probe.
    /// `None` when nothing is: the shell then waits for events only.
    pub fn next_deadline(&self) -> Option<Mono> {
        let mut earliest: Option<Mono> = None;
        let mut consider = |t: Mono| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        if self.started && self.shutdown.is_none() {
            for job in &self.jobs {
                if let (None, Next::StartAt(t)) = (job.instance, job.next) {
                    consider(t);
                }
                if job.gates() {
                    break;
                }
            }
        }
        for instance in self.jobs.iter().filter_map(|j| j.instance) {
            if let Some(t) = instance.kill_due(policy::KILL_AFTER_SECS) {
                consider(t);
            }
            if let Some(t) = instance.probe_at {
                consider(t);
            }
        }
        earliest
    }

    fn on_start(&mut self, out: &mut Actions) {
        if self.started {
            return;
        }
        self.started = true;
        out.log(Level::Info, messages::starting());
        out.log(Level::Info, messages::managing(self.jobs.len()));
    }

    fn on_spawned(&mut self, id: JobId, pid: Pid, now: Mono, out: &mut Actions) {
        let Some(job) = self.jobs.iter_mut().find(|j| j.id == id) else {
            return;
        };
        job.instance = Some(Instance::new(pid, now));
        job.starts += 1;
        job.start_failed = false;
        out.log(Level::Info, messages::started(&job.def.name, pid));
        if job.gates() {
            out.log(Level::Info, messages::waiting_for(&job.def.name));
        }
    }

    fn on_spawn_failed(&mut self, id: JobId, failure: SpawnFailure, now: Mono, out: &mut Actions) {
        let Some(job) = self.jobs.iter_mut().find(|j| j.id == id) else {
            return;
        };
        match failure {
            SpawnFailure::Transient(reason) => {
                let secs = policy::SPAWN_RETRY_SECS;
                out.log(
                    Level::Error,
                    messages::spawn_retry(&job.def.name, &reason, secs),
                );
                job.next = Next::StartAt(now.plus_secs(secs));
            }
            SpawnFailure::Job(reason) => {
                out.log(Level::Error, messages::spawn_failed(&job.def.name, &reason));
                job.start_failed = true;
                job.gate_open = true;
                let placeholder = ExitStatus::Code(-1);
                job.next = match policy::after_exit(&job.def, placeholder, now, now, true) {
                    AfterExit::RestartAt(t) => Next::StartAt(t),
                    AfterExit::Done(_) => Next::Rest(Rest::Done),
                };
            }
        }
    }

    fn on_setup_failed(&mut self, pid: Pid, step: SetupStep, reason: &str, out: &mut Actions) {
        let Some(job) = self.jobs.iter_mut().find(|j| j.leader() == Some(pid)) else {
            return;
        };
        out.log(
            Level::Error,
            messages::setup_failed(&job.def, pid, step, reason),
        );
        job.start_failed = true;
        if let Some(instance) = &mut job.instance {
            instance.setup_failed = true;
        }
    }

    fn on_reaped(&mut self, pid: Pid, status: ExitStatus, now: Mono, out: &mut Actions) {
        let Some(job) = self.jobs.iter_mut().find(|j| j.leader() == Some(pid)) else {
            // An orphan a job left behind (or, as PID 1, anyone's). Its end
            // may have emptied a group that is draining: look again.
            out.log(Level::Debug, messages::orphan(pid, status));
            for instance in self.jobs.iter().filter_map(|j| j.instance) {
                if !instance.leader_alive {
                    out.push(Action::Probe { pgid: instance.pid });
                }
            }
            return;
        };
        let Some(instance) = &mut job.instance else {
            return;
        };
        instance.leader_alive = false;
        let ran_secs = now.millis_since(instance.started) / 1000;
        if !instance.setup_failed {
            out.log(
                Level::Info,
                messages::exited(&job.def.name, pid, ran_secs, status),
            );
        }
        job.last_exit = Some(status);
        job.gate_open = true;
        if job.stop.is_none() && self.shutdown.is_none() {
            let decision = policy::after_exit(
                &job.def,
                status,
                instance.started,
                now,
                instance.setup_failed,
            );
            job.next = match decision {
                AfterExit::Done(why) => {
                    out.log(Level::Info, messages::not_restarting(&job.def.name, why));
                    Next::Rest(Rest::Done)
                }
                AfterExit::RestartAt(at) => {
                    if at > now {
                        out.log(
                            Level::Info,
                            messages::restarting_in(&job.def.name, at.millis_since(now) / 1000),
                        );
                    }
                    Next::StartAt(at)
                }
            };
        }
        // The group may outlive its leader: the job is gone only when the
        // group is.
        out.push(Action::Probe { pgid: pid });
    }

    fn on_probed(&mut self, pgid: Pid, alive: bool, now: Mono, out: &mut Actions) {
        let Some(index) = self
            .jobs
            .iter()
            .position(|j| j.instance.is_some_and(|i| i.pid == pgid && !i.leader_alive))
        else {
            return;
        };
        let job = &mut self.jobs[index];
        let Some(instance) = &mut job.instance else {
            return;
        };
        if !alive {
            job.instance = None;
            // Shutdown and self-exits need nothing more: `next` already says
            // what follows.
            job.stop = None;
            return;
        }
        if instance.term_sent.is_none() {
            out.log(Level::Info, messages::leftovers(&job.def.name, pgid));
            out.push(Action::Signal {
                pgid,
                signal: StopSignal::Term,
            });
            instance.term_sent = Some(now);
        } else if instance.kill_sent {
            instance.probe_at = Some(now.plus_millis(policy::REPROBE_MILLIS));
        }
    }

    fn on_timer(&mut self, now: Mono, out: &mut Actions) {
        for job in &mut self.jobs {
            let Some(instance) = &mut job.instance else {
                continue;
            };
            if instance
                .kill_due(policy::KILL_AFTER_SECS)
                .is_some_and(|t| t <= now)
            {
                kill(&job.def.name, instance, now, out);
            }
            if instance.probe_at.is_some_and(|t| t <= now) {
                instance.probe_at = None;
                out.push(Action::Probe { pgid: instance.pid });
            }
        }
    }

    fn on_shutdown(&mut self, signal: i32, now: Mono, out: &mut Actions) {
        if let Some(shutdown) = &mut self.shutdown {
            if !shutdown.forced {
                shutdown.forced = true;
                for job in &mut self.jobs {
                    if let Some(instance) = &mut job.instance {
                        if !instance.kill_sent {
                            kill(&job.def.name, instance, now, out);
                        }
                    }
                }
            }
            return;
        }
        out.log(Level::Info, messages::exiting(signal));
        self.shutdown = Some(Shutdown { forced: false });
        for job in &mut self.jobs {
            if let Some(instance) = &mut job.instance {
                job.stop = Some(StopReason::Shutdown);
                if instance.term_sent.is_none() {
                    out.log(
                        Level::Info,
                        messages::sending_term(&job.def.name, instance.pid),
                    );
                    out.push(Action::Signal {
                        pgid: instance.pid,
                        signal: StopSignal::Term,
                    });
                    instance.term_sent = Some(now);
                }
            }
        }
    }

    /// Starts every job whose time has come, in start order, up to the
    /// first `wait` job that has not exited yet.
    fn start_due(&mut self, now: Mono, out: &mut Actions) {
        if !self.started || self.shutdown.is_some() {
            return;
        }
        for job in &mut self.jobs {
            if let (None, Next::StartAt(t)) = (job.instance, job.next) {
                if t <= now {
                    job.next = Next::Spawning;
                    out.push(Action::Spawn { job: job.id });
                }
            }
            if job.gates() {
                break;
            }
        }
    }

    fn exit_if_done(&mut self, out: &mut Actions) {
        if self.shutdown.is_some()
            && !self.exit_sent
            && self.jobs.iter().all(|j| j.instance.is_none())
        {
            self.exit_sent = true;
            out.push(Action::Exit);
        }
    }
}

fn kill(name: &str, instance: &mut Instance, now: Mono, out: &mut Actions) {
    out.log(Level::Info, messages::sending_kill(name, instance.pid));
    out.push(Action::Signal {
        pgid: instance.pid,
        signal: StopSignal::Kill,
    });
    instance.kill_sent = true;
    if instance.term_sent.is_none() {
        instance.term_sent = Some(now);
    }
    instance.probe_at = Some(now.plus_millis(policy::REPROBE_MILLIS));
}

#[derive(Default)]
struct Actions(Vec<Action>);

impl Actions {
    fn push(&mut self, action: Action) {
        self.0.push(action);
    }

    fn log(&mut self, level: Level, message: String) {
        self.0.push(Action::Log { level, message });
    }
}
