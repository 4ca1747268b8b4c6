//! The event loop: one thread, one epoll, one wait. Every source is a
//! descriptor — the signalfd, each job's status and output pipes — and the
//! only timeout is the supervisor's next deadline. Each wakeup handles, in
//! order: signals, reaping, pipes, due timers; each event goes to the
//! supervisor and the actions it returns are executed here.

use crate::reason::{strerror, Text};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::pipe2;
use pmtr_core::config::{Config, Output};
use pmtr_core::supervise::event::{Action, Event, JobId, Level, Pid, SpawnFailure};
use pmtr_core::supervise::Supervisor;
use pmtr_core::time::Mono;

use super::log::Logger;
use super::output::{Capture, Drained};
use crate::sys::child::decode_failure;
use crate::sys::plan::{ExecPlan, PlanContext};
use crate::sys::process;
use crate::sys::spawn::spawn;

/// The monotonic clock, in the core's units.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Mono {
        Mono::from_millis(self.0.elapsed().as_millis().try_into().unwrap_or(u64::MAX))
    }
}

/// The status pipe of a child that has not exec'd yet.
struct Setup {
    pid: Pid,
    pipe: OwnedFd,
}

pub struct Daemon {
    supervisor: Supervisor,
    epoll: Epoll,
    signals: SignalFd,
    logger: Logger,
    clock: Clock,
    context: PlanContext,
    captures: HashMap<RawFd, Capture>,
    setups: HashMap<RawFd, Setup>,
    setup_of_pid: HashMap<Pid, RawFd>,
    exit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("unable to {what}: {}", Text(*.errno))]
pub struct LoopError {
    what: &'static str,
    errno: Errno,
}

impl Daemon {
    pub fn new(
        config: &Config,
        signals: SignalFd,
        logger: Logger,
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
        Ok(Daemon {
            supervisor: Supervisor::new(config),
            epoll,
            signals,
            logger,
            clock: Clock(Instant::now()),
            context,
            captures: HashMap::new(),
            setups: HashMap::new(),
            setup_of_pid: HashMap::new(),
            exit: false,
        })
    }

