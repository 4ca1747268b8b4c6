//! Job output captured through a pipe (`out`/`err` set to `syslog`, or a
//! file pmtr writes for `log rotate`/`log timestamps`): read as it comes,
//! split into lines, kept in the job's ring and handed on — to the log or
//! the job's file, and to followers — tagged with the job's name and pid.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use pmtr_core::proto::state::HandedCapture;
use pmtr_core::supervise::event::Pid;

use super::log::sanitize;
use super::logfiles::{LogFiles, Owner};
use super::registry::{Registry, Source, Token};
use super::rings::Rings;
use pmtr_core::config::LogFiles as LogOptions;

/// A longer line is logged in pieces of this size.
const MAX_LINE: usize = 4096;
/// Most bytes read from one pipe per wakeup, so that one chatty job
/// cannot starve the others.
const MAX_READ_PER_WAKEUP: usize = 256 * 1024;

/// Every open capture pipe, the last lines of each job, and the files
/// pmtr writes for jobs.
#[derive(Default)]
pub struct Captures {
    /// Boxed: a thousand jobs' pipes take a table of a few pointers' room
    /// each, and no slot stands empty at a capture's full size.
    pipes: HashMap<Token, Box<Capture>>,
    rings: Rings,
    files: LogFiles,
}

/// Where a captured stream's lines go besides the ring and followers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// pmtr's log (`syslog`).
    Log,
    /// A file pmtr writes.
    File(Box<FileSink>),
}

/// A file pmtr writes for a job: its resolved path, the job's options and
/// the owner of a file pmtr creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSink {
    pub path: String,
    pub options: LogOptions,
    pub owner: Owner,
}

impl Captures {
    /// Watches a new capture pipe; unwatchable, it is closed (the job's
    /// output is lost, the job runs on).
    pub fn watch(&mut self, registry: &mut Registry, capture: Capture) -> Result<(), Errno> {
        let token = registry.add(capture.fd(), EpollFlags::EPOLLIN, Source::Capture)?;
        if let Sink::File(file) = &capture.sink {
            self.files.acquire(&file.path, file.options, file.owner);
        }
        self.pipes.insert(token, Box::new(capture));
        Ok(())
    }

    /// How many capture pipes are open.
    pub fn pipe_count(&self) -> usize {
        self.pipes.len()
    }

    /// The job whose output pipe `token` is.
    pub fn job_of(&self, token: Token) -> Option<&str> {
        self.pipes.get(&token).map(|c| c.job.as_str())
    }

    /// Reads pipe `token`: each line goes to the job's ring, to its file
    /// (raw, as written) if pmtr writes one, and to `sink` with whether it
    /// is for the log too (`syslog`) or only for followers. A file's lines
    /// reach `sink` only if `followed`: nothing else needs them made
    /// harmless one by one.
    pub fn read(
        &mut self,
        registry: &mut Registry,
        token: Token,
        followed: bool,
        sink: &mut dyn FnMut(&str, Pid, &str, bool),
    ) {
        let Some(capture) = self.pipes.get_mut(&token) else {
            return;
        };
        let (job, pid) = (capture.job.clone(), capture.pid);
        let path = match &capture.sink {
            Sink::File(file) => Some(file.path.clone()),
            Sink::Log => None,
        };
        let ring = self.rings.of(&job);
        // Lines read at one wakeup are stamped with its time: they were
        // all in the pipe then.
        let mut file = path
            .as_deref()
            .and_then(|path| self.files.writer(path, SystemTime::now()));
        let every_line = path.is_none() || followed;
        let drained = capture.drain(&mut |raw: &[u8], ends_line: bool| {
            if let Some(file) = &mut file {
                file.write(raw, ends_line);
            }
            // The log and the ring take each piece as a line, empty ones
            // left out.
            if raw.is_empty() {
                return;
            }
            ring.push(pid, raw);
            if every_line {
                sink(&job, pid, &sanitize(raw), path.is_none());
            }
        });
        if let Some(file) = &mut file {
            file.flush();
        }
        if drained == Drained::Closed {
            if let Some(capture) = self.pipes.remove(&token) {
                registry.remove(capture.fd(), token);
                if let Sink::File(file) = &capture.sink {
                    self.files.release(&file.path);
                }
            }
        }
    }

    /// Every pipe, read up to what it holds now (its lines handed on as
    /// any), then described for the next pmtr: a reexec (SPEC 11.8) keeps
    /// the pipes open across the exec.
    pub fn hand_over(
        &mut self,
        registry: &mut Registry,
        sink: &mut dyn FnMut(&str, Pid, &str, bool),
    ) -> Vec<HandedCapture> {
        let tokens: Vec<Token> = self.pipes.keys().copied().collect();
        for token in tokens {
            self.read(registry, token, false, sink);
        }
        self.pipes
            .values()
            .map(|capture| HandedCapture {
                job: capture.job.clone(),
                pid: capture.pid,
                fd: capture.pipe.as_raw_fd(),
                index: capture.index,
                partial: capture.partial.clone(),
            })
            .collect()
    }

    /// SIGUSR1: the files pmtr writes are reopened by name.
    pub fn reopen_files(&mut self) {
        self.files.reopen_all();
    }

    /// What went wrong with the files since the last call, for the log.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.files.take_warnings()
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
    sink: Sink,
    /// Which of the job's pipes (`spawner::sinks`).
    index: usize,
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
    pub fn new(job: String, pid: Pid, pipe: OwnedFd, sink: Sink, index: usize) -> Capture {
        Capture {
            job,
            pid,
            pipe,
            sink,
            index,
            partial: Vec::new(),
        }
    }

    /// A pipe the pmtr before this one read (SPEC 11.8), with the start of
    /// a line it had not seen end.
    pub fn resume(handed: HandedCapture, pipe: OwnedFd, sink: Sink) -> Capture {
        Capture {
            job: handed.job,
            pid: handed.pid,
            pipe,
            sink,
            index: handed.index,
            partial: handed.partial,
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// Reads what the pipe holds and hands each line, as the job wrote it
    /// (without its newline), to `sink`: a line longer than `MAX_LINE` in
    /// pieces, each but the last marked as not ending it.
    pub fn drain(&mut self, sink: &mut dyn FnMut(&[u8], bool)) -> Drained {
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

    fn take(&mut self, mut bytes: &[u8], sink: &mut dyn FnMut(&[u8], bool)) {
        while let Some(newline) = memchr::memchr(b'\n', bytes) {
            // A whole line in the buffer is handed on from there, uncopied.
            if self.partial.is_empty() {
                sink(&bytes[..newline], true);
            } else {
                self.partial.extend_from_slice(&bytes[..newline]);
                sink(&self.partial, true);
                self.partial.clear();
            }
            bytes = &bytes[newline + 1..];
        }
        self.partial.extend_from_slice(bytes);
        // A longer line goes on in pieces: memory stays bounded.
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            sink(&self.partial, false);
            self.partial = rest;
        }
    }

    /// The end of the stream ends the last line.
    fn flush(&mut self, sink: &mut dyn FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            sink(&self.partial, true);
            self.partial.clear();
        }
    }
}
