//! Starting jobs from the event loop: pipes, plans and forks in batches,
//! and the status pipes through which children report a failed setup.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::unistd::pipe2;
use pmtr_core::config::{Job, Output};
use pmtr_core::supervise::event::{Event, JobId, Level, Pid, SpawnFailure};

use super::looper::{token, Daemon};
use super::output::Capture;
use crate::reason::{strerror, Text};
use crate::sys::child::decode_failure;
use crate::sys::plan::ExecPlan;
use crate::sys::spawn::{spawn, status_pipe, Forked};

/// Most starts prepared before their forks run back to back; bounds the
/// descriptors held at once (two pipes per start).
const SPAWN_BATCH: usize = 64;

/// A start with everything resolved, waiting for its fork.
struct Prepared {
    job: JobId,
    name: String,
    plan: ExecPlan,
    /// The capture pipe (read end, write end), for `syslog` streams.
    capture: Option<(OwnedFd, OwnedFd)>,
    /// The status pipe, until the fork takes it.
    status: Option<(OwnedFd, OwnedFd)>,
}

/// The status pipe of a child that has not exec'd yet.
pub(super) struct Setup {
    pub(super) pid: Pid,
    pub(super) pipe: OwnedFd,
}

impl Daemon {
    /// Reads a child's status pipe: end-of-file (it exec'd) or the step
    /// that failed. Either way the pipe is done with.
    pub(super) fn take_setup(&mut self, fd: RawFd) -> Option<Event> {
        let setup = self.setups.get(&fd)?;
        let mut message = [0u8; 8];
        let read = nix::unistd::read(&setup.pipe, &mut message);
        if read == Err(Errno::EAGAIN) || read == Err(Errno::EINTR) {
            return None;
        }
        let pid = setup.pid;
        self.forget_setup(fd);
        let (step, errno) = decode_failure(&message[..read.ok()?])?;
        Some(Event::SetupFailed {
            pid,
            step,
            reason: strerror(errno),
        })
    }

    pub(super) fn forget_setup(&mut self, fd: RawFd) {
        if let Some(setup) = self.setups.remove(&fd) {
            self.setup_of_pid.remove(&setup.pid);
            let _ = self.epoll.delete(setup.pipe.as_fd());
        }
    }

    /// Starts jobs in batches: every plan of a batch is built first, then
    /// the forks run back to back. Each page pmtr writes after a fork is a
    /// copy-on-write fault, so writing little between forks is most of the
    /// cost of a start that pmtr controls.
    ///
    /// A batch that runs short of a resource (descriptors) stops growing and
    /// forks what it holds: the descriptors come back, and the starts that
    /// failed are retried, instead of every start holding a part and none
    /// getting all.
    pub(super) fn spawn_all(&mut self, jobs: Vec<(JobId, Box<Job>)>) -> Vec<Event> {
        let mut events = Vec::with_capacity(jobs.len());
        let batch = SPAWN_BATCH.min(jobs.len());
        let mut pending = jobs.into_iter();
        let mut more = true;
        while more {
            let mut prepared = Vec::with_capacity(batch);
            while prepared.len() < SPAWN_BATCH {
                let Some((job, def)) = pending.next() else {
                    more = false;
                    break;
                };
                match self.prepare(job, &def) {
                    Ok(start) => prepared.push(start),
                    Err(failure) => {
                        let short = matches!(failure, SpawnFailure::Transient(_));
                        events.push(Event::SpawnFailed { job, failure });
                        if short && !prepared.is_empty() {
                            break;
                        }
                    }
                }
            }
            let mut forked = Vec::with_capacity(prepared.len());
            for start in &mut prepared {
                forked.push(match start.status.take() {
                    Some(status) => spawn(&start.plan, status),
                    None => Err(Errno::EBADF),
                });
            }
            for (start, result) in prepared.into_iter().zip(forked) {
                events.push(self.finish(start, result));
            }
        }
        events
    }

    /// Everything a start needs before the fork: its pipes and its plan.
    fn prepare(&self, id: JobId, job: &Job) -> Result<Prepared, SpawnFailure> {
        let short =
            |what: &str, errno: Errno| SpawnFailure::Transient(format!("{what}: {}", Text(errno)));
        let wants_capture = job.stdout == Output::Syslog || job.stderr == Output::Syslog;
        let capture = if wants_capture {
            // The read end is pmtr's and never blocks; the write end is the
            // job's stdout and blocks like any.
            let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|errno| short("pipe", errno))?;
            let _ = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
            Some((read, write))
        } else {
            None
        };
        let status = status_pipe().map_err(|errno| short("pipe", errno))?;
        let plan = ExecPlan::build(
            job,
            &self.context,
            capture.as_ref().map(|(_, w)| w.as_raw_fd()),
        )
        .map_err(|error| SpawnFailure::Job(error.to_string()))?;
        Ok(Prepared {
            job: id,
            name: job.name.clone(),
            plan,
            capture,
            status: Some(status),
        })
    }

    /// After the fork: keep the pipes, or report why the fork failed.
    fn finish(&mut self, start: Prepared, result: Result<Forked, Errno>) -> Event {
        let Prepared {
            job,
            name,
            plan,
            capture,
            ..
        } = start;
        drop(plan);
        let forked = match result {
            Ok(forked) => forked,
            Err(errno) => {
                return Event::SpawnFailed {
                    job,
                    failure: SpawnFailure::Transient(format!("fork: {}", Text(errno))),
                }
            }
        };
        if let Some((read, _write)) = capture {
            self.watch_capture(Capture::new(name, forked.pid, read));
        }
        self.watch_setup(Setup {
            pid: forked.pid,
            pipe: forked.status,
        });
        Event::Spawned {
            job,
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
