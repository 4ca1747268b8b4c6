//! A job's life through its phases: start, exit, leftovers, stop,
//! escalation and shutdown. Each handler matches on the job's phase and
//! names every phase it ignores, so a new phase cannot slip past one
//! unnoticed (the compiler lists the handlers to extend).

use super::event::{Action, ExitStatus, JobId, Level, Pid, SetupStep, SpawnFailure, StopSignal};
use super::job::{CheckState, JobState, Phase, Run, Signals, StopReason, Then};
use super::policy::{self, AfterExit, Policy};
use super::{messages, Actions, Shutdown, Supervisor};
use crate::config::Job;
use crate::time::Mono;

use std::collections::HashMap;

use super::checks;
use super::roster::bounce_due;
use std::sync::Arc;

impl Supervisor {
    pub(super) fn on_start(&mut self, out: &mut Actions) {
        if self.started {
            return;
        }
        self.started = true;
        out.log(Level::Info, messages::starting());
        out.log(Level::Info, messages::managing(self.jobs.len()));
        let globals = Box::new(self.globals.clone());
        out.push(Action::ApplyGlobals { globals });
    }

    pub(super) fn on_spawned(&mut self, id: JobId, pid: Pid, now: Mono, out: &mut Actions) {
        let Some(index) = self.position(id) else {
            return;
        };
        let job = &mut self.jobs[index];
        let asked_to_stop = match job.phase {
            Phase::Starting { stop } => stop,
            // One group per job: the shell forks only on `Spawn`.
            Phase::Waiting { .. }
            | Phase::Running(_)
            | Phase::Stopping { .. }
            | Phase::Draining { .. }
            | Phase::Done(_)
            | Phase::Failed
            | Phase::Disabled => return,
        };
        job.phase = Phase::Running(Run::new(pid, now, &job.def));
        self.groups.insert(pid, id);
        let job = &mut self.jobs[index];
        job.starts += 1;
        job.start_failed = false;
        out.log(Level::Info, messages::started(&job.def.name, pid));
        if job.gates() {
            out.log(Level::Info, messages::waiting_for(&job.def.name));
        }
        // Stopped, shut down or disabled while the fork was on its way.
        if let Some(reason) = asked_to_stop {
            self.stop(index, reason, now, out);
        }
    }

    pub(super) fn on_spawn_failed(
        &mut self,
        id: JobId,
        failure: SpawnFailure,
        now: Mono,
        out: &mut Actions,
    ) {
        let policy = self.policy;
        let Some(index) = self.position(id) else {
            return;
        };
        let job = &mut self.jobs[index];
        let asked_to_stop = match job.phase {
            Phase::Starting { stop } => stop,
            Phase::Waiting { .. }
            | Phase::Running(_)
            | Phase::Stopping { .. }
            | Phase::Draining { .. }
            | Phase::Done(_)
            | Phase::Failed
            | Phase::Disabled => return,
        };
        match failure {
            SpawnFailure::Transient(reason) => {
                let millis = policy.spawn_retry_millis;
                out.log(
                    Level::Error,
                    messages::spawn_retry(&job.def.name, &reason, millis),
                );
                job.phase = Phase::waiting(now.plus_millis(millis));
            }
            SpawnFailure::Job(reason) => {
                out.log(Level::Error, messages::spawn_failed(&job.def.name, &reason));
                job.gate_open = true;
                job.phase = after_failed_start(&policy, job, now, out);
            }
        }
        if let Some(reason) = asked_to_stop {
            self.finish_stop(index, reason, now, out);
        }
    }

