//! The event loop: one thread, one epoll, one wait. Each wake-up turns
//! readiness into events — signals (and reaping) first, then inotify, the
//! control socket and UDP, then status and output pipes, then due timers —
//! feeds each to the supervisor and executes the actions it returns. The
//! only timeout is the supervisor's next deadline (or a control client's).
//! The parts it drives own their descriptors: the registry says whose an
//! event is.

use std::collections::VecDeque;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use pmtr_core::supervise::event::{
    Action, Check, Event, ExitStatus, Level, Pid, Reply, ReplyToken,
};
use pmtr_core::supervise::Supervisor;
use pmtr_core::time::Mono;

mod clients;
mod outside;
mod reading;
mod resources;
mod setup;
mod takeover;

use reading::hash_files;

use super::cgroups::Containment;
use super::checks::Checks;
use super::control::ControlServer;
use super::handover::{Inherited, StateFile};
use super::log::Logger;
use super::metrics::MetricsFile;
use super::notices::NotifySocket;
use super::notify::Notifier;
use super::output::Captures;
use super::registry::{Registry, Source, Token};
use super::spawner::Spawner;
use super::udp::{ControlBudget, Udp};
use super::usage::{Measurer, OomWatch};
use super::watch::{Touched, Watcher};
use crate::sys::plan::PlanContext;
use crate::sys::process;
use pmtr_common::reason::Text;

/// The system's monotonic clock (`CLOCK_MONOTONIC`), in the core's units:
/// the same for every process since boot, so that the times in the state
/// file mean the same to the next pmtr (SPEC 11.8).
struct Clock;

impl Clock {
    fn now(&self) -> Mono {
        let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) else {
            // Not for want of anything: the clock always exists.
            return Mono::ZERO;
        };
        let millis = (now.tv_sec() as u64)
            .saturating_mul(1000)
            .saturating_add(now.tv_nsec() as u64 / 1_000_000);
        Mono::from_millis(millis)
    }
}

pub struct Daemon {
    supervisor: Supervisor,
    registry: Registry,
    signals: SignalFd,
    watcher: Watcher,
    config_path: PathBuf,
    logger: Logger,
    clock: Clock,
    spawner: Spawner,
    /// What every plan is built from: resolved once at start.
    context: PlanContext,
    captures: Captures,
    checks: Checks,
    /// Where jobs send sd_notify datagrams; none if it could not be made.
    notices: Option<NotifySocket>,
    control: Option<ControlServer>,
    udp: Udp,
    udp_token: Option<Token>,
    udp_budget: ControlBudget,
    metrics: Option<MetricsFile>,
    /// Wall-clock time (Unix seconds) at monotonic zero, for metrics.
    wall_offset: f64,
    notifier: Notifier,
    /// pmtr's own `READY=1` went out: later reloads end with one too.
    ready_sent: bool,
    /// When to give memory back: a quiet second (`release_after_millis`)
    /// after start-up, a reload or a large round of starts (sooner, what a
    /// reload sets off — the changed jobs' stops and starts — would fault
    /// it all back in, and cost it time).
    release_due: Option<Mono>,
    /// `pmtr-ctl wait` clients, by the token their answer will carry.
    waiting: std::collections::HashMap<ReplyToken, Token>,
    /// The core's answers to control requests, taken right after the
    /// `apply` that produced them.
    replies: Vec<(ReplyToken, Reply)>,
    /// The last reply token handed out.
    last_token: u64,
    /// The status to exit with, once the supervisor says everything is
    /// stopped.
    exit: Option<u8>,
    /// The last reap took a full batch: more children may have exited.
    reaping: bool,
    /// Configurations read in this turn, applied at the start of the next.
    read_configs: Vec<Event>,
    /// The cgroup subtree pmtr contains jobs in, if it has one (SPEC 11.7).
    containment: Option<Containment>,
    oom: OomWatch,
    /// The memory and CPU time of running jobs, by leader, as last read
    /// for metrics; and when to read them again (metrics only).
    usage: std::collections::HashMap<Pid, (Option<u64>, Option<u64>)>,
    usage_due: Option<Mono>,
    measurer: Measurer,
    /// What the pmtr before this one left, until taken over at the start.
    inherited: Option<Inherited>,
    /// The state file (SPEC 11.8), and whether the jobs changed since it
    /// was written.
    state_file: Option<StateFile>,
    state_dirty: bool,
    /// When the state file, changed meanwhile, may be written again.
    state_due: Option<Mono>,
    /// How long a reexec's new binary may take to check the state.
    reexec_check_millis: u64,
    release_after_millis: u64,
    /// A `pmtr-ctl reexec` whose new binary is checking the state.
    reexec: Option<takeover::PendingReexec>,
    /// Jobs adopted from a pmtr that died, followed through a pidfd each
    /// (they are not pmtr's children), by registration.
    adopted: std::collections::HashMap<Token, (Pid, std::os::fd::OwnedFd)>,
}

