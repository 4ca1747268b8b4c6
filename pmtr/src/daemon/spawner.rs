//! Starting jobs: pipes, plans and starts in batches, and the status pipes
//! of the children made by `fork` (where a start may hang: sys/mounts.rs),
//! which report their setup later. What it learns — a job started, a setup
//! that failed, a start short of a resource — it returns as events.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::EpollFlags;
use nix::unistd::pipe2;
use pmtr_core::config::{EnvVar, Job, Output};

use super::notify::VARIABLE as NOTIFY_VARIABLE;
use pmtr_core::supervise::event::{Event, JobId, Pid, SpawnFailure};

use super::cgroups::{Containment, Entered, ToEnter};
use super::output::{Capture, Captures, FileSink, Sink};
use super::registry::{Registry, Source, Token};
use crate::sys::beside::Beside;
use crate::sys::mounts::Mounts;
use crate::sys::plan::ExecPlan;
use crate::sys::plan::{Captured, PlanContext};
use crate::sys::spawn::{
    fork_spawn, keep_high, open_procs, read_failure, reserve_descriptors, spawn, spawn_in_cgroup,
    Setup, Spawned, Starter, KEPT_DESCRIPTORS_FROM,
};
use pmtr_common::reason::{strerror, Text};

/// Most starts prepared before they run back to back, and made in one
/// wake-up of the loop: bounds the descriptors held at once (a pipe or two
/// per start) and the loop's time away from signals and requests while
/// thousands of jobs start (a few milliseconds of CPU per batch).
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
    /// The job's cgroup, for the thread that makes the start to enter.
    to_enter: Option<ToEnter>,
    /// Entered: open for the child to be made in, and what entering found.
    cgroup: Option<OwnedFd>,
    entered: Option<Entered>,
    /// How the start went, once made.
    outcome: Option<Result<Spawned, Errno>>,
}

impl Prepared<'_> {
    /// Makes the start, on whichever starting thread takes it: enters the
    /// job's cgroup, then starts the child. Allocates nothing: neither
    /// does `ToEnter::enter`, and the fields it sets were empty.
    fn start(&mut self, mounts: &Mounts, starter: Starter) {
        if let Some(to_enter) = &self.to_enter {
            let (dir, entered) = to_enter.enter();
            if let Some(dir) = &dir {
                self.plan.cgroup_dir = dir.as_raw_fd();
            }
            self.cgroup = dir;
            self.entered = Some(entered);
        }
        self.outcome = Some(start_child(&mut self.plan, mounts, starter));
    }
}

/// The status pipe of a forked child that has not exec'd yet.
struct PendingSetup {
    pid: Pid,
    pipe: OwnedFd,
}

pub struct Spawner {
    /// Starts the supervisor asked for, not made yet, in order.
    queued: VecDeque<(JobId, Arc<Job>)>,
    /// Starts this wake-up may still make.
    budget: usize,
    /// More than a batch was queued at once: when the queue is empty, the
    /// memory the round used is free.
    large_round: bool,
    setups: HashMap<Token, PendingSetup>,
    setup_of_pid: HashMap<Pid, Token>,
    /// What went wrong without stopping a start, for the log.
    warnings: Vec<String>,
    /// `NOTIFY_SOCKET` for jobs that speak sd_notify.
    notify_address: Option<String>,
    /// The thread that takes a batch's starts in turn with the loop's,
    /// made at the first batch of two or more where pmtr may use several
    /// CPUs.
    beside: SecondStarter,
    /// The descriptor table was grown to hold this many.
    reserved_descriptors: usize,
}

/// The second starting thread: not made yet, made, or not to be made
/// (one CPU, or the thread could not be made: starts go one by one).
enum SecondStarter {
    Unasked,
    Running(Beside),
    Without,
}

