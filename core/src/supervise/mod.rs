//! The supervisor: every decision about jobs — start, restart, stop,
//! escalate, shut down — as a pure function of its state, an event and
//! `now`. The shell feeds it events and executes the actions it returns;
//! `next_deadline` is the only timer the shell may wait for.

pub mod checks;
mod control;
pub mod event;
mod files;
pub mod handover;
pub mod job;
mod lifecycle;
mod lookup;
pub mod messages;
pub mod policy;
pub mod reload;
pub mod reporting;
mod rolling;
mod roster;

#[cfg(test)]
mod tests;

use event::{Action, Event, JobId, Level, Pid, Reply, ReplyToken};
use job::{JobState, Phase};
use policy::Policy;
use roster::Roster;

use std::collections::{BTreeSet, HashMap};

use crate::config::{Config, Globals};
use crate::time::Mono;

#[derive(Debug)]
pub struct Supervisor {
    /// In start order: by `order`, file order breaking ties; jobs deleted
    /// from the file but still stopping come last.
    jobs: Roster,
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
    /// The global statements in force, applied by the shell at start.
    globals: Globals,
    /// `pmtr-ctl reload` requests waiting for the file to be read.
    reload_replies: Vec<ReplyToken>,
    /// `pmtr-ctl wait` requests waiting for their jobs.
    waiters: Vec<checks::Waiter>,
    /// pmtr's own `READY=1` went out (SPEC 11.3).
    ready_sent: bool,
    /// Jobs with instances whose copies restart one at a time.
    rolls: Vec<rolling::Roll>,
    /// Where each job is in `jobs`, and which job each process group
    /// (by its leader's pid) was started for: what events look up, so an
    /// event costs the same with ten jobs or ten thousand. Both are
    /// checked against `jobs` before use (lookup.rs).
    positions: HashMap<JobId, usize>,
    groups: HashMap<Pid, JobId>,
    /// Where the jobs of each name are, and the copies of each job with
    /// instances: what control requests name (a flood of names over UDP
    /// costs a lookup each, not a scan). Rebuilt with `positions`, which
    /// every change to the list of jobs does; hits are checked.
    names: HashMap<String, Vec<usize>>,
    /// When an unknown name from afar was last logged, and how many have
    /// gone unlogged since (a datagram can carry hundreds).
    unknown_logged: Option<(Mono, u64)>,
    /// Jobs a shutdown has yet to stop: it stops them a batch per turn
    /// (`SHUTDOWN_BATCH`), so that 10 000 jobs' signals and log lines do
    /// not hold the loop in one turn.
    to_stop: std::collections::VecDeque<JobId>,
    /// Jobs removed from the file whose escapees get SIGKILL at the time
    /// if they outlived the stop signal (`Action::EndEscapees`).
    escapee_kills: Vec<(Mono, String)>,
}

#[derive(Clone, Copy, Debug)]
struct Shutdown {
    /// A second SIGTERM/SIGINT came: SIGKILL was sent to everything.
    forced: bool,
    /// pmtr's exit status once everything is stopped: 0 after a signal,
    /// a `critical` job's status after its end (SPEC 11.5).
    status: u8,
}

impl Supervisor {
    /// A supervisor for `config`, whose file content hashes to
    /// `config_hash` (a later read of the same content changes nothing).
    pub fn new(config: &Config, config_hash: u64) -> Supervisor {
        Supervisor::with_policy(config, config_hash, Policy::default())
    }

    /// The timing rules this supervisor keeps.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A supervisor that keeps `policy`'s times instead of the defaults.
    pub fn with_policy(config: &Config, config_hash: u64, policy: Policy) -> Supervisor {
        let mut supervisor = Supervisor {
            jobs: Roster::with_capacity(config.jobs.len()),
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
            globals: config.globals.clone(),
            reload_replies: Vec::new(),
            waiters: Vec::new(),
            ready_sent: false,
            rolls: Vec::new(),
            positions: HashMap::new(),
            groups: HashMap::new(),
            names: HashMap::new(),
            unknown_logged: None,
            to_stop: std::collections::VecDeque::new(),
            escapee_kills: Vec::new(),
        };
        supervisor.set_reporting(!config.globals.report_to.is_empty(), Mono::ZERO);
        for index in config.start_order() {
            let id = supervisor.new_id();
            supervisor
                .jobs
                .push(JobState::new(id, config.jobs[index].clone()));
        }
        supervisor.reindex();
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
        self.handle_all(vec![event], now)
    }

    /// Applies events that arrived together (a wake-up's reaps, a batch's
    /// starts), in order, then decides once what follows from them all —
    /// due starts, pmtr's readiness, waiters, the end — instead of once per
    /// event: each of those reads every job.
    pub fn handle_all(&mut self, events: Vec<Event>, now: Mono) -> Vec<Action> {
        let mut out = Actions::default();
        for event in events {
            self.dispatch(event, now, &mut out);
        }
        self.end_if_critical_ended(now, &mut out);
        self.advance_rolls(now, &mut out);
        self.start_due(now, &mut out);
        self.ready_if_settled(&mut out);
        self.answer_waiters(now, &mut out);
        self.report_if_due(now, &mut out);
        self.exit_if_done(&mut out);
        out.0
    }