    pub(super) fn on_setup_failed(
        &mut self,
        pid: Pid,
        step: SetupStep,
        reason: &str,
        out: &mut Actions,
    ) {
        let Some(index) = self.position_of_group(pid, |p| p.leader() == Some(pid)) else {
            return;
        };
        let job = &mut self.jobs[index];
        match &mut job.phase {
            Phase::Running(run) | Phase::Stopping { run, .. } => run.setup_failed = true,
            Phase::Waiting { .. }
            | Phase::Starting { .. }
            | Phase::Draining { .. }
            | Phase::Done(_)
            | Phase::Failed
            | Phase::Disabled => return,
        }
        out.log(
            Level::Error,
            messages::setup_failed(&job.def, pid, step, reason),
        );
        job.start_failed = true;
    }

    /// The leader `pid` exited. The job drains: it is gone only when its
    /// group is, which the shell is asked to probe.
    pub(super) fn on_reaped(&mut self, pid: Pid, status: ExitStatus, now: Mono, out: &mut Actions) {
        let found = self.position_of_group(pid, |p| p.leader() == Some(pid));
        let Some(job) = found.map(|index| &mut self.jobs[index]) else {
            // An orphan a job left behind (or, as PID 1, anyone's). Its end
            // may have emptied a group that is draining: look again.
            out.log(Level::Debug, messages::orphan(pid, status));
            for job in &self.jobs {
                if let Phase::Draining { run, .. } = job.phase {
                    out.push(Action::Probe { pgid: run.pid });
                }
            }
            return;
        };
        let (run, stopping) = match job.phase {
            Phase::Running(run) => {
                if let CheckState::Out(_) = run.check {
                    out.push(Action::CancelCheck { job: job.id });
                }
                (run, None)
            }
            Phase::Stopping { run, why, signals } => (run, Some((why, signals))),
            Phase::Waiting { .. }
            | Phase::Starting { .. }
            | Phase::Draining { .. }
            | Phase::Done(_)
            | Phase::Failed
            | Phase::Disabled => return,
        };
        if !run.setup_failed {
            let ran_secs = now.millis_since(run.started) / 1000;
            out.log(
                Level::Info,
                messages::exited(&job.def.name, pid, ran_secs, status),
            );
        }
        job.last_exit = Some(status);
        job.gate_open = true;
        let (then, signals) = match stopping {
            Some((why, signals)) => (Then::Stopped(why), Some(signals)),
            None if self.shutdown.is_some() => (Then::Stopped(StopReason::Shutdown), None),
            None => (after_exit(&self.policy, job, &run, status, now, out), None),
        };
        job.phase = Phase::Draining {
            run,
            then,
            signals,
            probe_at: None,
        };
        out.push(Action::Probe { pgid: pid });
    }

    pub(super) fn on_probed(&mut self, pgid: Pid, alive: bool, now: Mono, out: &mut Actions) {
        let draining = |p: &Phase| matches!(p, Phase::Draining { run, .. } if run.pid == pgid);
        let Some(index) = self.position_of_group(pgid, draining) else {
            return;
        };
        if !alive {
            self.forget_group(pgid);
            self.on_gone(index, now, out);
            return;
        }
        let reprobe = self.policy.reprobe_millis;
        let job = &mut self.jobs[index];
        let Phase::Draining {
            signals, probe_at, ..
        } = &mut job.phase
        else {
            return;
        };
        match signals {
            None => {
                let signal = job.def.stop_signal;
                out.log(
                    Level::Info,
                    messages::leftovers(&job.def.name, pgid, signal),
                );
                out.push(Action::Signal { pgid, signal });
                *signals = Some(Signals::term(now));
            }
            Some(sent) if sent.kill_sent => *probe_at = Some(now.plus_millis(reprobe)),
            // SIGTERM went out; the kill timer runs.
            Some(_) => {}
        }
    }