impl Spawner {
    pub fn new() -> Spawner {
        Spawner {
            queued: VecDeque::new(),
            budget: SPAWN_BATCH,
            large_round: false,
            setups: HashMap::new(),
            setup_of_pid: HashMap::new(),
            warnings: Vec::new(),
            notify_address: None,
            beside: SecondStarter::Unasked,
            reserved_descriptors: 0,
        }
    }

    /// The second starting thread, made at the first call.
    fn beside(&mut self) -> Option<&mut Beside> {
        if let SecondStarter::Unasked = self.beside {
            self.beside = match several_cpus() {
                false => SecondStarter::Without,
                true => match Beside::start("starter", STARTER_STACK_BYTES) {
                    Ok(beside) => SecondStarter::Running(beside),
                    Err(error) => {
                        let warning = format!(
                            "unable to make a second thread for starts: {error}; jobs start one by one"
                        );
                        self.warnings.push(warning);
                        SecondStarter::Without
                    }
                },
            };
        }
        match &mut self.beside {
            SecondStarter::Running(beside) => Some(beside),
            _ => None,
        }
    }

    /// The notify socket's address, given to jobs with `ready notify` or
    /// `health watchdog`.
    pub fn set_notify_address(&mut self, address: Option<String>) {
        self.notify_address = address;
    }

    /// Reads a forked child's status pipe: end-of-file (it exec'd) or the
    /// step that failed. Either way the pipe is done with.
    pub fn read_setup(&mut self, registry: &mut Registry, token: Token) -> Option<Event> {
        let setup = self.setups.get(&token)?;
        let failure = read_failure(&setup.pipe).ok()?;
        let pid = setup.pid;
        if let Some(setup) = self.setups.remove(&token) {
            self.setup_of_pid.remove(&setup.pid);
            registry.remove(setup.pipe.as_fd(), token);
        }
        let (step, errno) = failure?;
        Some(Event::SetupFailed {
            pid,
            step,
            reason: strerror(errno),
        })
    }

    /// A child was reaped: what its status pipe says, if it has one, read
    /// now so that a failed setup comes before the exit (which is then not
    /// logged as the job's own).
    pub fn reaped(&mut self, registry: &mut Registry, pid: Pid) -> Option<Event> {
        let token = self.setup_of_pid.get(&pid).copied()?;
        self.read_setup(registry, token)
    }

    /// True once after a large round of starts has been made: a moment
    /// to give freed memory back.
    pub fn take_settled(&mut self) -> bool {
        self.queued.is_empty() && std::mem::take(&mut self.large_round)
    }

    /// Queues a start the supervisor asked for.
    pub fn queue(&mut self, job: JobId, def: Arc<Job>) {
        self.queued.push_back((job, def));
        self.large_round |= self.queued.len() > SPAWN_BATCH;
    }

    /// True while starts are queued: the loop comes back at once for them.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// A new wake-up of the loop: a new batch may be made.
    pub fn new_wakeup(&mut self) {
        self.budget = SPAWN_BATCH;
    }

    /// What went wrong since the last call, for the log.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Makes the next batch of queued starts, if this wake-up has not made
    /// one yet: every plan is built first, then the starts run back to
    /// back. None when there is nothing (more) to make now.
    ///
    /// A batch that runs short of a resource (descriptors) stops growing and
    /// starts what it holds: the descriptors come back, and the starts that
    /// failed are retried, instead of every start holding a part and none
    /// getting all.
    pub fn spawn_some(
        &mut self,
        context: &PlanContext,
        registry: &mut Registry,
        captures: &mut Captures,
        mut containment: Option<&mut Containment>,
    ) -> Option<Vec<Event>> {
        if self.budget == 0 || self.queued.is_empty() {
            return None;
        }
        self.reserve_descriptors(registry, captures.pipe_count());
        let batch = self.budget.min(self.queued.len());
        self.budget -= batch;
        let mut events = Vec::with_capacity(batch);
        let mut prepared = Vec::with_capacity(batch);
        for _ in 0..batch {
            let Some((job, def)) = self.queued.pop_front() else {
                break;
            };
            let def = with_notify(def, self.notify_address.as_deref());
            match prepare(context, job, &def) {
                Ok(mut start) => {
                    if let Some(containment) = containment.as_deref_mut() {
                        self.contain(containment, &mut start, &def);
                    }
                    prepared.push(start)
                }
                Err(failure) => {
                    let short = matches!(failure, SpawnFailure::Transient(_));
                    events.push(Event::SpawnFailed { job, failure });
                    if short && !prepared.is_empty() {
                        // The rest wait for the next wake-up.
                        break;
                    }
                }
            }
        }
        let beside = match prepared.len() {
            0 | 1 => None,
            _ => self.beside(),
        };
        start_children(&mut prepared, context.mounts.mounts(), beside);
        for start in prepared {
            if let Some(containment) = containment.as_deref_mut() {
                self.contained(containment, &start);
            }
            self.finish(registry, captures, start, &mut events);
        }
        Some(events)
    }

