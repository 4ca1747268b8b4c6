//! The supervisor: every decision about jobs — start, restart, stop,
//! escalate, shut down — as a pure function of its state, an event and
//! `now`. The shell feeds it events and executes the actions it returns;
//! `next_deadline` is the only timer the shell may wait for.

mod control;
pub mod event;
mod files;
pub mod job;
pub mod messages;
pub mod policy;
pub mod reload;
pub mod reporting;

#[cfg(test)]
mod tests;

use event::{
    Action, Event, ExitStatus, JobId, Level, Pid, ReplyToken, SetupStep, SpawnFailure, StopSignal,
};
use job::{Instance, JobState, Next, Rest, StopReason};
use policy::{AfterExit, Policy};

use std::collections::{BTreeSet, HashMap};

use crate::config::{Config, Job};
use crate::time::Mono;

#[derive(Debug)]
pub struct Supervisor {
    /// In start order: by `order`, file order breaking ties; jobs deleted
    /// from the file but still stopping come last.
    jobs: Vec<JobState>,
    policy: Policy,
    next_id: u32,
    started: bool,
    shutdown: Option<Shutdown>,
    exit_sent: bool,
    /// Content hash of the configuration last read.
    config_hash: u64,
    /// When to read the configuration file after it was touched.
    reload_due: Option<files::Settle>,
    /// When to hash the dependency files in `touched`.
    hash_due: Option<files::Settle>,
    touched: BTreeSet<String>,
    /// Content hash of each dependency file (resolved path); `None`: the
    /// file is missing. A path not known yet holds its jobs back.
    dependencies: HashMap<String, Option<u64>>,
    /// When the next status report is due; none without `report to`.
    report_due: Option<Mono>,
}

#[derive(Clone, Copy, Debug)]
struct Shutdown {
    /// A second SIGTERM/SIGINT came: SIGKILL was sent to everything.
    forced: bool,
}

impl Supervisor {
    /// A supervisor for `config`, whose file content hashes to
    /// `config_hash` (a later read of the same content changes nothing).
    pub fn new(config: &Config, config_hash: u64) -> Supervisor {
        Supervisor::with_policy(config, config_hash, Policy::default())
    }

