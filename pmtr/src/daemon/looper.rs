//! The event loop: one thread, one epoll, one wait. Every source is a
//! descriptor — the signalfd, each job's status and output pipes — and the
//! only timeout is the supervisor's next deadline. Each wakeup handles, in
//! order: signals, reaping, pipes, due timers; each event goes to the
//! supervisor and the actions it returns are executed here.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use pmtr_core::config::Config;
use pmtr_core::config::Globals;
use pmtr_core::proto::report;
use pmtr_core::supervise::event::{Action, Event, Level, Pid, Reply, ReplyToken};
use pmtr_core::supervise::Supervisor;
use pmtr_core::time::Mono;

use super::control::ControlServer;
use super::log::Logger;
use super::metrics::MetricsFile;
use super::notify::Notifier;
use super::output::{Capture, Drained};
use super::rings::Rings;
use super::spawner::Setup;
use super::test_times;
use super::udp::Udp;
use super::watch::{self, Touched, Watcher};
use crate::config_file;
use crate::reason::Text;
use crate::sys::plan::PlanContext;
use crate::sys::process;

/// The monotonic clock, in the core's units.
pub(super) struct Clock(Instant);

impl Clock {
    pub(super) fn now(&self) -> Mono {
        Mono::from_millis(self.0.elapsed().as_millis().try_into().unwrap_or(u64::MAX))
    }
}

pub struct Daemon {
    pub(super) supervisor: Supervisor,
    pub(super) epoll: Epoll,
    signals: SignalFd,
    watcher: Watcher,
    config_path: PathBuf,
    pub(super) logger: Logger,
    pub(super) clock: Clock,
    pub(super) context: PlanContext,
    pub(super) captures: HashMap<RawFd, Capture>,
    pub(super) control: Option<ControlServer>,
    pub(super) rings: Rings,
    metrics: Option<MetricsFile>,
    /// Wall-clock time (Unix seconds) at monotonic zero, for metrics.
    wall_offset: f64,
    notifier: Notifier,
    udp: Udp,
    pub(super) setups: HashMap<RawFd, Setup>,
    pub(super) setup_of_pid: HashMap<Pid, RawFd>,
    /// The core's answers to control requests, taken by `requests.rs`
    /// right after the `apply` that produced them.
    pub(super) replies: Vec<(ReplyToken, Reply)>,
    /// The last reply token handed out.
    pub(super) next_token: u64,
    exit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("unable to {what}: {}", Text(*.errno))]
pub struct LoopError {
    what: &'static str,
    errno: Errno,
}