    pub(super) fn on_timer(&mut self, now: Mono, out: &mut Actions) {
        self.stop_some(now, out);
        self.kill_escapees(now, out);
        let policy = self.policy;
        self.refresh_roster();
        // By id: a stop may change the list of jobs under the loop.
        let due: Vec<JobId> = self
            .jobs
            .due_by(now)
            .into_iter()
            .map(|i| self.jobs[i].id)
            .collect();
        for id in due {
            let Some(index) = self.position(id) else {
                continue;
            };
            if let Phase::Running(run) = self.jobs[index].phase {
                if self.check_timers(index, now, out) {
                    continue;
                }
                let shutting_down = self.shutdown.is_some();
                if bounce_due(&self.jobs[index], run.started, shutting_down)
                    .is_some_and(|t| t <= now)
                {
                    let job = &self.jobs[index];
                    let secs = job.def.extras.bounce_every_secs.unwrap_or(0);
                    out.log(
                        Level::Info,
                        messages::bouncing(&job.def.name, run.pid, secs),
                    );
                    self.stop(index, StopReason::Restart, now, out);
                }
                continue;
            }
            let job = &mut self.jobs[index];
            let grace = stop_timeout(&policy, &job.def);
            let kill_due = match &mut job.phase {
                Phase::Stopping { signals, .. } => signals.kill_due(grace),
                Phase::Draining {
                    run,
                    signals,
                    probe_at,
                    ..
                } => {
                    if probe_at.is_some_and(|t| t <= now) {
                        *probe_at = None;
                        out.push(Action::Probe { pgid: run.pid });
                    }
                    signals.and_then(|s| s.kill_due(grace))
                }
                Phase::Running(_)
                | Phase::Waiting { .. }
                | Phase::Starting { .. }
                | Phase::Done(_)
                | Phase::Failed
                | Phase::Disabled => None,
            };
            if kill_due.is_some_and(|t| t <= now) {
                kill(&policy, &job.def.name, &mut job.phase, now, out);
            }
        }
        self.files_due(now, out);
    }

    pub(super) fn on_shutdown(&mut self, signal: i32, now: Mono, out: &mut Actions) {
        if let Some(shutdown) = &mut self.shutdown {
            if !shutdown.forced {
                shutdown.forced = true;
                // Every stop still queued goes out first, then SIGKILL.
                while !self.to_stop.is_empty() {
                    self.stop_some(now, out);
                }
                let policy = self.policy;
                for job in self.jobs.iter_mut() {
                    let killed = job.phase.signals().is_some_and(|s| s.kill_sent);
                    if job.phase.run().is_some() && !killed {
                        kill(&policy, &job.def.name, &mut job.phase, now, out);
                    }
                }
            }
            return;
        }
        out.log(Level::Info, messages::exiting(signal));
        self.shut_down(0, now, out);
    }

    /// Stops every job; pmtr exits with `status` once all are gone.
    pub(super) fn shut_down(&mut self, status: u8, now: Mono, out: &mut Actions) {
        self.shutdown = Some(Shutdown {
            forced: false,
            status,
        });
        self.to_stop = self.jobs.iter().map(|j| j.id).collect();
        self.stop_some(now, out);
    }

    /// Stops the next batch of the jobs a shutdown has yet to stop; the
    /// rest wait for the next turn (`next_deadline` is then at once).
    fn stop_some(&mut self, now: Mono, out: &mut Actions) {
        let mut stopped = 0;
        while stopped < SHUTDOWN_BATCH {
            let Some(id) = self.to_stop.pop_front() else {
                return;
            };
            let Some(index) = self.position(id) else {
                continue;
            };
            if self.jobs[index].phase.is_active() {
                self.stop(index, StopReason::Shutdown, now, out);
                stopped += 1;
            }
        }
    }