/// How often the usage series of the metrics file are brought up to date:
/// Prometheus's default scrape interval.
const USAGE_EVERY_MILLIS: u64 = 15_000;

/// Most children reaped in one turn of the loop.
const REAP_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("unable to {what}: {}", Text(*.errno))]
pub struct LoopError {
    what: &'static str,
    errno: Errno,
}

impl Daemon {
    /// Runs until the supervisor says everything is stopped; the status
    /// to exit with (SPEC 11.5).
    pub fn run(&mut self) -> u8 {
        // Dependencies are known before the first start: a job whose file
        // is missing waits for it.
        let paths = self.supervisor.dependency_paths();
        self.apply(hash_files(paths));
        if let Some(inherited) = self.inherited.take() {
            self.take_over(inherited);
        }
        self.apply(Event::Start);
        self.release_soon();
        let mut ready = vec![EpollEvent::empty(); 64];
        // The supervisor's next deadline, computed once per turn: it reads
        // every job.
        let mut deadline = self.supervisor.next_deadline();
        while self.exit.is_none() {
            let more = !self.read_configs.is_empty();
            let busy = self.spawner.has_queued() || self.reaping || more;
            if !busy && self.release_due.is_some_and(|t| t <= self.clock.now()) {
                // At a wait, not where the work ended: the code that ran
                // up to here is dropped too, and only what the next
                // wake-up runs comes back.
                self.release_due = None;
                release_memory();
            }
            let timeout = match busy {
                true => EpollTimeout::ZERO,
                false => self.timeout(deadline),
            };
            let count = match self.registry.wait(&mut ready, timeout) {
                Ok(count) => count,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    let message = format!("epoll_wait: {}", Text(errno));
                    self.logger.log(Level::Error, &message);
                    continue;
                }
            };
            // Turns of their own: what is ready stays ready for the next.
            if self.state_due.is_some_and(|t| t <= self.clock.now()) {
                self.write_state();
                continue;
            }
            if !self.read_configs.is_empty() {
                // Read in the turn before (10 000 jobs take tens of
                // milliseconds to read, and as many to apply).
                let read = std::mem::take(&mut self.read_configs);
                self.apply_all(read);
                deadline = self.supervisor.next_deadline();
                continue;
            }
            self.spawner.new_wakeup();
            let sources: Vec<(Source, Token)> = ready[..count]
                .iter()
                .filter_map(|event| self.registry.resolve(event))
                .collect();
            self.dispatch(&sources);
            let now = self.clock.now();
            if let Some(control) = &mut self.control {
                control.expire(&mut self.registry, now);
            }
            if self.udp_budget.resume_due(now) {
                self.watch_udp(EpollFlags::EPOLLIN);
            }
            if self.usage_due.is_some_and(|t| t <= now) {
                self.refresh_usage(now);
            }
            self.finish_reexec();
            deadline = self.supervisor.next_deadline();
            if deadline.is_some_and(|t| t <= now) {
                self.apply(Event::Timer);
                deadline = self.supervisor.next_deadline();
            }
            if self.reaping && !sources.iter().any(|(source, _)| *source == Source::Signals) {
                self.reap();
                deadline = self.supervisor.next_deadline();
            }
            if self.spawner.has_queued() {
                self.apply_all(Vec::new());
                // While starts stay queued the next turn does not wait, and
                // reads the deadline again after its events: reading every
                // job here as well would double what each turn of a large
                // round of starts spends on it.
                if !self.spawner.has_queued() {
                    deadline = self.supervisor.next_deadline();
                }
            }
        }
        self.end_leftovers();
        if let Some(state_file) = &self.state_file {
            state_file.remove();
        }
        self.exit.unwrap_or(0)
    }

    /// One batch of readiness, in the loop's order. A registration that
    /// ends while the batch is handled leaves a token its owner no longer
    /// holds: the events after find nobody, even if the fd is reused.
    fn dispatch(&mut self, sources: &[(Source, Token)]) {
        let pass = |wanted: &'static [Source]| {
            let wanted = move |(source, _): &&(Source, Token)| wanted.contains(source);
            sources.iter().filter(wanted).copied()
        };
        if pass(&[Source::Signals]).next().is_some() {
            self.read_signals();
        }
        if pass(&[Source::Watcher]).next().is_some() {
            for touched in self.watcher.read() {
                self.apply(match touched {
                    Touched::Config { saved } => Event::ConfigTouched { saved },
                    Touched::Dependency(path) => Event::DependencyTouched { path },
                });
            }
        }
        let network = &[
            Source::ControlListener,
            Source::ControlClient,
            Source::UdpListener,
        ];
        for (source, token) in pass(network) {
            match source {
                Source::UdpListener => self.receive_control(),
                _ => self.serve(source, token),
            }
        }
        if pass(&[Source::Notify]).next().is_some() {
            self.receive_notices();
        }
        if pass(&[Source::Cgroups]).next().is_some() {
            self.cgroups_emptied();
        }
        for (_, token) in pass(&[Source::Usage]) {
            if let Some((purpose, measured)) = self.measurer.finished(&mut self.registry, token) {
                self.measured(purpose, measured);
            }
        }
        let ended: Vec<Token> = pass(&[Source::Adopted]).map(|(_, token)| token).collect();
        if !ended.is_empty() {
            self.adopted_ended(&ended);
        }
        for (_, token) in pass(&[Source::Check]) {
            if let Some(event) = self.checks.ready(&mut self.registry, token) {
                self.apply(event);
            }
        }
        for (source, token) in pass(&[Source::Setup, Source::Capture]) {
            match source {
                Source::Setup => {
                    if let Some(event) = self.spawner.read_setup(&mut self.registry, token) {
                        self.apply(event);
                    }
                }
                _ => self.read_capture(token),
            }
        }
    }

    /// Gives memory back after a quiet moment (`release_due`).
    fn release_soon(&mut self) {
        self.release_due = Some(self.clock.now().plus_millis(self.release_after_millis));
    }

    /// Milliseconds until the next deadline (the supervisor's, given, a
    /// control client's, the end of a pause of the control port, pmtr's
    /// own timers), rounded up; none: wait for events only.
    fn timeout(&self, supervisor: Option<Mono>) -> EpollTimeout {
        let clients = self.control.as_ref().and_then(ControlServer::next_deadline);
        let deadline = [
            supervisor,
            clients,
            self.udp_budget.deadline(),
            self.usage_due,
            self.state_due,
            self.release_due,
            self.reexec.as_ref().and_then(|r| r.deadline()),
        ]
        .into_iter()
        .flatten()
        .min();
        match deadline {
            None => EpollTimeout::NONE,
            Some(deadline) => {
                let millis = deadline.millis_since(self.clock.now());
                EpollTimeout::try_from(millis.min(i32::MAX as u64)).unwrap_or(EpollTimeout::MAX)
            }
        }
    }

    fn read_signals(&mut self) {
        let mut child_exited = false;
        let mut reload = false;
        let mut reopen = false;
        let mut shutdown = Vec::new();
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => child_exited = true,
                Ok(signal @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)) => {
                    shutdown.push(signal as i32)
                }
                Ok(Signal::SIGHUP) => reload = true,
                Ok(Signal::SIGUSR1) => reopen = true,
                _ => {}
            }
        }
        // Exits first: a job that died before the shutdown signal is not
        // signalled again.
        if child_exited {
            self.reap();
        }
        if reopen {
            self.logger.log(
                Level::Info,
                "reopening the output files pmtr writes (SIGUSR1)",
            );
            self.captures.reopen_files();
            for warning in self.captures.take_warnings() {
                self.logger.log(Level::Warning, &warning);
            }
        }
        if reload {
            self.apply(Event::ReloadRequested { reply: None });
        }
        if !shutdown.is_empty() && !self.supervisor.is_shutting_down() {
            self.notifier.stopping();
        }
        for signal in shutdown {
            self.apply(Event::Shutdown { signal });
        }
    }

    /// Reaps a batch of exited children; if there may be more, the loop
    /// comes back for them at once (`reaping`).
    fn reap(&mut self) {
        let mut events = Vec::new();
        let reaped = process::reap_some(REAP_BATCH);
        self.reaping = reaped.len() == REAP_BATCH;
        let killed: Vec<Pid> = (reaped.iter())
            .filter(|(_, status)| matches!(status, ExitStatus::Signal { number: 9, .. }))
            .map(|&(pid, _)| pid)
            .collect();
        if !killed.is_empty() {
            self.log_oom_kills(&killed);
        }
        for (pid, status) in reaped {
            if let Some(event) = self.checks.reaped(&mut self.registry, pid, status) {
                events.push(event);
                continue;
            }
            if self.reexec.as_ref().is_some_and(|r| r.checker() == pid) {
                self.reexec_checked(status);
                continue;
            }
            events.extend(self.spawner.reaped(&mut self.registry, pid));
            events.push(Event::Reaped { pid, status });
        }
        self.apply_all(events);
    }

    /// Job output: logged (or written to its file), kept in the job's
    /// ring, sent to followers.
    fn read_capture(&mut self, token: Token) {
        let Daemon {
            captures,
            logger,
            control,
            registry,
            clock,
            ..
        } = self;
        let now = clock.now();
        let mut lines = Vec::new();
        // Asked once per read, not per line.
        let followed = captures
            .job_of(token)
            .is_some_and(|job| control.as_ref().is_some_and(|c| c.follows(job)));
        captures.read(
            registry,
            token,
            followed,
            &mut |job: &str, pid: i32, line: &str, to_log| {
                if to_log {
                    logger.log(Level::Info, &format!("{job}[{pid}]: {line}"));
                }
                if followed {
                    lines.push((job.to_string(), pid, line.to_string()));
                }
            },
        );
        if let Some(control) = control.as_mut() {
            for (job, pid, line) in lines {
                control.broadcast(registry, &job, pid, &line, now);
            }
        }
        for warning in captures.take_warnings() {
            logger.log(Level::Warning, &warning);
        }
    }

    /// sd_notify datagrams from jobs.
    fn receive_notices(&mut self) {
        let Some(notices) = &self.notices else {
            return;
        };
        let events = notices
            .receive()
            .into_iter()
            .map(|(pgid, notice)| Event::Notified { pgid, notice })
            .collect();
        self.apply_all(events);
    }

    /// Hands an event to the supervisor and executes what it decides;
    /// actions that produce events (a spawn, a probe) feed them back.
    fn apply(&mut self, first: Event) {
        self.apply_all(vec![first]);
    }

    /// Applies events in order. Starts are queued until every event (and
    /// every event they led to) is handled, then made in batches, one per
    /// wake-up: 500 jobs that die at once come back in batches, not one by
    /// one, and 10 000 jobs starting leave the loop free between batches.
    fn apply_all(&mut self, events: Vec<Event>) {
        let mut queue = VecDeque::from(events);
        let mut reloaded = false;
        let mut report_pending = false;
        let mut escapees = Vec::new();
        loop {
            if queue.is_empty() {
                if self.spawner.has_queued() {
                    self.context.mounts.refresh_if_changed();
                }
                let (context, registry) = (&self.context, &mut self.registry);
                let started = self.spawner.spawn_some(
                    context,
                    registry,
                    &mut self.captures,
                    self.containment.as_mut(),
                );
                let Some(started) = started else {
                    if reloaded {
                        self.forget_deleted_jobs();
                        if self.ready_sent {
                            self.notifier.ready();
                        }
                        self.release_soon();
                    } else if self.spawner.take_settled() {
                        self.release_soon();
                    }
                    if !escapees.is_empty() {
                        self.end_escapees(&escapees);
                    }
                    self.answer_waiting();
                    self.state_changed();
                    if report_pending {
                        self.send_report();
                    }
                    self.update_metrics();
                    return;
                };
                if let Some(state_file) = &mut self.state_file {
                    for event in &started {
                        if let Event::Spawned { pid, .. } = event {
                            state_file.started(*pid);
                        }
                    }
                }
                queue.extend(started);
                for warning in self.spawner.take_warnings() {
                    self.logger.log(Level::Error, &warning);
                }
                continue;
            }
            // Everything queued, at once: what follows from the events is
            // decided once for all of them (Supervisor::handle_all).
            let events: Vec<Event> = queue.drain(..).collect();
            self.state_dirty |= events.iter().any(changes_state);
            reloaded |= events.iter().any(|e| matches!(e, Event::ConfigRead { .. }));
            let now = self.clock.now();
            for action in self.supervisor.handle_all(events, now) {
                match action {
                    Action::Spawn { job, def } => self.spawner.queue(job, def),
                    Action::Signal { pgid, signal } => self.signal(pgid, signal),
                    Action::Probe { pgid } => {
                        let contained = self.containment.as_mut().and_then(|c| c.populated(pgid));
                        queue.push_back(Event::Probed {
                            pgid,
                            alive: contained.unwrap_or_else(|| process::group_alive(pgid)),
                        })
                    }
                    Action::Log { level, message } => self.logger.log(level, &message),
                    Action::ReadConfig { forced } => {
                        self.notifier.reloading();
                        let read = self.read_config(forced);
                        if forced {
                            // A reload someone asked for (pmtr-ctl reload,
                            // SIGHUP), answered in this turn.
                            reloaded = true;
                            queue.push_back(read);
                        } else {
                            // A saved file, applied in the next turn:
                            // reading 10 000 jobs and applying them are
                            // each tens of milliseconds, and one turn
                            // should not hold both.
                            self.read_configs.push(read);
                        }
                    }
                    Action::WatchFiles { paths } => {
                        for error in self.watcher.set_dependencies(&paths) {
                            self.logger.log(Level::Warning, &error.to_string());
                        }
                        queue.push_back(hash_files(paths));
                    }
                    Action::HashFiles { paths } => queue.push_back(hash_files(paths)),
                    Action::Check { job, pid, check } => {
                        if matches!(check, Check::Cmd { .. }) {
                            self.context.mounts.refresh_if_changed();
                        }
                        let (registry, context) = (&mut self.registry, &self.context);
                        queue.extend(self.checks.check(registry, context, job, pid, check));
                    }
                    Action::CancelCheck { job } => self.checks.cancel(&mut self.registry, job),
                    Action::Ready => {
                        self.ready_sent = true;
                        self.notifier.ready();
                    }
                    // After this round's starts, so that it shows them.
                    Action::SendReport => report_pending = true,
                    Action::ApplyGlobals { globals } => self.apply_globals(&globals),
                    Action::Reply { token, reply } => self.replies.push((token, reply)),
                    Action::Exit { status } => self.exit = Some(status),
                    Action::Reexec { reply } => self.begin_reexec(reply),
                    Action::EndEscapees { name, signal } => escapees.push((name, signal)),
                }
            }
        }
    }
}

/// Whether `event` may change what the state file says: a process, a
/// pending start, an override, a configuration. Questions do not.
fn changes_state(event: &Event) -> bool {
    !matches!(
        event,
        Event::Status { .. }
            | Event::Logs { .. }
            | Event::Wait { .. }
            | Event::Notified { .. }
            | Event::Checked { .. }
            | Event::ConfigTouched { .. }
            | Event::DependencyTouched { .. }
    )
}

/// Gives back what a spell of work left resident and idle pmtr does not
/// use: freed heap, and the pages of code it ran (start-up's and a
/// reload's parsing are most of them).
fn release_memory() {
    pmtr_common::memory::release_free_memory();
    crate::sys::code::release_code_pages();
}