    fn dispatch(&mut self, event: Event, now: Mono, out: &mut Actions) {
        match event {
            Event::Start => self.on_start(out),
            Event::Spawned { job, pid } => self.on_spawned(job, pid, now, out),
            Event::SpawnFailed { job, failure } => self.on_spawn_failed(job, failure, now, out),
            Event::SetupFailed { pid, step, reason } => {
                self.on_setup_failed(pid, step, &reason, out)
            }
            Event::Reaped { pid, status } => self.on_reaped(pid, status, now, out),
            Event::Probed { pgid, alive } => self.on_probed(pgid, alive, now, out),
            Event::Timer => self.on_timer(now, out),
            Event::Shutdown { signal } => self.on_shutdown(signal, now, out),
            Event::ConfigTouched { saved } => self.on_config_touched(saved, now, out),
            Event::ReloadRequested { reply } => self.on_reload_requested(reply, out),
            Event::Reexec { reply } => match self.handover_blocked() {
                Some(why) => out.reply(Some(reply), false, format!("reexec refused: {why}")),
                None => out.push(Action::Reexec { reply }),
            },
            Event::ConfigRead {
                hash,
                forced,
                result,
            } => self.on_config_read(hash, forced, result, now, out),
            Event::DependencyTouched { path } => self.on_dependency_touched(path, now),
            Event::FilesHashed { hashes } => self.on_files_hashed(hashes, now, out),
            Event::SetEnabled {
                name,
                enabled,
                reply,
            } => self.on_override(&name, enabled, reply, now, out),
            Event::Restart { name, reply } => self.on_restart(&name, reply, now, out),
            Event::Checked {
                job,
                pid,
                ok,
                output,
            } => self.on_checked(job, pid, ok, output, now, out),
            Event::Notified { pgid, notice } => self.on_notified(pgid, notice, now, out),
            Event::Wait {
                jobs,
                timeout_millis,
                reply,
            } => self.on_wait(jobs, timeout_millis, reply, now, out),
            Event::Status { job, reply } => self.on_status(job.as_deref(), reply, now, out),
            Event::Logs { job, reply } => self.on_logs(job, reply, out),
        }
    }

    /// The earliest time something is due: a start, a SIGKILL, a probe,
    /// a bounce, a settled file, a report. `None` when nothing is: the
    /// shell then waits for events only.
    pub fn next_deadline(&mut self) -> Option<Mono> {
        self.refresh_roster();
        let mut earliest: Option<Mono> = None;
        let mut consider = |t: Option<Mono>| {
            if let Some(t) = t {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        };
        consider(self.jobs.earliest_deadline());
        if self.started && self.shutdown.is_none() {
            // A job behind a `wait` job that has not exited waits for
            // that exit, one that comes `after` another for it to be
            // ready, one missing a dependency file for the file: events,
            // not times.
            let first_gate = self.jobs.first_gate().unwrap_or(usize::MAX);
            for position in self.jobs.waiting().take_while(|&p| p <= first_gate) {
                let job = &self.jobs[position];
                if let Phase::Waiting { until, .. } = job.phase {
                    if self.after_met(job) && self.files_present(job) {
                        consider(Some(until));
                    }
                }
            }
        }
        if !self.to_stop.is_empty() {
            // The next batch of a shutdown's stops: at once.
            consider(Some(Mono::ZERO));
        }
        if self.shutdown.is_none() {
            for settle in [self.reload_due, self.hash_due].into_iter().flatten() {
                consider(Some(settle.due));
            }
            if self.started {
                consider(self.report_due);
            }
        }
        consider(self.waiters_due());
        consider(self.escapee_kills.iter().map(|(due, _)| *due).min());
        earliest
    }

    /// Brings the index of jobs up to date before a decision reads it.
    fn refresh_roster(&mut self) {
        self.jobs.refresh(&self.policy, self.shutdown.is_some());
    }

    #[cfg(test)]
    fn assert_roster_consistent(&mut self) {
        let shutting_down = self.shutdown.is_some();
        self.jobs
            .assert_index_matches_a_rebuild(&self.policy, shutting_down);
    }

    /// True when every dependency file of `job` is known to exist.
    fn files_present(&self, job: &JobState) -> bool {
        job.dependencies()
            .all(|p| matches!(self.dependencies.get(&p), Some(Some(_))))
    }

    fn exit_if_done(&mut self, out: &mut Actions) {
        let Some(shutdown) = self.shutdown else {
            return;
        };
        self.refresh_roster();
        if !self.exit_sent && self.jobs.active() == 0 {
            self.exit_sent = true;
            out.push(Action::Exit {
                status: shutdown.status,
            });
        }
    }

    /// A `critical` job ended for good (SPEC 11.5): pmtr shuts down, and
    /// exits with the job's status once everything is stopped.
    fn end_if_critical_ended(&mut self, now: Mono, out: &mut Actions) {
        if self.shutdown.is_some() {
            return;
        }
        self.refresh_roster();
        let Some(position) = self.jobs.first_ended_critical() else {
            return;
        };
        let job = &self.jobs[position];
        let status = exit_status_of(job.last_exit);
        out.log(
            Level::Info,
            messages::critical_ended(&job.def.name, job.last_exit, status),
        );
        self.shut_down(status, now, out);
    }
}

/// The status pmtr exits with for a job that ended as `last`: its exit
/// code, 128 + the signal that killed it (as a shell says), or 127 for a
/// job that never ran (as a shell says of a command it cannot run).
pub fn exit_status_of(last: Option<event::ExitStatus>) -> u8 {
    match last {
        Some(event::ExitStatus::Code(code)) => (code & 0xff) as u8,
        Some(event::ExitStatus::Signal { number, .. }) => (128 + number).clamp(0, 255) as u8,
        Some(event::ExitStatus::Unknown) => 1,
        None => 127,
    }
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

    /// Answers a control request that was carried out (`ok`) or refused,
    /// if someone waits for the answer.
    fn reply(&mut self, token: Option<ReplyToken>, ok: bool, message: impl Into<String>) {
        if let Some(token) = token {
            let message = message.into();
            self.answer(token, Reply::Done { ok, message });
        }
    }

    fn answer(&mut self, token: ReplyToken, reply: Reply) {
        self.0.push(Action::Reply { token, reply });
    }
}
