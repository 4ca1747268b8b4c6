//! The local control socket: a Unix stream socket (mode 0600 in a 0700
//! directory) where `pmtr-ctl` asks for status, enables, disables,
//! restarts, reloads and reads logs. Only pmtr's own uid and root are
//! served (SO_PEERCRED). Clients never block the loop: sockets are
//! non-blocking, and a client that sends nothing or reads nothing is
//! dropped at a deadline; a follower that falls too far behind is dropped.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pmtr_core::proto::local::{Request, Response, MAX_REQUEST};
use pmtr_core::time::Mono;

use super::registry::{Registry, Source, Token};
use pmtr_common::reason::Reason;

/// Output a follower may leave unread before it is dropped. An answer is
/// not capped: it is as large as the core made it (`status --json` of
/// 10 000 jobs is 1.4 MB), and its reader has the client deadline.
const MAX_PENDING_OUTPUT: usize = 1 << 20;
/// Clients served at once. More wait in the listen backlog: the listener
/// is not watched until one leaves.
pub const MAX_CLIENTS: usize = 64;
/// After a failed accept (out of descriptors), the listener is left alone
/// this long: it stays readable, and watching it would spin.
const ACCEPT_BACKOFF_MILLIS: u64 = 250;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("not replacing {}: it is not a socket (use --socket)", .0.display())]
    NotASocket(PathBuf),
    #[error("the control socket's directory {} is {why}: anyone who can write it could take the socket's place", .dir.display())]
    UnsafeDirectory { dir: PathBuf, why: String },
    #[error("another pmtr listens on {}: not replacing its socket (use --socket)", .0.display())]
    InUse(PathBuf),
    #[error("unable to create the control socket {}: {}", .path.display(), Reason(.source))]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A request from a client allowed to make it.
pub struct Incoming {
    pub client: Token,
    pub request: Request,
}

enum Phase {
    /// Reading the request line, until the deadline.
    Reading,
    /// Writing the response, then closing.
    Answering,
    /// Streaming a job's output lines until the client leaves.
    Following(String),
    /// Waiting, without a deadline, for an answer the core gives later
    /// (`pmtr-ctl wait`); the client's own timeout bounds it.
    Holding,
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    phase: Phase,
    deadline: Option<Mono>,
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    owner: u32,
    clients: HashMap<Token, Client>,
    listener_token: Option<Token>,
    /// Not watching the listener: at the client cap (until one leaves), or
    /// after a failed accept (until then, or until one leaves).
    paused: Option<Paused>,
    /// Accepts fail (said once, until one succeeds again).
    accept_failing: bool,
    /// Time a client has to send its request, or to read a response.
    client_deadline_millis: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paused {
    Full,
    Failing { until: Mono },
}

impl ControlServer {
    /// Binds the socket at `path`, replacing a stale one left by a crashed
    /// pmtr but never a live one.
    pub fn bind(path: &Path, client_deadline_millis: u64) -> Result<ControlServer, ControlError> {
        let create = |source| ControlError::Create {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(create)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            check_directory(dir)?;
        }
        if let Ok(metadata) = std::fs::symlink_metadata(path) {
            // Only a socket is replaced: a path given by mistake that
            // names a file, or a link, is left alone.
            if !metadata.file_type().is_socket() {
                return Err(ControlError::NotASocket(path.to_path_buf()));
            }
            match UnixStream::connect(path) {
                Ok(_) => return Err(ControlError::InUse(path.to_path_buf())),
                // Nobody listens: a crashed pmtr's socket.
                Err(_) => std::fs::remove_file(path).map_err(create)?,
            }
        }
        // Created 0600, not changed after: a chmod by path would follow a
        // link swapped in between.
        let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(umask);
        let listener = bound.map_err(create)?;
        listener.set_nonblocking(true).map_err(create)?;
        Ok(ControlServer::serving(
            listener,
            path,
            client_deadline_millis,
        ))
    }

    fn serving(listener: UnixListener, path: &Path, client_deadline_millis: u64) -> ControlServer {
        ControlServer {
            listener,
            path: path.to_path_buf(),
            owner: nix::unistd::geteuid().as_raw(),
            clients: HashMap::new(),
            listener_token: None,
            paused: None,
            accept_failing: false,
            client_deadline_millis,
        }
    }

    /// The listener the pmtr before this one handed over (SPEC 11.8),
    /// bound at `path`: no moment without one.
    pub fn adopt(
        listener: std::os::fd::OwnedFd,
        path: &Path,
        client_deadline_millis: u64,
    ) -> ControlServer {
        let listener = UnixListener::from(listener);
        let _ = listener.set_nonblocking(true);
        ControlServer::serving(listener, path, client_deadline_millis)
    }

    /// The listener's descriptor, for a reexec to hand over.
    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.listener.as_raw_fd()
    }