impl Daemon {
    /// A daemon for `config`, read from `config_path` with content hash
    /// `config_hash`, serving local control on `socket`.
    pub fn new(
        config: &Config,
        config_hash: u64,
        config_path: &Path,
        socket: Option<&Path>,
        signals: SignalFd,
        mut logger: Logger,
        context: PlanContext,
    ) -> Result<Daemon, LoopError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|errno| LoopError {
            what: "create the epoll instance",
            errno,
        })?;
        epoll
            .add(
                signals.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, token(signals.as_fd().as_raw_fd())),
            )
            .map_err(|errno| LoopError {
                what: "watch signals",
                errno,
            })?;
        let (times, unknown_times) = test_times::from_environment();
        for item in unknown_times {
            let variable = test_times::VARIABLE;
            logger.log(Level::Warning, &format!("{variable}: ignoring `{item}`"));
        }
        let supervisor = Supervisor::with_policy(config, config_hash, times.policy);
        let (mut watcher, mut errors) = Watcher::new(config_path);
        errors.extend(watcher.set_dependencies(&supervisor.dependency_paths()));
        for error in errors {
            logger.log(Level::Warning, &error.to_string());
        }
        if let Some(fd) = watcher.fd() {
            if let Err(errno) = epoll.add(
                fd,
                EpollEvent::new(EpollFlags::EPOLLIN, token(fd.as_raw_fd())),
            ) {
                logger.log(
                    Level::Warning,
                    &format!("unable to watch files: {}; reload with SIGHUP", Text(errno)),
                );
            }
        }
        let control =
            socket.and_then(
                |path| match ControlServer::bind(path, times.client_deadline_millis) {
                    Ok(server) => {
                        let fd = server.listener_fd();
                        match epoll.add(
                            server.listener(),
                            EpollEvent::new(EpollFlags::EPOLLIN, token(fd)),
                        ) {
                            Ok(()) => Some(server),
                            Err(errno) => {
                                logger.log(
                                    Level::Warning,
                                    &format!("unable to serve the control socket: {}", Text(errno)),
                                );
                                None
                            }
                        }
                    }
                    Err(error) => {
                        logger.log(
                            Level::Warning,
                            &format!("{error}; pmtr-ctl will not reach this pmtr"),
                        );
                        None
                    }
                },
            );
        let daemon = Daemon {
            supervisor,
            epoll,
            signals,
            watcher,
            config_path: config_path.to_path_buf(),
            logger,
            clock: Clock(Instant::now()),
            context,
            captures: HashMap::new(),
            control,
            rings: Rings::default(),
            metrics: None,
            wall_offset: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            notifier: Notifier::from_env(),
            udp: Udp::new(),
            setups: HashMap::new(),
            setup_of_pid: HashMap::new(),
            replies: Vec::new(),
            next_token: 0,
            exit: false,
        };
        Ok(daemon)
    }

    /// Runs until the supervisor says everything is stopped.
    pub fn run(&mut self) {
        // Dependencies are known before the first start: a job whose file
        // is missing waits for it.
        let paths = self.supervisor.dependency_paths();
        self.apply(hash_files(paths));
        self.apply(Event::Start);
        self.notifier.ready();
        process::release_free_memory();
        let mut ready = vec![EpollEvent::empty(); 64];
        let signal_fd = self.signals.as_fd().as_raw_fd();
        while !self.exit {
            let count = match self.epoll.wait(&mut ready, self.timeout()) {
                Ok(count) => count,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    self.logger
                        .log(Level::Error, &format!("epoll_wait: {}", Text(errno)));
                    continue;
                }
            };
            let fds: Vec<RawFd> = ready[..count].iter().map(|e| e.data() as RawFd).collect();
            if fds.contains(&signal_fd) {
                self.read_signals();
            }
            let watch_fd = self.watcher.fd().map(|fd| fd.as_raw_fd());
            if watch_fd.is_some_and(|fd| fds.contains(&fd)) {
                for touched in self.watcher.read() {
                    self.apply(match touched {
                        Touched::Config => Event::ConfigTouched,
                        Touched::Dependency(path) => Event::DependencyTouched { path },
                    });
                }
            }
            let others: Vec<RawFd> = fds
                .into_iter()
                .filter(|&fd| fd != signal_fd && Some(fd) != watch_fd)
                .collect();
            for &fd in &others {
                if self.control.as_ref().is_some_and(|c| c.owns(fd)) {
                    self.serve(fd);
                } else if self.udp.listener().is_some_and(|l| l.as_raw_fd() == fd) {
                    self.receive_control();
                }
            }
            for fd in others {
                if self.setups.contains_key(&fd) {
                    self.read_setup(fd);
                } else if self.captures.contains_key(&fd) {
                    self.read_capture(fd);
                }
            }
            let now = self.clock.now();
            if let Some(control) = &mut self.control {
                control.expire(&self.epoll, now);
            }
            if self.supervisor.next_deadline().is_some_and(|t| t <= now) {
                self.apply(Event::Timer);
            }
        }
    }

    /// Milliseconds until the next deadline, rounded up; none: wait for
    /// events only.
    fn timeout(&self) -> EpollTimeout {
        let clients = self.control.as_ref().and_then(ControlServer::next_deadline);
        let deadline = match (self.supervisor.next_deadline(), clients) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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
        let mut shutdown = Vec::new();
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => child_exited = true,
                Ok(signal @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)) => {
                    shutdown.push(signal as i32)
                }
                Ok(Signal::SIGHUP) => reload = true,
                _ => {}
            }
        }
        // Exits first: a job that died before the shutdown signal is not
        // signalled again.
        if child_exited {
            self.reap();
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

    fn reap(&mut self) {
        let mut events = Vec::new();
        for (pid, status) in process::reap_all() {
            // A child that failed before exec wrote why, then exited: its
            // reason comes before its exit, so that the exit is not logged
            // as the job's own.
            if let Some(fd) = self.setup_of_pid.get(&pid).copied() {
                events.extend(self.take_setup(fd));
            }
            events.push(Event::Reaped { pid, status });
        }
        self.apply_all(events);
    }

    fn read_setup(&mut self, fd: RawFd) {
        if let Some(event) = self.take_setup(fd) {
            self.apply(event);
        }
    }

    /// Job output: logged, kept in the job's ring, sent to followers.
    fn read_capture(&mut self, fd: RawFd) {
        let Daemon {
            captures,
            logger,
            rings,
            control,
            epoll,
            clock,
            ..
        } = self;
        let Some(capture) = captures.get_mut(&fd) else {
            return;
        };
        let now = clock.now();
        let drained = capture.drain(&mut |job: &str, pid: i32, line: &str| {
            logger.log(Level::Info, &format!("{job}[{pid}]: {line}"));
            rings.push(job, pid, line);
            if let Some(control) = control.as_mut() {
                control.broadcast(epoll, job, pid, line, now);
            }
        });
        if drained == Drained::Closed {
            if let Some(capture) = self.captures.remove(&fd) {
                let _ = self.epoll.delete(capture.fd());
            }
        }
    }

    /// Drops the output rings of jobs a reload deleted.
    fn forget_deleted_jobs_output(&mut self) {
        let names: std::collections::HashSet<&str> = self
            .supervisor
            .jobs()
            .iter()
            .map(|j| j.def.name.as_str())
            .collect();
        self.rings.retain(|name| names.contains(name));
    }

    /// Opens, closes or keeps the UDP sockets, key and metrics file the
    /// global statements ask for.
    fn apply_globals(&mut self, globals: &Globals) {
        let path = globals.metrics_to.as_deref().map(Path::new);
        if path != self.metrics.as_ref().map(|m| m.path()) {
            self.metrics = path.map(MetricsFile::new);
        }
        for line in self.udp.apply(globals) {
            self.logger.log(Level::Info, &line);
        }
        if let Some(listener) = self.udp.listener() {
            let fd = listener.as_raw_fd();
            // EEXIST: the same listener, already watched.
            let _ = self
                .epoll
                .add(listener, EpollEvent::new(EpollFlags::EPOLLIN, token(fd)));
        }
    }

    /// Control datagrams: each passing request becomes an event.
    fn receive_control(&mut self) {
        let (requests, log) = self.udp.receive();
        for line in log {
            self.logger.log(Level::Warning, &line);
        }
        let events = requests
            .into_iter()
            .map(|(name, enabled)| Event::SetEnabled {
                name,
                enabled,
                reply: None,
            })
            .collect();
        self.apply_all(events);
    }

    /// The status report, to every `report to` destination.
    fn send_report(&mut self) {
        let jobs = self.supervisor.report(self.clock.now());
        for line in self
            .udp
            .send_report(|report_id| report::encode(report_id, &jobs))
        {
            self.logger.log(Level::Warning, &line);
        }
    }

    /// Rewrites the metrics file if its text changed.
    fn update_metrics(&mut self) {
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        let statuses = self.supervisor.statuses(self.clock.now());
        if let Err(message) =
            metrics.update(pmtr_core::metrics::render(&statuses, self.wall_offset))
        {
            self.logger.log(Level::Warning, &message);
        }
    }

    /// Hands an event to the supervisor and executes what it decides;
    /// actions that produce events (a spawn, a probe) feed them back.
    pub(super) fn apply(&mut self, first: Event) {
        self.apply_all(vec![first]);
    }

    /// Applies events in order. Starts are gathered until every event
    /// (and every event they led to) is handled, then forked together: 500
    /// jobs that die at once come back in batches, not one by one.
    fn apply_all(&mut self, events: Vec<Event>) {
        let mut queue = VecDeque::from(events);
        let mut spawns = Vec::new();
        let mut reloaded = false;
        let mut report_pending = false;
        loop {
            let Some(event) = queue.pop_front() else {
                if spawns.is_empty() {
                    if reloaded {
                        self.forget_deleted_jobs_output();
                        self.notifier.ready();
                        process::release_free_memory();
                    }
                    if report_pending {
                        self.send_report();
                    }
                    self.update_metrics();
                    return;
                }
                queue.extend(self.spawn_all(std::mem::take(&mut spawns)));
                continue;
            };
            let now = self.clock.now();
            for action in self.supervisor.handle(event, now) {
                match action {
                    Action::Spawn { job, def } => spawns.push((job, def)),
                    Action::Signal { pgid, signal } => {
                        if let Err(errno) = process::signal_group(pgid, signal) {
                            let message =
                                format!("unable to signal process group {pgid}: {}", Text(errno));
                            self.logger.log(Level::Error, &message);
                        }
                    }
                    Action::Probe { pgid } => queue.push_back(Event::Probed {
                        pgid,
                        alive: process::group_alive(pgid),
                    }),
                    Action::Log { level, message } => self.logger.log(level, &message),
                    Action::ReadConfig { forced } => {
                        if !reloaded {
                            self.notifier.reloading();
                        }
                        reloaded = true;
                        queue.push_back(self.read_config(forced));
                    }
                    Action::WatchFiles { paths } => {
                        for error in self.watcher.set_dependencies(&paths) {
                            self.logger.log(Level::Warning, &error.to_string());
                        }
                        queue.push_back(hash_files(paths));
                    }
                    Action::HashFiles { paths } => queue.push_back(hash_files(paths)),
                    // After this round's starts, so that it shows them.
                    Action::SendReport => report_pending = true,
                    Action::ApplyGlobals { globals } => self.apply_globals(&globals),
                    Action::Reply { token, reply } => self.replies.push((token, reply)),
                    Action::Exit => self.exit = true,
                }
            }
        }
    }

    /// Reads and checks the configuration file for a reload.
    fn read_config(&mut self, forced: bool) -> Event {
        let result = match config_file::read(&self.config_path) {
            Err(error) => {
                let text = error.to_string();
                return Event::ConfigRead {
                    hash: watch::content_hash(text.as_bytes()),
                    forced,
                    result: Err(text),
                };
            }
            Ok(bytes) => (watch::content_hash(&bytes), bytes),
        };
        let (hash, bytes) = result;
        let result = match pmtr_core::config::parse(&bytes) {
            Ok(config) => Ok(Box::new(config)),
            Err(diagnostics) => {
                let shown = self.config_path.to_string_lossy();
                Err(pmtr_core::config::render_all(
                    &diagnostics,
                    &shown,
                    &bytes,
                    SHOWN_ERRORS,
                ))
            }
        };
        for error in self.watcher.refresh_config() {
            self.logger.log(Level::Warning, &error.to_string());
        }
        Event::ConfigRead {
            hash,
            forced,
            result,
        }
    }
}

/// Most errors of a rejected configuration logged on reload.
const SHOWN_ERRORS: usize = 50;

fn hash_files(paths: Vec<String>) -> Event {
    let hashes = paths.into_iter().map(|path| {
        let hash = watch::file_hash(&path);
        (path, hash)
    });
    Event::FilesHashed {
        hashes: hashes.collect(),
    }
}

pub(super) fn token(fd: RawFd) -> u64 {
    fd as u64
}
