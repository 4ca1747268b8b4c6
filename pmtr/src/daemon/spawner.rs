//! Starting jobs: pipes, plans and forks in batches, and the status pipes
//! through which children report a failed setup. The spawner owns those
//! pipes; what it learns it returns as events.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::EpollFlags;
use nix::unistd::pipe2;
use pmtr_core::config::{EnvVar, Job, Output};

use super::notify::VARIABLE as NOTIFY_VARIABLE;
use pmtr_core::supervise::event::{Event, JobId, Pid, SpawnFailure};

use super::output::{Capture, Captures, Sink};
use super::registry::{Registry, Source, Token};
use crate::sys::child::decode_failure;
use crate::sys::plan::ExecPlan;
use crate::sys::plan::{Captured, PlanContext};
use crate::sys::spawn::{spawn, status_pipe, Forked};
use pmtr_common::reason::{strerror, Text};

/// Most starts prepared before their forks run back to back; bounds the
/// descriptors held at once (two pipes per start).
const SPAWN_BATCH: usize = 64;

/// Capacity asked for the pipe of a stream pmtr writes to a file.
const FILE_PIPE_BYTES: i32 = 1 << 20;

/// A start with everything resolved, waiting for its fork.
struct Prepared<'context> {
    job: JobId,
    name: String,
    plan: ExecPlan<'context>,
    /// The capture pipes (where their lines go, read end, write end): one
    /// per destination of the job's captured streams.
    captures: Vec<(Sink, OwnedFd, OwnedFd)>,
    /// The status pipe, until the fork takes it.
    status: Option<(OwnedFd, OwnedFd)>,
}

/// The status pipe of a child that has not exec'd yet.
struct Setup {
    pid: Pid,
    pipe: OwnedFd,
}

pub struct Spawner {
    setups: HashMap<Token, Setup>,
    setup_of_pid: HashMap<Pid, Token>,
    /// What went wrong without stopping a start, for the log.
    warnings: Vec<String>,
    /// Every child of the last starts has exec'd (or failed): the memory
    /// the starts used is free.
    settled: bool,
    /// `NOTIFY_SOCKET` for jobs that speak sd_notify.
    notify_address: Option<String>,
}

impl Spawner {
    pub fn new() -> Spawner {
        Spawner {
            setups: HashMap::new(),
            setup_of_pid: HashMap::new(),
            warnings: Vec::new(),
            settled: false,
            notify_address: None,
        }
    }

    /// The notify socket's address, given to jobs with `ready notify` or
    /// `health watchdog`.
    pub fn set_notify_address(&mut self, address: Option<String>) {
        self.notify_address = address;
    }

    /// Reads a child's status pipe: end-of-file (it exec'd) or the step
    /// that failed. Either way the pipe is done with.
    pub fn read_setup(&mut self, registry: &mut Registry, token: Token) -> Option<Event> {
        let setup = self.setups.get(&token)?;
        let mut message = [0u8; 8];
        let read = nix::unistd::read(&setup.pipe, &mut message);
        if read == Err(Errno::EAGAIN) || read == Err(Errno::EINTR) {
            return None;
        }
        let pid = setup.pid;
        self.forget_setup(registry, token);
        let (step, errno) = decode_failure(&message[..read.ok()?])?;
        Some(Event::SetupFailed {
            pid,
            step,
            reason: strerror(errno),
        })
    }

    /// True once after the last child of a round of starts has exec'd:
    /// a moment to give freed memory back.
    pub fn take_settled(&mut self) -> bool {
        std::mem::take(&mut self.settled)
    }

    /// What went wrong since the last call, for the log.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// A child was reaped: what its status pipe says, read now so that a
    /// failed setup comes before the exit (which is then not logged as
    /// the job's own).
    pub fn reaped(&mut self, registry: &mut Registry, pid: Pid) -> Option<Event> {
        let token = self.setup_of_pid.get(&pid).copied()?;
        self.read_setup(registry, token)
    }

