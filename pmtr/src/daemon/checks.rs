//! The readiness and health checks the core asks for (`ready file|tcp|cmd`,
//! `health tcp|cmd`), carried out without ever blocking the loop: a file
//! is looked at on the spot; a TCP connect is started non-blocking and its
//! outcome read when the socket becomes writable; a command is forked like
//! a job (its user, `dir`, `env`), in its own process group, its output
//! read through a pipe for its last line, its end learnt when it is
//! reaped. Each outcome is a `Checked` event; a cancelled check sends none.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::EpollFlags;
use nix::sys::signal::{killpg, Signal};
use nix::sys::socket::{
    connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use nix::unistd::pipe2;
use pmtr_core::config::{Job, Output};
use pmtr_core::supervise::event::{Check, Event, ExitStatus, JobId, Pid};
use pmtr_core::supervise::messages;

use super::log::sanitize;
use super::registry::{Registry, Source, Token};
use super::spawner::start_child;
use crate::sys::plan::{Captured, ExecPlan, PlanContext};
use crate::sys::spawn::Starter;
use crate::sys::spawn::{read_failure, Setup};
use pmtr_common::reason::{strerror, Text};

/// The longest output line kept from a check, in characters.
const MAX_OUTPUT_LINE: usize = 200;
/// Most bytes of a check's output read per wakeup.
const MAX_READ_PER_WAKEUP: usize = 64 * 1024;

/// A check under way.
struct Pending {
    job: JobId,
    /// The job's pid, which the answer names.
    pid: Pid,
    work: Work,
}

enum Work {
    Connect {
        socket: OwnedFd,
        token: Token,
    },
    Command {
        /// The check as a job, for the wording of a failed start.
        probe: Box<Job>,
        child: Pid,
        /// The read end of its output pipe, until end-of-file.
        output: Option<(OwnedFd, Token)>,
        /// How its setup went, or the pipe that will say.
        setup: Setup,
        tail: Tail,
    },
}

/// The last line of a stream, bounded.
#[derive(Default)]
struct Tail {
    last: Option<String>,
    partial: Vec<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        let mut lines = bytes.split(|&b| b == b'\n').peekable();
        while let Some(piece) = lines.next() {
            let room = (MAX_OUTPUT_LINE * 4).saturating_sub(self.partial.len());
            self.partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            if lines.peek().is_some() {
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        let line = sanitize(&self.partial);
        let line = line.trim();
        if !line.is_empty() {
            self.last = Some(line.chars().take(MAX_OUTPUT_LINE).collect());
        }
        self.partial.clear();
    }

    fn finish(mut self) -> Option<String> {
        self.end_line();
        self.last
    }
}

#[derive(Default)]
pub struct Checks {
    by_job: HashMap<JobId, Pending>,
    by_token: HashMap<Token, JobId>,
    by_child: HashMap<Pid, JobId>,
}

impl Checks {
    /// Starts a check; its outcome at once when it is known at once.
    pub fn check(
        &mut self,
        registry: &mut Registry,
        context: &PlanContext,
        job: JobId,
        pid: Pid,
        check: Check,
    ) -> Option<Event> {
        self.cancel(registry, job);
        let outcome = |ok, output| Some(checked(job, pid, ok, output));
        let work = match check {
            // A stat, as for dependency files.
            Check::File(path) => return outcome(Path::new(&path).exists(), None),
            Check::Tcp(address) => match connect_to(registry, address) {
                Ok(Connected::Now) => return outcome(true, None),
                Ok(Connected::Later(socket, token)) => Work::Connect { socket, token },
                Err(why) => return outcome(false, Some(why)),
            },
            Check::Cmd { def, argv } => match start_command(registry, context, &def, &argv) {
                Ok(work) => work,
                Err(why) => return outcome(false, Some(why)),
            },
        };
        match &work {
            Work::Connect { token, .. } => {
                self.by_token.insert(*token, job);
            }
            Work::Command { child, output, .. } => {
                self.by_child.insert(*child, job);
                if let Some((_, token)) = output {
                    self.by_token.insert(*token, job);
                }
            }
        }
        self.by_job.insert(job, Pending { job, pid, work });
        None
    }

    /// A connect finished, or a command wrote output.
    pub fn ready(&mut self, registry: &mut Registry, token: Token) -> Option<Event> {
        let job = *self.by_token.get(&token)?;
        let pending = self.by_job.get_mut(&job)?;
        match &mut pending.work {
            Work::Connect { socket, .. } => {
                let error = getsockopt(&*socket, sockopt::SocketError).unwrap_or(libc::EIO);
                let (job, pid) = (pending.job, pending.pid);
                self.forget(registry, job);
                let why = (error != 0).then(|| refused(Errno::from_raw(error)));
                Some(checked(job, pid, error == 0, why))
            }
            Work::Command { output, tail, .. } => {
                if let Some((pipe, token)) = output {
                    if read_some(pipe, tail) {
                        registry.remove(pipe.as_fd(), *token);
                        self.by_token.remove(token);
                        *output = None;
                    }
                }
                None
            }
        }
    }

    /// A child was reaped: the outcome of the check it ran, if it ran one.
    pub fn reaped(
        &mut self,
        registry: &mut Registry,
        child: Pid,
        status: ExitStatus,
    ) -> Option<Event> {
        let job = self.by_child.remove(&child)?;
        // What the check left in its group does not outlive it.
        let _ = killpg(nix::unistd::Pid::from_raw(child), Signal::SIGKILL);
        let Pending { pid, work, .. } = self.by_job.remove(&job)?;
        let Work::Command {
            probe,
            output,
            setup,
            mut tail,
            ..
        } = work
        else {
            return None;
        };
        if let Some((pipe, token)) = output {
            read_some(&pipe, &mut tail);
            registry.remove(pipe.as_fd(), token);
            self.by_token.remove(&token);
        }
        let failure = match setup {
            Setup::Done(failure) => failure,
            // The child is gone: its pipe says all it will.
            Setup::Pending(pipe) => read_failure(&pipe).unwrap_or(None),
        };
        if let Some((step, errno)) = failure {
            let what = messages::setup_step(&probe, step);
            return Some(checked(
                job,
                pid,
                false,
                Some(format!("{what}: {}", strerror(errno))),
            ));
        }
        let ok = status == ExitStatus::Code(0);
        let last = tail.finish();
        let output = match (ok, last) {
            (_, Some(line)) => Some(line),
            (false, None) => Some(status.to_string()),
            (true, None) => None,
        };
        Some(checked(job, pid, ok, output))
    }

    /// Abandons the job's check under way: a command's group is killed
    /// (reaped later like any child), a socket closed. No answer follows.
    pub fn cancel(&mut self, registry: &mut Registry, job: JobId) {
        if let Some(Work::Command { child, .. }) = self.by_job.get(&job).map(|p| &p.work) {
            let _ = killpg(nix::unistd::Pid::from_raw(*child), Signal::SIGKILL);
        }
        self.forget(registry, job);
    }

    fn forget(&mut self, registry: &mut Registry, job: JobId) {
        let Some(pending) = self.by_job.remove(&job) else {
            return;
        };
        match pending.work {
            Work::Connect { socket, token } => {
                registry.remove(socket.as_fd(), token);
                self.by_token.remove(&token);
            }
            Work::Command { child, output, .. } => {
                self.by_child.remove(&child);
                if let Some((pipe, token)) = output {
                    registry.remove(pipe.as_fd(), token);
                    self.by_token.remove(&token);
                }
            }
        }
    }
}

fn checked(job: JobId, pid: Pid, ok: bool, output: Option<String>) -> Event {
    Event::Checked {
        job,
        pid,
        ok,
        output,
    }
}

fn refused(errno: Errno) -> String {
    format!("connect: {}", Text(errno))
}

enum Connected {
    Now,
    Later(OwnedFd, Token),
}

fn connect_to(registry: &mut Registry, address: std::net::SocketAddr) -> Result<Connected, String> {
    let family = match address {
        std::net::SocketAddr::V4(_) => AddressFamily::Inet,
        std::net::SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    // Out of descriptors: failed this time; the core asks again.
    let socket = socket(family, SockType::Stream, flags, None)
        .map_err(|errno| format!("socket: {}", Text(errno)))?;
    match connect(socket.as_raw_fd(), &SockaddrStorage::from(address)) {
        Ok(()) => Ok(Connected::Now),
        Err(Errno::EINPROGRESS) => {
            let token = registry
                .add(socket.as_fd(), EpollFlags::EPOLLOUT, Source::Check)
                .map_err(|errno| format!("epoll: {}", Text(errno)))?;
            Ok(Connected::Later(socket, token))
        }
        Err(errno) => Err(refused(errno)),
    }
}

/// Forks `argv` as `def` would run: its user, `dir`, `env`, limits; stdin
/// from /dev/null, stdout and stderr into one pipe.
fn start_command(
    registry: &mut Registry,
    context: &PlanContext,
    def: &Job,
    argv: &[String],
) -> Result<Work, String> {
    let mut probe = def.clone();
    probe.cmd = argv.to_vec();
    probe.extras.stdin = None;
    probe.stdout = Output::Syslog;
    probe.stderr = Output::Syslog;
    let short = |what: &str, errno: Errno| format!("{what}: {}", Text(errno));
    let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| short("pipe", e))?;
    nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| short("fcntl", e))?;
    let mut plan = ExecPlan::build(&probe, context, Captured::both(write.as_raw_fd()))
        .map_err(|error| error.to_string())?;
    let spawned = start_child(&mut plan, context.mounts.mounts(), Starter::Loop)
        .map_err(|e| short("fork", e))?;
    drop(plan);
    drop(write);
    // Unwatchable: the output is lost, the exit still counts.
    let output = registry
        .add(read.as_fd(), EpollFlags::EPOLLIN, Source::Check)
        .ok()
        .map(|token| (read, token));
    Ok(Work::Command {
        probe: Box::new(probe),
        child: spawned.pid,
        output,
        setup: spawned.setup,
        tail: Tail::default(),
    })
}

/// Reads what the pipe holds into `tail`; true at end-of-file or error.
fn read_some(pipe: &OwnedFd, tail: &mut Tail) -> bool {
    let mut buffer = [0u8; 4096];
    let mut total = 0;
    while total < MAX_READ_PER_WAKEUP {
        match nix::unistd::read(pipe, &mut buffer) {
            Ok(0) => return true,
            Ok(count) => {
                tail.push(&buffer[..count]);
                total += count;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return false,
            Err(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(event: Option<Event>) -> Option<bool> {
        match event {
            Some(Event::Checked { ok, .. }) => Some(ok),
            _ => None,
        }
    }

    /// A listening port passes, a closed one does not, and neither blocks:
    /// the answer comes at once or through the registry.
    #[test]
    fn a_tcp_check_connects_without_blocking() {
        let mut registry = Registry::new().unwrap();
        let mut checks = Checks::default();
        let context = PlanContext::capture(None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        // A port that was free a moment ago: nobody listens there.
        let closed = {
            let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            spare.local_addr().unwrap()
        };
        let mut answer = |address| {
            let check = Check::Tcp(address);
            let started = checks.check(&mut registry, &context, JobId(1), 7, check);
            if started.is_some() {
                return outcome(started);
            }
            let mut events = vec![nix::sys::epoll::EpollEvent::empty(); 4];
            let timeout = nix::sys::epoll::EpollTimeout::from(5_000u16);
            let count = registry.wait(&mut events, timeout).unwrap();
            let (_, token) = registry.resolve(&events[..count][0]).unwrap();
            outcome(checks.ready(&mut registry, token))
        };
        assert_eq!(answer(open), Some(true));
        assert_eq!(answer(closed), Some(false));
    }

    #[test]
    fn the_tail_keeps_the_last_line_that_says_something() {
        let mut tail = Tail::default();
        tail.push(b"first\nsec");
        tail.push(b"ond\n\n  \n");
        assert_eq!(tail.finish().as_deref(), Some("second"));
        let mut tail = Tail::default();
        tail.push(b"curl: (7) Failed\x1b[0m to connect");
        assert_eq!(
            tail.finish().as_deref(),
            Some("curl: (7) Failed?[0m to connect")
        );
        let mut tail = Tail::default();
        tail.push(&[b'x'; 10_000]);
        assert_eq!(tail.finish().unwrap().len(), MAX_OUTPUT_LINE);
    }
}