    /// Grows the descriptor table, once per round, to what the queued
    /// starts will hold: a capture pipe each (stdout and stderr mostly
    /// share one) above those `kept` now, and a batch's worth of spare.
    fn reserve_descriptors(&mut self, registry: &Registry, kept: usize) {
        let wanted = KEPT_DESCRIPTORS_FROM as usize + kept + self.queued.len() + SPAWN_BATCH;
        if wanted > self.reserved_descriptors {
            reserve_descriptors(registry.fd(), wanted);
            self.reserved_descriptors = wanted;
        }
    }

    /// Gives a start its job's cgroup to enter. A cgroup that cannot be
    /// made is logged and the job starts in its process group alone:
    /// better uncontained than not running.
    fn contain(&mut self, containment: &mut Containment, start: &mut Prepared<'_>, def: &Job) {
        match containment.prepare(&def.name, &def.extras.limits) {
            Ok((to_enter, warnings)) => {
                self.warnings.extend(warnings);
                start.to_enter = Some(to_enter);
            }
            Err(why) => self.uncontained(&def.name, &why),
        }
    }

    /// Tells `containment` how the start went in the job's cgroup.
    fn contained(&mut self, containment: &mut Containment, start: &Prepared<'_>) {
        if let Some(entered) = start.entered {
            if let Some(why) = containment.entered(&start.name, entered) {
                self.uncontained(&start.name, &why);
            }
        }
        if let (Some(_), Some(Ok(spawned))) = (&start.cgroup, &start.outcome) {
            containment.started(&start.name, spawned.pid);
        }
    }

    fn uncontained(&mut self, name: &str, why: &str) {
        let warning = format!("job {name}: {why}; it runs in its process group only");
        self.warnings.push(warning);
    }

    /// After the start: keep the pipes and say what happened, or why the
    /// start failed.
    fn finish(
        &mut self,
        registry: &mut Registry,
        captures: &mut Captures,
        start: Prepared<'_>,
        events: &mut Vec<Event>,
    ) {
        let Prepared {
            job,
            name,
            plan,
            captures: pipes,
            cgroup,
            outcome,
            ..
        } = start;
        drop(plan);
        drop(cgroup);
        let spawned = match outcome.unwrap_or(Err(Errno::ECANCELED)) {
            Ok(spawned) => spawned,
            Err(errno) => {
                let failure = SpawnFailure::Transient(format!("fork: {}", Text(errno)));
                return events.push(Event::SpawnFailed { job, failure });
            }
        };
        let pid = spawned.pid;
        events.push(Event::Spawned { job, pid });
        match spawned.setup {
            Setup::Done(Some((step, errno))) => {
                // Its pipes read end-of-file at once: nothing to watch.
                let reason = strerror(errno);
                return events.push(Event::SetupFailed { pid, step, reason });
            }
            Setup::Done(None) => {}
            Setup::Pending(pipe) => {
                // Not watchable (epoll full): a failed setup then shows as
                // an exit.
                let watched = registry.add(pipe.as_fd(), EpollFlags::EPOLLIN, Source::Setup);
                if let Ok(token) = watched {
                    self.setup_of_pid.insert(pid, token);
                    self.setups.insert(token, PendingSetup { pid, pipe });
                }
            }
        }
        for (index, (sink, read, _write)) in pipes.into_iter().enumerate() {
            let capture = Capture::new(name.clone(), pid, read, sink, index);
            if let Err(errno) = captures.watch(registry, capture) {
                let warning = format!("unable to watch job output: {}", Text(errno));
                self.warnings.push(warning);
            }
        }
    }
}

