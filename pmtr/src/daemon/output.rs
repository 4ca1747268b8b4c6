//! Job output captured through a pipe (`out`/`err` set to `syslog`): read
//! as it comes, split into lines, kept in the job's ring and handed on —
//! to the log, followers — tagged with the job's name and pid.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use pmtr_core::supervise::event::Pid;

use super::log::sanitize;
use super::registry::{Registry, Source, Token};
use super::rings::Rings;

/// A longer line is logged in pieces of this size.
const MAX_LINE: usize = 4096;
/// Most bytes read from one pipe per wakeup, so that one chatty job
/// cannot starve the others.
const MAX_READ_PER_WAKEUP: usize = 256 * 1024;

/// Every open capture pipe, and the last lines of each job.
#[derive(Default)]
pub struct Captures {
    pipes: HashMap<Token, Capture>,
    rings: Rings,
}

impl Captures {
    /// Watches a new capture pipe; unwatchable, it is closed (the job's
    /// output is lost, the job runs on).
    pub fn watch(&mut self, registry: &mut Registry, capture: Capture) -> Result<(), Errno> {
        let token = registry.add(capture.fd(), EpollFlags::EPOLLIN, Source::Capture)?;
        self.pipes.insert(token, capture);
        Ok(())
    }

    /// Reads pipe `token`: each line goes to the job's ring and to `sink`.
    pub fn read(
        &mut self,
        registry: &mut Registry,
        token: Token,
        sink: &mut dyn FnMut(&str, Pid, &str),
    ) {
        let Some(capture) = self.pipes.get_mut(&token) else {
            return;
        };
        let rings = &mut self.rings;
        let drained = capture.drain(&mut |job: &str, pid: Pid, line: &str| {
            rings.push(job, pid, line);
            sink(job, pid, line);
        });
        if drained == Drained::Closed {
            if let Some(capture) = self.pipes.remove(&token) {
                registry.remove(capture.fd(), token);
            }
        }
    }

    /// The last `count` lines of `job`: (pid, line).
    pub fn last(&self, job: &str, count: usize) -> Vec<(Pid, String)> {
        self.rings.last(job, count)
    }

    /// Drops the lines of jobs that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.rings.retain(exists);
    }
}

pub struct Capture {
    job: String,
    pid: Pid,
    pipe: OwnedFd,
    partial: Vec<u8>,
}

/// What reading a capture found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// More may come.
    Open,
    /// Every writer closed the pipe.
    Closed,
}

impl Capture {
    pub fn new(job: String, pid: Pid, pipe: OwnedFd) -> Capture {
        Capture {
            job,
            pid,
            pipe,
            partial: Vec::new(),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// Reads what the pipe holds and hands each complete line, made
    /// harmless, to `sink` with the job's name and pid.
    pub fn drain(&mut self, sink: &mut dyn FnMut(&str, Pid, &str)) -> Drained {
        let mut buffer = [0u8; 64 * 1024];
        let mut total = 0;
        while total < MAX_READ_PER_WAKEUP {
            match nix::unistd::read(&self.pipe, &mut buffer) {
                Ok(0) => {
                    self.flush(sink);
                    return Drained::Closed;
                }
                Ok(n) => {
                    total += n;
                    self.take(&buffer[..n], sink);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    self.flush(sink);
                    return Drained::Closed;
                }
            }
        }
        Drained::Open
    }

    fn take(&mut self, mut bytes: &[u8], sink: &mut dyn FnMut(&str, Pid, &str)) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[..newline]);
            self.flush(sink);
            bytes = &bytes[newline + 1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            self.flush(sink);
            self.partial = rest;
        }
    }

    fn flush(&mut self, sink: &mut dyn FnMut(&str, Pid, &str)) {
        if !self.partial.is_empty() {
            let line = sanitize(&self.partial);
            sink(&self.job, self.pid, &line);
            self.partial.clear();
        }
    }
}