    /// Starts every job whose time has come, in start order, up to the
    /// first `wait` job that has not exited yet.
    pub(super) fn start_due(&mut self, now: Mono, out: &mut Actions) {
        if !self.started || self.shutdown.is_some() {
            return;
        }
        // Which jobs are due and not held by `after`, decided before any
        // of them changes phase.
        let mut due = Vec::new();
        self.refresh_roster();
        let first_gate = self.jobs.first_gate().unwrap_or(usize::MAX);
        for index in self.jobs.waiting().take_while(|&i| i <= first_gate) {
            let job = &self.jobs[index];
            if let Phase::Waiting { until, .. } = job.phase {
                if until <= now && self.after_met(job) {
                    due.push(index);
                }
            }
        }
        let mut adopted = false;
        for index in due {
            let job = &mut self.jobs[index];
            if dependencies_ready(&self.dependencies, job, out) {
                // Restarting by itself while a reload's definition waited
                // (a copy queued in a rolling restart): start with it.
                if let Some(def) = job.pending.take() {
                    job.def = Arc::new(*def);
                    adopted = true;
                }
                job.phase = Phase::Starting { stop: None };
                let def = Arc::clone(&job.def);
                out.push(Action::Spawn { job: job.id, def });
            }
        }
        if adopted {
            self.reindex();
        }
    }

    /// Stops job `index` for `reason`: its `stop signal` (SIGTERM) to its
    /// group (SIGKILL follows from `on_timer`), or at once if it has no
    /// process.
    pub(super) fn stop(&mut self, index: usize, reason: StopReason, now: Mono, out: &mut Actions) {
        let job = &mut self.jobs[index];
        let signal = job.def.stop_signal;
        let term = |name: &str, pid: Pid, out: &mut Actions| {
            out.log(Level::Info, messages::sending_stop(name, pid, signal));
            out.push(Action::Signal { pgid: pid, signal });
        };
        match &mut job.phase {
            Phase::Running(run) => {
                if let CheckState::Out(_) = run.check {
                    out.push(Action::CancelCheck { job: job.id });
                }
                term(&job.def.name, run.pid, out);
                job.phase = Phase::Stopping {
                    run: *run,
                    why: reason,
                    signals: Signals::term(now),
                };
            }
            Phase::Stopping { why, .. } => *why = reason,
            Phase::Draining {
                run, then, signals, ..
            } => {
                *then = Then::Stopped(reason);
                if signals.is_none() {
                    term(&job.def.name, run.pid, out);
                    *signals = Some(Signals::term(now));
                }
            }
            Phase::Starting { stop } => *stop = Some(reason),
            Phase::Waiting { .. } | Phase::Done(_) | Phase::Failed | Phase::Disabled => {
                self.finish_stop(index, reason, now, out);
            }
        }
    }

    /// Job `def`, removed from the file, has no process left in its
    /// group: what it left outside gets its stop signal now, and SIGKILL
    /// after its stop timeout.
    pub(super) fn end_escapees(&mut self, def: &Job, now: Mono, out: &mut Actions) {
        let (name, signal) = (def.name.clone(), def.stop_signal);
        out.push(Action::EndEscapees {
            name: name.clone(),
            signal,
        });
        if signal != StopSignal::Kill {
            let kill_at = now.plus_millis(stop_timeout(&self.policy, def));
            self.escapee_kills.push((kill_at, name));
        }
    }

    /// SIGKILL for what removed jobs left behind, once their stop timeout
    /// has passed; not for a name a job has again (its processes carry
    /// the same mark).
    fn kill_escapees(&mut self, now: Mono, out: &mut Actions) {
        if !self.escapee_kills.iter().any(|(due, _)| *due <= now) {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.escapee_kills)
            .into_iter()
            .partition(|(due, _)| *due <= now);
        self.escapee_kills = later;
        for (_, name) in due {
            if !self.jobs.iter().any(|j| j.def.name == name) {
                out.push(Action::EndEscapees {
                    name,
                    signal: StopSignal::Kill,
                });
            }
        }
    }

    /// Job `index`'s group is empty: what its phase said follows.
    fn on_gone(&mut self, index: usize, now: Mono, out: &mut Actions) {
        let job = &mut self.jobs[index];
        let Phase::Draining { then, .. } = job.phase else {
            return;
        };
        match then {
            Then::StartAt(t) => job.phase = Phase::waiting(t),
            Then::Done(why) => job.phase = Phase::Done(why),
            Then::Failed => job.phase = Phase::Failed,
            Then::Stopped(reason) => self.finish_stop(index, reason, now, out),
        }
    }