/// Stack of the thread that makes starts beside the loop's: it runs only
/// `Prepared::start`; the children run on stacks of their own.
const STARTER_STACK_BYTES: usize = 128 * 1024;

/// Makes the starts of a batch. With a second thread (`beside`), the
/// two take starts in turn, each the next not taken, side by side: each
/// start waits for its child's `execve`, and the time a child takes to
/// get there — longer for one made in a new cgroup, whose first process
/// the kernel announces from a worker on the same CPU, sending the child
/// to another — leaves the starting thread idle. Without one, one after
/// the other.
fn start_children(starts: &mut [Prepared<'_>], mounts: &Mounts, beside: Option<&mut Beside>) {
    let Some(beside) = beside else {
        for start in starts {
            start.start(mounts, Starter::Loop);
        }
        return;
    };
    // Each start is taken by one thread: its lock is never waited on.
    let starts: Vec<Mutex<&mut Prepared<'_>>> = starts.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let take_turns = |starter| {
        while let Some(start) = starts.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut start = start.lock().unwrap_or_else(PoisonError::into_inner);
            start.start(mounts, starter);
        }
    };
    beside.run(|| take_turns(Starter::Helper), || take_turns(Starter::Loop));
}

/// Whether pmtr may run on more than one CPU (its affinity, its cgroup's
/// quota). Asked once, at the first batch: `SecondStarter` keeps the
/// answer.
fn several_cpus() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// Starts the child of `plan`: with `fork` if it could wait before its
/// program runs — it touches a remote filesystem, which could hold up
/// pmtr's loop for as long as the server is away, or it opens a FIFO,
/// which waits for the other end — sharing pmtr's memory otherwise.
pub fn start_child(
    plan: &mut ExecPlan<'_>,
    mounts: &Mounts,
    starter: Starter,
) -> Result<Spawned, Errno> {
    let remote = mounts.any_remote() && plan.paths().any(|path| mounts.is_remote(path, &plan.dir));
    let fifo = || {
        plan.files().any(|path| {
            nix::sys::stat::stat(path).is_ok_and(|stat| {
                nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode)
                    & nix::sys::stat::SFlag::S_IFMT
                    == nix::sys::stat::SFlag::S_IFIFO
            })
        })
    };
    let forked = remote || fifo();
    if !forked {
        match spawn_in_cgroup(plan, starter) {
            Err(Errno::ENOSYS) => {}
            made => return made,
        }
    }
    // Where the child is not made in its cgroup, it moves itself there.
    let procs = match plan.cgroup_dir {
        -1 => None,
        dir => Some(open_procs(dir)?),
    };
    plan.cgroup_procs = procs.as_ref().map_or(-1, |fd| fd.as_raw_fd());
    let started = if forked {
        fork_spawn(plan)
    } else {
        spawn(plan, starter)
    };
    plan.cgroup_procs = -1;
    started
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
    if let Some(millis) = def.extras.health.watchdog_millis {
        set("WATCHDOG_USEC", (millis * 1000).to_string());
    }
    Arc::new(job)
}