    /// Watches the listening socket; until then no client is accepted.
    pub fn register(&mut self, registry: &mut Registry) -> Result<(), Errno> {
        let listener = self.listener.as_fd();
        let token = registry.add(listener, EpollFlags::EPOLLIN, Source::ControlListener)?;
        self.listener_token = Some(token);
        Ok(())
    }

    /// The earliest client deadline: a loop timeout beside the
    /// supervisor's. None while no client is pending.
    pub fn next_deadline(&self) -> Option<Mono> {
        let resume = match self.paused {
            Some(Paused::Failing { until }) => Some(until),
            _ => None,
        };
        self.clients
            .values()
            .filter_map(|c| c.deadline)
            .chain(resume)
            .min()
    }

    /// Drops clients past their deadline; watches the listener again when
    /// its pause is over.
    pub fn expire(&mut self, registry: &mut Registry, now: Mono) {
        if matches!(self.paused, Some(Paused::Failing { until }) if until <= now) {
            self.resume(registry);
        }
        let expired: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(&token, _)| token)
            .collect();
        for token in expired {
            self.drop_client(registry, token);
        }
    }

    /// Handles readiness of one of the server's descriptors. Returns the
    /// requests that arrived, and refusals to log.
    pub fn ready(
        &mut self,
        registry: &mut Registry,
        source: Source,
        token: Token,
        now: Mono,
    ) -> (Vec<Incoming>, Vec<String>) {
        let mut incoming = Vec::new();
        let mut refusals = Vec::new();
        if source == Source::ControlListener {
            self.accept(registry, now, &mut refusals);
            return (incoming, refusals);
        }
        let Some(client) = self.clients.get_mut(&token) else {
            return (incoming, refusals);
        };
        let mut closed = false;
        let mut buffer = [0u8; 1024];
        loop {
            match client.stream.read(&mut buffer) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) if matches!(client.phase, Phase::Reading) => {
                    client.input.extend_from_slice(&buffer[..n])
                }
                Ok(_) => {} // nothing more is expected from this client
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            if client.input.len() > MAX_REQUEST {
                break;
            }
        }
        if matches!(client.phase, Phase::Reading) {
            if let Some(end) = client.input.iter().position(|&b| b == b'\n') {
                let line = client.input[..end].to_vec();
                client.phase = Phase::Answering;
                match Request::decode(&line) {
                    Ok(request) => incoming.push(Incoming {
                        client: token,
                        request,
                    }),
                    Err(error) => self.respond(
                        registry,
                        token,
                        &[Response::Error {
                            message: error.to_string(),
                        }],
                        now,
                    ),
                }
            } else if client.input.len() > MAX_REQUEST {
                client.phase = Phase::Answering;
                let message = format!("request longer than {MAX_REQUEST} bytes");
                self.respond(registry, token, &[Response::Error { message }], now);
            } else if closed {
                self.drop_client(registry, token);
            }
        } else if closed {
            self.drop_client(registry, token);
        } else {
            self.flush(registry, token, now);
        }
        (incoming, refusals)
    }

    fn accept(&mut self, registry: &mut Registry, now: Mono, refusals: &mut Vec<String>) {
        loop {
            if self.clients.len() >= MAX_CLIENTS {
                self.pause(registry, Paused::Full);
                return;
            }
            let stream = match self.listener.accept() {
                Ok((stream, _)) => {
                    self.accept_failing = false;
                    stream
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // EMFILE and the like: the client waits in the backlog
                // until descriptors are free again.
                Err(error) => {
                    if !std::mem::replace(&mut self.accept_failing, true) {
                        refusals.push(format!(
                        "unable to accept a control connection: {}; trying again in {ACCEPT_BACKOFF_MILLIS} ms",
                        Reason(&error)
                    ));
                    }
                    let until = now.plus_millis(ACCEPT_BACKOFF_MILLIS);
                    self.pause(registry, Paused::Failing { until });
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let peer = getsockopt(&stream, PeerCredentials).ok();
            let allowed = peer.is_some_and(|p| p.uid() == 0 || p.uid() == self.owner);
            let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
            let Ok(token) = registry.add(stream.as_fd(), interest, Source::ControlClient) else {
                continue;
            };
            self.clients.insert(
                token,
                Client {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    phase: Phase::Reading,
                    deadline: Some(now.plus_millis(self.client_deadline_millis)),
                },
            );
            if !allowed {
                let (uid, pid) = peer.map_or((-1, -1), |p| (p.uid() as i64, p.pid() as i64));
                let who = if self.owner == 0 {
                    "root".to_string()
                } else {
                    format!("uid {} and root", self.owner)
                };
                refusals.push(format!("refused a control connection from uid {uid} (pid {pid}): only {who} may control pmtr"));
                let message = format!("permission denied: only {who} may control this pmtr");
                if let Some(client) = self.clients.get_mut(&token) {
                    client.phase = Phase::Answering;
                }
                self.respond(registry, token, &[Response::Error { message }], now);
            }
        }
    }

    /// Queues `responses` for the client and writes what the socket takes.
    pub fn respond(
        &mut self,
        registry: &mut Registry,
        token: Token,
        responses: &[Response],
        now: Mono,
    ) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        if let Phase::Holding = client.phase {
            client.phase = Phase::Answering;
            client.deadline = None;
        }
        for response in responses {
            client
                .output
                .extend_from_slice(response.encode().as_bytes());
        }
        self.flush(registry, token, now);
    }

    /// Turns the client into a follower of `job`'s output (before the
    /// first lines are sent: an answered client is closed once written).
    pub fn follow(&mut self, token: Token, job: &str) {
        if let Some(client) = self.clients.get_mut(&token) {
            client.phase = Phase::Following(job.to_string());
            client.deadline = None;
        }
    }

    /// Keeps the client, without a deadline, until `respond` answers it.
    pub fn hold(&mut self, token: Token) {
        if let Some(client) = self.clients.get_mut(&token) {
            client.phase = Phase::Holding;
            client.deadline = None;
        }
    }

    /// True when a client follows `job`'s output.
    pub fn follows(&self, job: &str) -> bool {
        self.clients
            .values()
            .any(|c| matches!(&c.phase, Phase::Following(name) if name == job))
    }

    /// Sends a job's new output line to every client following it.
    pub fn broadcast(
        &mut self,
        registry: &mut Registry,
        job: &str,
        pid: i32,
        line: &str,
        now: Mono,
    ) {
        let followers: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(&c.phase, Phase::Following(name) if name == job))
            .map(|(&token, _)| token)
            .collect();
        if followers.is_empty() {
            return;
        }
        let encoded = Response::Line {
            job: job.to_string(),
            pid,
            line: line.to_string(),
        }
        .encode();
        for token in followers {
            if let Some(client) = self.clients.get_mut(&token) {
                client.output.extend_from_slice(encoded.as_bytes());
            }
            self.flush(registry, token, now);
        }
    }

    /// Writes pending output without blocking; closes an answered client
    /// once all is written; drops one too slow to read.
    fn flush(&mut self, registry: &mut Registry, token: Token, now: Mono) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        while !client.output.is_empty() {
            match client.stream.write(&client.output) {
                Ok(0) => break,
                Ok(n) => {
                    client.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.drop_client(registry, token);
                    return;
                }
            }
        }
        let pending = !client.output.is_empty();
        let following = matches!(client.phase, Phase::Following(_));
        if following && client.output.len() > MAX_PENDING_OUTPUT {
            self.drop_client(registry, token);
            return;
        }
        match (&client.phase, pending) {
            (Phase::Answering, false) => {
                // Unread input makes the kernel reset the connection, and the
                // client could lose the answer: take it first.
                let mut sink = [0u8; 4096];
                for _ in 0..16 {
                    if !matches!(client.stream.read(&mut sink), Ok(n) if n > 0) {
                        break;
                    }
                }
                self.drop_client(registry, token);
            }
            (_, pending) => {
                // A reader that does not keep up with the response has until
                // the deadline; an idle follower has no deadline at all.
                client.deadline = match &client.phase {
                    // Bounded by MAX_PENDING_OUTPUT instead: a follower may
                    // be quiet for days.
                    Phase::Following(_) | Phase::Holding => None,
                    Phase::Reading => client.deadline,
                    Phase::Answering => Some(
                        client
                            .deadline
                            .unwrap_or(now.plus_millis(self.client_deadline_millis)),
                    ),
                };
                let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
                if pending {
                    flags |= EpollFlags::EPOLLOUT;
                }
                registry.modify(client.stream.as_fd(), token, flags);
            }
        }
    }

    fn drop_client(&mut self, registry: &mut Registry, token: Token) {
        if let Some(client) = self.clients.remove(&token) {
            registry.remove(client.stream.as_fd(), token);
            // A place, and a descriptor, are free again.
            self.resume(registry);
        }
    }

    fn pause(&mut self, registry: &Registry, why: Paused) {
        if let Some(token) = self.listener_token {
            registry.modify(self.listener.as_fd(), token, EpollFlags::empty());
        }
        self.paused = Some(why);
    }

    fn resume(&mut self, registry: &Registry) {
        if self.paused.take().is_some() {
            if let Some(token) = self.listener_token {
                registry.modify(self.listener.as_fd(), token, EpollFlags::EPOLLIN);
            }
        }
    }
}

/// The socket's directory must be pmtr's or root's, and writable by no
/// one else: whoever can write it can replace the socket.
fn check_directory(dir: &Path) -> Result<(), ControlError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(dir) else {
        return Ok(()); // bind reports it
    };
    let me = nix::unistd::geteuid().as_raw();
    let why = if metadata.uid() != 0 && metadata.uid() != me {
        Some(format!("owned by uid {}", metadata.uid()))
    } else if metadata.mode() & 0o022 != 0 && metadata.mode() & 0o1000 == 0 {
        Some(format!(
            "writable by group or others (mode {:o})",
            metadata.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(ControlError::UnsafeDirectory {
            dir: dir.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