    /// Job `index` has no process left after a stop for `reason`.
    fn finish_stop(&mut self, index: usize, reason: StopReason, now: Mono, out: &mut Actions) {
        let job = &mut self.jobs[index];
        match reason {
            StopReason::Remove => {
                let removed = self.jobs.remove(index);
                self.reindex();
                self.end_escapees(&removed.def, now, out);
            }
            StopReason::Restart | StopReason::Disable => {
                if let Some(def) = job.pending.take() {
                    job.def = Arc::new(*def);
                    self.reindex();
                }
                let job = &mut self.jobs[index];
                job.phase = if job.enabled() {
                    Phase::waiting(now)
                } else {
                    Phase::Disabled
                };
            }
            StopReason::Shutdown => job.phase = Phase::Done("pmtr is shutting down"),
            // A failed start: the restart policy says when to try again.
            StopReason::NotReady => {
                if let Some(def) = job.pending.take() {
                    job.def = Arc::new(*def);
                }
                let policy = self.policy;
                job.phase = after_failed_start(&policy, job, now, out);
                if let Phase::Waiting { until, .. } = job.phase {
                    let stable = job
                        .def
                        .extras
                        .stable_millis
                        .unwrap_or(policy.rapid_restart_millis);
                    let delay = until.millis_since(now);
                    out.log(
                        Level::Info,
                        messages::restarting_in(&job.def.name, stable, delay),
                    );
                }
            }
        }
    }
}

impl Supervisor {
    /// The first job `job` comes `after` that is not ready (SPEC 11.3):
    /// what holds it back, if anything.
    pub(super) fn unready_dependency<'a>(&self, job: &'a JobState) -> Option<&'a String> {
        let mut resolved = job.after_indices.iter();
        job.def.extras.after.iter().find(|name| {
            // An index kept from before a change of the list is checked
            // (by id, which is cheap), and looked up again if it is wrong.
            let dependency = match resolved.next() {
                Some(&(index, id)) => self.jobs.get(index).filter(|j| j.id == id),
                None => None,
            };
            let dependency = dependency.or_else(|| self.jobs.iter().find(|j| j.def.name == **name));
            !dependency.is_some_and(checks::is_ready)
        })
    }

    /// True when every job `job` comes `after` is ready.
    pub(super) fn after_met(&self, job: &JobState) -> bool {
        job.def.extras.after.is_empty() || self.unready_dependency(job).is_none()
    }

    /// Resolves each job's `after` names to indices in `jobs`, after the
    /// list of jobs (or a definition) changed: `after` is then looked up
    /// without hashing a name on every event.
    pub(super) fn reindex(&mut self) {
        self.index_positions();
        if self.jobs.iter().all(|j| j.def.extras.after.is_empty()) {
            return;
        }
        let by_name: HashMap<String, (usize, JobId)> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.def.name.clone(), (i, j.id)))
            .collect();
        for job in self.jobs.iter_mut() {
            // Validation leaves no unknown name; were there one, it would
            // be looked up by name each time (no job has id 0).
            let nowhere = (usize::MAX, JobId(0));
            let found = |name: &String| by_name.get(name).copied().unwrap_or(nowhere);
            job.after_indices = job.def.extras.after.iter().map(found).collect();
        }
    }
}

/// Most jobs a shutdown stops in one turn of the loop: each stop is a
/// signal and a log line.
pub(super) const SHUTDOWN_BATCH: usize = 1000;

/// How long a stop waits before SIGKILL: the job's `stop timeout`, or the
/// kill grace.
pub(super) fn stop_timeout(policy: &Policy, def: &Job) -> u64 {
    def.extras
        .stop_timeout_millis
        .unwrap_or(policy.kill_after_millis)
}