/// Where the job's stdout and stderr go through pmtr, if they do: one
/// pipe per distinct sink, stdout's first.
fn stream_sinks(job: &Job) -> (Option<Sink>, Option<Sink>) {
    // The owner of files pmtr creates for the job: its user.
    let owner = match &job.user {
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Some((user.uid.as_raw(), user.gid.as_raw())),
            // The plan says why the job cannot start.
            _ => None,
        },
        None => None,
    };
    let sink_of = |output: &Output| match output {
        Output::Syslog => Some(Sink::Log),
        Output::File(path) if job.extras.log.written_by_pmtr() => {
            Some(Sink::File(Box::new(FileSink {
                path: job.resolve(path),
                options: job.extras.log,
                owner,
            })))
        }
        Output::File(_) | Output::Stdout | Output::Stderr => None,
    };
    (sink_of(&job.stdout), sink_of(&job.stderr))
}

/// The job's capture pipes, in the order its start makes them: where
/// each one's lines go.
pub fn pipe_sinks(job: &Job) -> Vec<Sink> {
    let (out, err) = stream_sinks(job);
    let mut sinks: Vec<Sink> = out.into_iter().collect();
    if let Some(err) = err.filter(|e| !sinks.contains(e)) {
        sinks.push(err);
    }
    sinks
}

/// Everything a start needs before the fork: its pipes and its plan.
fn prepare<'c>(
    context: &'c PlanContext,
    id: JobId,
    job: &Job,
) -> Result<Prepared<'c>, SpawnFailure> {
    let short =
        |what: &str, errno: Errno| SpawnFailure::Transient(format!("{what}: {}", Text(errno)));
    let (out_sink, err_sink) = stream_sinks(job);
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
        // pmtr keeps the read end while the job runs: out of the way of
        // the starts (spawn.rs), where the write end stays.
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|errno| short("pipe", errno))?;
        let read = keep_high(read);
        let _ = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        if let Sink::File(_) = sink {
            // A file written in bulk: a larger pipe means fewer, larger
            // reads for pmtr and fewer stalls for the job. Not granted
            // (the user's pipe quota): the default 64 KiB does.
            let _ = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETPIPE_SZ(FILE_PIPE_BYTES));
        }
        *target = Some(write.as_raw_fd());
        captures.push((sink, read, write));
    }
    let plan = ExecPlan::build(job, context, captured)
        .map_err(|error| SpawnFailure::Job(error.to_string()))?;
    Ok(Prepared {
        job: id,
        name: job.name.clone(),
        plan,
        captures,
        to_enter: None,
        cgroup: None,
        entered: None,
        outcome: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts that cannot be planned (an unknown user) go through the
    /// batches like any, without a process: one batch per wake-up.
    #[test]
    fn one_batch_of_starts_per_wakeup() {
        let text = "job {\n name t\n cmd /bin/true\n user no-such-user-pmtr\n}";
        let def = Arc::new(
            pmtr_core::config::parse(text.as_bytes())
                .unwrap()
                .jobs
                .remove(0),
        );
        let context = PlanContext::capture(None);
        let mut registry = Registry::new().unwrap();
        let mut captures = Captures::default();
        let mut spawner = Spawner::new();
        for id in 0..100 {
            spawner.queue(JobId(id), def.clone());
        }
        let mut batch = || spawner.spawn_some(&context, &mut registry, &mut captures, None);
        let first = batch().unwrap();
        assert_eq!(first.len(), SPAWN_BATCH);
        assert!(matches!(first[0], Event::SpawnFailed { job: JobId(0), .. }));
        assert!(batch().is_none(), "a second batch in the same wake-up");
        assert!(spawner.has_queued() && !spawner.take_settled());
        spawner.new_wakeup();
        let second = spawner
            .spawn_some(&context, &mut registry, &mut captures, None)
            .unwrap();
        assert_eq!(second.len(), 100 - SPAWN_BATCH);
        assert!(matches!(
            second[0],
            Event::SpawnFailed { job: JobId(64), .. }
        ));
        assert!(!spawner.has_queued() && spawner.take_settled());
    }
}