    fn forget_setup(&mut self, registry: &mut Registry, token: Token) {
        if let Some(setup) = self.setups.remove(&token) {
            self.setup_of_pid.remove(&setup.pid);
            registry.remove(setup.pipe.as_fd(), token);
        }
        // Sized for the busiest moment (every job of a start forked and
        // not exec'd yet): give the tables back once that has passed.
        // A start or two leaves nothing worth giving back: trimming the
        // heap after each would cost more than it frees (a chain of
        // `after` starts its jobs one by one).
        if self.setups.is_empty() && self.setups.capacity() > SPAWN_BATCH {
            self.setups.shrink_to_fit();
            self.setup_of_pid.shrink_to_fit();
            self.settled = true;
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
    pub fn spawn_all(
        &mut self,
        context: &PlanContext,
        registry: &mut Registry,
        captures: &mut Captures,
        jobs: Vec<(JobId, Arc<Job>)>,
    ) -> Vec<Event> {
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
                let def = with_notify(def, self.notify_address.as_deref());
                match prepare(context, job, &def) {
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
                events.push(self.finish(registry, captures, start, result));
            }
        }
        events
    }

    /// After the fork: keep the pipes, or report why the fork failed.
    fn finish(
        &mut self,
        registry: &mut Registry,
        captures: &mut Captures,
        start: Prepared<'_>,
        result: Result<Forked, Errno>,
    ) -> Event {
        let Prepared {
            job,
            name,
            plan,
            captures: pipes,
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
        for (sink, read, _write) in pipes {
            let capture = Capture::new(name.clone(), forked.pid, read, sink);
            if let Err(errno) = captures.watch(registry, capture) {
                let warning = format!("unable to watch job output: {}", Text(errno));
                self.warnings.push(warning);
            }
        }
        self.watch_setup(
            registry,
            Setup {
                pid: forked.pid,
                pipe: forked.status,
            },
        );
        Event::Spawned {
            job,
            pid: forked.pid,
        }
    }

    fn watch_setup(&mut self, registry: &mut Registry, setup: Setup) {
        // Not watchable (epoll full): a failed setup then shows as an exit.
        let watched = registry.add(setup.pipe.as_fd(), EpollFlags::EPOLLIN, Source::Setup);
        if let Ok(token) = watched {
            self.setup_of_pid.insert(setup.pid, token);
            self.setups.insert(token, setup);
        }
    }
}

/// `def`, with `NOTIFY_SOCKET` (and `WATCHDOG_USEC`, as systemd sets it)
/// in its environment if it speaks sd_notify.
fn with_notify(def: Arc<Job>, address: Option<&str>) -> Arc<Job> {
    let Some(address) = address.filter(|_| def.uses_notify()) else {
        return def;
    };
    let mut job = (*def).clone();
    let mut set = |name: &str, value: String| {
        job.env.retain(|var| var.name != name);
        job.env.push(EnvVar {
            name: name.to_string(),
            value,
        });
    };
    set(NOTIFY_VARIABLE, address.to_string());
    if let Some(millis) = def.health.watchdog_millis {
        set("WATCHDOG_USEC", (millis * 1000).to_string());
    }
    Arc::new(job)
}

/// Everything a start needs before the fork: its pipes and its plan.
fn prepare<'c>(
    context: &'c PlanContext,
    id: JobId,
    job: &Job,
) -> Result<Prepared<'c>, SpawnFailure> {
    let short =
        |what: &str, errno: Errno| SpawnFailure::Transient(format!("{what}: {}", Text(errno)));
    // The owner of files pmtr creates for the job: its user.
    let owner = match &job.user {
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Some((user.uid.as_raw(), user.gid.as_raw())),
            // The plan below says why the job cannot start.
            _ => None,
        },
        None => None,
    };
    let sink_of = |output: &Output| match output {
        Output::Syslog => Some(Sink::Log),
        Output::File(path) if job.log.written_by_pmtr() => Some(Sink::File {
            path: job.resolve(path),
            options: job.log,
            owner,
        }),
        Output::File(_) | Output::Stdout | Output::Stderr => None,
    };
    let (out_sink, err_sink) = (sink_of(&job.stdout), sink_of(&job.stderr));
    let mut captures: Vec<(Sink, OwnedFd, OwnedFd)> = Vec::new();
    let mut captured = Captured::default();
    for (sink, target) in [
        (out_sink, &mut captured.stdout),
        (err_sink, &mut captured.stderr),
    ] {
        let Some(sink) = sink else { continue };
        // Streams with one destination share a pipe: their lines keep
        // their order.
        if let Some((_, _, write)) = captures.iter().find(|(s, _, _)| *s == sink) {
            *target = Some(write.as_raw_fd());
            continue;
        }
        // The read end is pmtr's and never blocks; the write end is the
        // job's stream and blocks like any.
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|errno| short("pipe", errno))?;
        let _ = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        if let Sink::File { .. } = sink {
            // A file written in bulk: a larger pipe means fewer, larger
            // reads for pmtr and fewer stalls for the job. Not granted
            // (the user's pipe quota): the default 64 KiB does.
            let _ = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETPIPE_SZ(FILE_PIPE_BYTES));
        }
        *target = Some(write.as_raw_fd());
        captures.push((sink, read, write));
    }
    let status = status_pipe().map_err(|errno| short("pipe", errno))?;
    let plan = ExecPlan::build(job, context, captured)
        .map_err(|error| SpawnFailure::Job(error.to_string()))?;
    Ok(Prepared {
        job: id,
        name: job.name.clone(),
        plan,
        captures,
        status: Some(status),
    })
}