/// What follows a start that failed (the job could not be forked as
/// defined, or was not ready in time): an immediate exit under the
/// restart policy, counted as a rapid exit; a give-up is logged.
fn after_failed_start(policy: &Policy, job: &mut JobState, now: Mono, out: &mut Actions) -> Phase {
    job.start_failed = true;
    let placeholder = ExitStatus::Code(-1);
    let decision = policy::after_exit(
        policy,
        &job.def,
        placeholder,
        (now, now),
        true,
        job.rapid_exits,
    );
    job.rapid_exits = decision.rapid_exits;
    match decision.after {
        AfterExit::RestartAt(t) => Phase::waiting(t),
        AfterExit::Done(why) => Phase::Done(why),
        AfterExit::GiveUp => {
            out.log(
                Level::Warning,
                messages::giving_up(&job.def.name, job.rapid_exits),
            );
            Phase::Failed
        }
    }
}

/// What the restart rule says of a job's own exit, logged; counts the
/// job's rapid exits.
fn after_exit(
    policy: &Policy,
    job: &mut JobState,
    run: &Run,
    status: ExitStatus,
    now: Mono,
    out: &mut Actions,
) -> Then {
    let times = (run.started, now);
    let decision = policy::after_exit(
        policy,
        &job.def,
        status,
        times,
        run.setup_failed,
        job.rapid_exits,
    );
    job.rapid_exits = decision.rapid_exits;
    let name = &job.def.name;
    match decision.after {
        AfterExit::Done(why) => {
            out.log(Level::Info, messages::not_restarting(name, why));
            Then::Done(why)
        }
        AfterExit::GiveUp => {
            out.log(Level::Warning, messages::giving_up(name, job.rapid_exits));
            Then::Failed
        }
        AfterExit::RestartAt(at) => {
            if at > now {
                let stable = job
                    .def
                    .extras
                    .stable_millis
                    .unwrap_or(policy.rapid_restart_millis);
                let delay = at.millis_since(now);
                out.log(Level::Info, messages::restarting_in(name, stable, delay));
            }
            Then::StartAt(at)
        }
    }
}

/// True when every dependency of `job` is known to exist; logs the first
/// missing one, once per wait.
fn dependencies_ready(
    known: &HashMap<String, Option<u64>>,
    job: &mut JobState,
    out: &mut Actions,
) -> bool {
    let paths: Vec<String> = job.dependencies().collect();
    for path in paths {
        match known.get(&path) {
            Some(Some(_)) => {}
            // Not hashed yet: the shell answers before anything else runs.
            None => return false,
            Some(None) => {
                if let Phase::Waiting { missing_logged, .. } = &mut job.phase {
                    if !*missing_logged {
                        let message = messages::dependency_missing(&job.def.name, &path);
                        out.log(Level::Warning, message);
                        *missing_logged = true;
                    }
                }
                return false;
            }
        }
    }
    true
}

/// SIGKILL to the group of a job that has one; a draining group is
/// probed again soon, since its members may not be pmtr's children.
fn kill(policy: &Policy, name: &str, phase: &mut Phase, now: Mono, out: &mut Actions) {
    let Some(run) = phase.run().copied() else {
        return;
    };
    out.log(Level::Info, messages::sending_kill(name, run.pid));
    out.push(Action::Signal {
        pgid: run.pid,
        signal: StopSignal::Kill,
    });
    let killed = Signals {
        term_sent: phase.signals().map_or(now, |s| s.term_sent),
        kill_sent: true,
    };
    match phase {
        Phase::Running(run) => {
            *phase = Phase::Stopping {
                run: *run,
                why: StopReason::Shutdown,
                signals: killed,
            }
        }
        Phase::Stopping { signals, .. } => *signals = killed,
        Phase::Draining {
            signals, probe_at, ..
        } => {
            *signals = Some(killed);
            *probe_at = Some(now.plus_millis(policy.reprobe_millis));
        }
        Phase::Waiting { .. }
        | Phase::Starting { .. }
        | Phase::Done(_)
        | Phase::Failed
        | Phase::Disabled => {}
    }
}
