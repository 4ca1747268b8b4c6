//! Job output captured through a pipe (`out`/`err` set to `syslog`): read
//! as it comes, split into lines, and handed on — to the log, the job's
//! ring, followers — tagged with the job's name and pid.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use pmtr_core::supervise::event::Pid;

use super::log::sanitize;

/// A longer line is logged in pieces of this size.
const MAX_LINE: usize = 4096;
/// Most bytes read from one pipe per wakeup, so that one chatty job
/// cannot starve the others.
const MAX_READ_PER_WAKEUP: usize = 256 * 1024;

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
