//! Becoming a daemon: fork, a new session, standard streams on
//! /dev/null — with the parent waiting until the daemon says it started,
//! so that `pmtr` exits non-zero when the daemon could not start.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::{pipe2, setsid};

/// The daemon's half: tells the waiting parent how the start went.
pub struct Readiness {
    pipe: File,
}

impl Readiness {
    /// The start succeeded: the parent exits 0.
    pub fn ready(mut self) {
        let _ = self.pipe.write_all(b"\0");
    }

    /// The start failed: the parent prints `message` and exits 1.
    pub fn failed(mut self, message: &str) {
        let _ = self.pipe.write_all(message.as_bytes());
    }
}

/// Forks. In the parent, waits for the daemon's word and never returns:
/// exits 0 on success, prints the error and exits 1 otherwise. In the
/// daemon, starts a new session and returns the readiness pipe.
pub fn daemonize() -> Result<Readiness, Errno> {
    let (read_end, write_end): (OwnedFd, OwnedFd) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: single-threaded at this point; the child continues as the
    // daemon, the parent only reads a pipe and exits.
    match unsafe { libc::fork() } {
        -1 => Err(Errno::last()),
        0 => {
            drop(read_end);
            setsid()?;
            Ok(Readiness {
                pipe: File::from(write_end),
            })
        }
        _ => {
            drop(write_end);
            let mut word = Vec::new();
            let _ = File::from(read_end).read_to_end(&mut word);
            match word.as_slice() {
                b"\0" => std::process::exit(0),
                b"" => {
                    eprintln!("pmtr: the daemon exited before it started");
                    std::process::exit(1)
                }
                message => {
                    eprintln!("{}", String::from_utf8_lossy(message).trim_end());
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Points standard input, output and error at /dev/null.
pub fn detach_stdio() -> Result<(), Errno> {
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } == -1 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// Makes sure descriptors 0, 1 and 2 are open (on /dev/null if they were
/// closed), so that no file pmtr opens later lands on them.
pub fn ensure_stdio_open() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
                let raw = null.as_raw_fd();
                if raw != fd {
                    // SAFETY: dup2 onto a closed standard descriptor.
                    unsafe { libc::dup2(raw, fd) };
                } else {
                    std::mem::forget(null);
                }
            }
        }
    }
}