    /// A supervisor that keeps `policy`'s times instead of the defaults.
    pub fn with_policy(config: &Config, config_hash: u64, policy: Policy) -> Supervisor {
        let mut supervisor = Supervisor {
            jobs: Vec::with_capacity(config.jobs.len()),
            policy,
            next_id: 0,
            started: false,
            shutdown: None,
            exit_sent: false,
            config_hash,
            reload_due: None,
            hash_due: None,
            touched: BTreeSet::new(),
            dependencies: HashMap::new(),
            report_due: None,
        };
        supervisor.set_reporting(!config.globals.report_to.is_empty(), Mono::ZERO);
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

    /// Every dependency file of every job, resolved, without repeats: what
    /// the shell watches and hashes before the first `Start`.
    pub fn dependency_paths(&self) -> Vec<String> {
        let paths: BTreeSet<String> = self.jobs.iter().flat_map(|j| j.dependencies()).collect();
        paths.into_iter().collect()
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
            Event::ConfigTouched => self.on_config_touched(now),
            Event::ReloadRequested => self.on_reload_requested(&mut out),
            Event::ConfigRead {
                hash,
                forced,
                result,
            } => self.on_config_read(hash, forced, result, now, &mut out),
            Event::DependencyTouched { path } => self.on_dependency_touched(path, now),
            Event::FilesHashed { hashes } => self.on_files_hashed(hashes, now, &mut out),
            Event::SetEnabled {
                name,
                enabled,
                reply,
            } => self.on_override(&name, enabled, reply, now, &mut out),
            Event::Restart { name, reply } => self.on_restart(&name, reply, now, &mut out),
        }
        self.start_due(now, &mut out);
        self.report_if_due(now, &mut out);
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
                    // A job waiting for a dependency file waits for an event.
                    if job
                        .dependencies()
                        .all(|p| matches!(self.dependencies.get(&p), Some(Some(_))))
                    {
                        consider(t);
                    }
                }
                if job.gates() {
                    break;
                }
            }
        }
        for job in &self.jobs {
            let Some(instance) = job.instance else {
                continue;
            };
            if let Some(t) = instance.kill_due(self.policy.kill_after_millis) {
                consider(t);
            }
            if let Some(t) = instance.probe_at {
                consider(t);
            }
            if let Some(t) = self.bounce_due(job) {
                consider(t);
            }
        }
        if self.shutdown.is_none() {
            for settle in [self.reload_due, self.hash_due].into_iter().flatten() {
                consider(settle.due);
            }
            if self.started {
                if let Some(due) = self.report_due {
                    consider(due);
                }
            }
        }
        earliest
    }

    /// When a running job's `bounce every` comes, if it has one.
    fn bounce_due(&self, job: &JobState) -> Option<Mono> {
        if self.shutdown.is_some() || !job.running_undisturbed() {
            return None;
        }
        let secs = job.def.bounce_every_secs?;
        Some(job.instance?.started.plus_secs(secs))
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
                let millis = self.policy.spawn_retry_millis;
                out.log(
                    Level::Error,
                    messages::spawn_retry(&job.def.name, &reason, millis),
                );
                job.next = Next::StartAt(now.plus_millis(millis));
            }
            SpawnFailure::Job(reason) => {
                out.log(Level::Error, messages::spawn_failed(&job.def.name, &reason));
                job.start_failed = true;
                job.gate_open = true;
                let placeholder = ExitStatus::Code(-1);
                job.next =
                    match policy::after_exit(&self.policy, &job.def, placeholder, now, now, true) {
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
                &self.policy,
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
                            messages::restarting_in(
                                &job.def.name,
                                self.policy.rapid_restart_millis,
                                at.millis_since(now),
                            ),
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
        if !alive {
            self.on_gone(index, now);
            return;
        }
        let job = &mut self.jobs[index];
        let Some(instance) = &mut job.instance else {
            return;
        };
        if instance.term_sent.is_none() {
            out.log(Level::Info, messages::leftovers(&job.def.name, pgid));
            out.push(Action::Signal {
                pgid,
                signal: StopSignal::Term,
            });
            instance.term_sent = Some(now);
        } else if instance.kill_sent {
            instance.probe_at = Some(now.plus_millis(self.policy.reprobe_millis));
        }
    }

    fn on_timer(&mut self, now: Mono, out: &mut Actions) {
        for index in 0..self.jobs.len() {
            if self.bounce_due(&self.jobs[index]).is_some_and(|t| t <= now) {
                let job = &mut self.jobs[index];
                let (pid, secs) = (
                    job.leader().unwrap_or(0),
                    job.def.bounce_every_secs.unwrap_or(0),
                );
                out.log(Level::Info, messages::bouncing(&job.def.name, pid, secs));
                self.stop(index, StopReason::Restart, now, out);
            }
        }
        self.files_due(now, out);
        let policy = self.policy;
        for job in &mut self.jobs {
            let Some(instance) = &mut job.instance else {
                continue;
            };
            if instance
                .kill_due(policy.kill_after_millis)
                .is_some_and(|t| t <= now)
            {
                kill(&policy, &job.def.name, instance, now, out);
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
                            kill(&self.policy, &job.def.name, instance, now, out);
                        }
                    }
                }
            }
            return;
        }
        out.log(Level::Info, messages::exiting(signal));
        self.shutdown = Some(Shutdown { forced: false });
        for index in 0..self.jobs.len() {
            if self.jobs[index].instance.is_some() {
                self.stop(index, StopReason::Shutdown, now, out);
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
                if t <= now && dependencies_ready(&self.dependencies, job, out) {
                    job.next = Next::Spawning;
                    job.missing_logged = false;
                    out.push(Action::Spawn { job: job.id });
                }
            }
            if job.gates() {
                break;
            }
        }
    }

    /// Stops job `index` for `reason`: SIGTERM to its group (SIGKILL
    /// follows from `on_timer`), or at once if it has no instance.
    fn stop(&mut self, index: usize, reason: StopReason, now: Mono, out: &mut Actions) {
        let job = &mut self.jobs[index];
        job.stop = Some(reason);
        let Some(instance) = &mut job.instance else {
            self.on_gone(index, now);
            return;
        };
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

    /// Job `index` has no process left: do what its stop was for.
    fn on_gone(&mut self, index: usize, now: Mono) {
        let job = &mut self.jobs[index];
        job.instance = None;
        match job.stop.take() {
            Some(StopReason::Remove) => {
                self.jobs.remove(index);
            }
            Some(StopReason::Restart | StopReason::Disable) => {
                if let Some(def) = job.pending.take() {
                    job.def = *def;
                }
                job.next = if job.enabled() {
                    Next::StartAt(now)
                } else {
                    Next::Rest(Rest::Disabled)
                };
            }
            // Shutdown and exits of their own: `next` says what follows.
            Some(StopReason::Shutdown) | None => {}
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
                if !job.missing_logged {
                    out.log(
                        Level::Warning,
                        messages::dependency_missing(&job.def.name, &path),
                    );
                    job.missing_logged = true;
                }
                return false;
            }
        }
    }
    true
}

fn kill(policy: &Policy, name: &str, instance: &mut Instance, now: Mono, out: &mut Actions) {
    out.log(Level::Info, messages::sending_kill(name, instance.pid));
    out.push(Action::Signal {
        pgid: instance.pid,
        signal: StopSignal::Kill,
    });
    instance.kill_sent = true;
    if instance.term_sent.is_none() {
        instance.term_sent = Some(now);
    }
    instance.probe_at = Some(now.plus_millis(policy.reprobe_millis));
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

    /// Answers a control request, if someone waits for the answer.
    fn reply(&mut self, token: Option<ReplyToken>, ok: bool, message: impl Into<String>) {
        if let Some(token) = token {
            self.0.push(Action::Reply {
                token,
                ok,
                message: message.into(),
            });
        }
    }
}