    /// Runs until the supervisor says everything is stopped.
    pub fn run(&mut self) {
        self.apply(Event::Start);
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
            for fd in fds.into_iter().filter(|&fd| fd != signal_fd) {
                if self.setups.contains_key(&fd) {
                    self.read_setup(fd);
                } else if self.captures.contains_key(&fd) {
                    self.read_capture(fd);
                }
            }
            if self
                .supervisor
                .next_deadline()
                .is_some_and(|t| t <= self.clock.now())
            {
                self.apply(Event::Timer);
            }
        }
    }

    /// Milliseconds until the next deadline, rounded up; none: wait for
    /// events only.
    fn timeout(&self) -> EpollTimeout {
        match self.supervisor.next_deadline() {
            None => EpollTimeout::NONE,
            Some(deadline) => {
                let millis = deadline.millis_since(self.clock.now());
                EpollTimeout::try_from(millis.min(i32::MAX as u64)).unwrap_or(EpollTimeout::MAX)
            }
        }
    }

    fn read_signals(&mut self) {
        let mut child_exited = false;
        let mut shutdown = Vec::new();
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => child_exited = true,
                Ok(signal @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)) => {
                    shutdown.push(signal as i32)
                }
                Ok(Signal::SIGHUP) => {
                    self.logger.log(
                        Level::Info,
                        "SIGHUP: reloading is not supported yet; ignored",
                    );
                }
                _ => {}
            }
        }
        // Exits first: a job that died before the shutdown signal is not
        // signalled again.
        if child_exited {
            self.reap();
        }
        for signal in shutdown {
            self.apply(Event::Shutdown { signal });
        }
    }

    fn reap(&mut self) {
        for (pid, status) in process::reap_all() {
            // A child that failed before exec wrote why, then exited: read
            // the reason before the exit so that the exit is not logged as
            // the job's own.
            if let Some(fd) = self.setup_of_pid.get(&pid).copied() {
                self.read_setup(fd);
            }
            self.apply(Event::Reaped { pid, status });
        }
    }

    fn read_setup(&mut self, fd: RawFd) {
        let Some(setup) = self.setups.get(&fd) else {
            return;
        };
        let mut message = [0u8; 8];
        let read = nix::unistd::read(&setup.pipe, &mut message);
        if read == Err(Errno::EAGAIN) || read == Err(Errno::EINTR) {
            return;
        }
        let pid = setup.pid;
        self.forget_setup(fd);
        if let Ok(n) = read {
            if let Some((step, errno)) = decode_failure(&message[..n]) {
                let reason = strerror(errno);
                self.apply(Event::SetupFailed { pid, step, reason });
            }
        }
    }

    fn forget_setup(&mut self, fd: RawFd) {
        if let Some(setup) = self.setups.remove(&fd) {
            self.setup_of_pid.remove(&setup.pid);
            let _ = self.epoll.delete(setup.pipe.as_fd());
        }
    }

    fn read_capture(&mut self, fd: RawFd) {
        let Some(capture) = self.captures.get_mut(&fd) else {
            return;
        };
        if capture.drain(&mut self.logger) == Drained::Closed {
            if let Some(capture) = self.captures.remove(&fd) {
                let _ = self.epoll.delete(capture.fd());
            }
        }
    }

    /// Hands an event to the supervisor and executes what it decides;
    /// actions that produce events (a spawn, a probe) feed them back.
    fn apply(&mut self, first: Event) {
        let mut queue = VecDeque::from([first]);
        while let Some(event) = queue.pop_front() {
            let now = self.clock.now();
            for action in self.supervisor.handle(event, now) {
                match action {
                    Action::Spawn { job } => queue.push_back(self.spawn(job)),
                    Action::Signal { pgid, signal } => {
                        if let Err(errno) = process::signal_group(pgid, signal) {
                            self.logger.log(
                                Level::Error,
                                &format!("unable to signal process group {pgid}: {}", Text(errno)),
                            );
                        }
                    }
                    Action::Probe { pgid } => queue.push_back(Event::Probed {
                        pgid,
                        alive: process::group_alive(pgid),
                    }),
                    Action::Log { level, message } => self.logger.log(level, &message),
                    Action::Exit => self.exit = true,
                }
            }
        }
    }

    /// Starts a job: capture pipe, plan, fork. Every failure comes back as
    /// an event for the supervisor to decide on.
    fn spawn(&mut self, id: JobId) -> Event {
        let Some(job) = self.supervisor.job(id) else {
            return Event::SpawnFailed {
                job: id,
                failure: SpawnFailure::Job("unknown job".into()),
            };
        };
        let transient = |what: &str, errno: Errno| Event::SpawnFailed {
            job: id,
            failure: SpawnFailure::Transient(format!("{what}: {}", Text(errno))),
        };
        let wants_capture = job.stdout == Output::Syslog || job.stderr == Output::Syslog;
        let capture = if wants_capture {
            match pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
                Ok(pipe) => Some(pipe),
                Err(errno) => return transient("pipe", errno),
            }
        } else {
            None
        };
        let plan = match ExecPlan::build(
            job,
            &self.context,
            capture.as_ref().map(|(_, w)| w.as_raw_fd()),
        ) {
            Ok(plan) => plan,
            Err(error) => {
                return Event::SpawnFailed {
                    job: id,
                    failure: SpawnFailure::Job(error.to_string()),
                }
            }
        };
        // The child's end of the capture must block like any stdout.
        if let Some((_, write)) = &capture {
            let _ = nix::fcntl::fcntl(write, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()));
        }
        let forked = match spawn(&plan) {
            Ok(forked) => forked,
            Err(errno) => return transient("fork", errno),
        };
        drop(plan);
        let name = job.name.clone();
        if let Some((read, _write)) = capture {
            self.watch_capture(Capture::new(name, forked.pid, read));
        }
        self.watch_setup(Setup {
            pid: forked.pid,
            pipe: forked.status,
        });
        Event::Spawned {
            job: id,
            pid: forked.pid,
        }
    }

    fn watch_capture(&mut self, capture: Capture) {
        let fd = capture.fd().as_raw_fd();
        match self.epoll.add(
            capture.fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, token(fd)),
        ) {
            Ok(()) => {
                self.captures.insert(fd, capture);
            }
            Err(errno) => self.logger.log(
                Level::Error,
                &format!("unable to watch job output: {}", Text(errno)),
            ),
        }
    }

    fn watch_setup(&mut self, setup: Setup) {
        let fd = setup.pipe.as_raw_fd();
        // Unwatched, the pipe is still read when the child is reaped.
        let _ = self.epoll.add(
            setup.pipe.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, token(fd)),
        );
        self.setup_of_pid.insert(setup.pid, fd);
        self.setups.insert(fd, setup);
    }
}

fn token(fd: RawFd) -> u64 {
    fd as u64
}
