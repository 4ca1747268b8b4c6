//! The parent side of a job's start: makes the status pipe, forks, and
//! hands the child its plan.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use super::child;
use super::plan::ExecPlan;

/// A forked child: its pid and the read end of its status pipe, which
/// reads end-of-file once `execve` succeeded, or the failed step.
pub struct Forked {
    pub pid: libc::pid_t,
    pub status: OwnedFd,
}

/// The pipe on which a child reports a failed step: (read end, write
/// end), both close-on-exec, the read end non-blocking.
pub fn status_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((read, write))
}

/// Forks a child that runs `plan` and reports on `status` (from
/// [`status_pipe`]). Fails only for want of a system resource (fork
/// EAGAIN/ENOMEM): the job is not at fault.
pub fn spawn(plan: &ExecPlan<'_>, status: (OwnedFd, OwnedFd)) -> Result<Forked, Errno> {
    let (status_read, status_write) = status;
    // SAFETY: pmtr is single-threaded, so the child may run any code; it
    // runs only `child::run`, which is async-signal-safe and never returns.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Errno::last()),
        0 => child::run(plan, status_write.as_raw_fd()),
        pid => {
            drop(status_write);
            // Also set in the child: whichever runs first, the group exists
            // before pmtr ever signals it. The child may already have
            // exec'd (EACCES) or died (ESRCH): both are fine.
            // SAFETY: setpgid on our own child.
            unsafe { libc::setpgid(pid, pid) };
            Ok(Forked {
                pid,
                status: status_read,
            })
        }
    }
}

/// For `onconnect`: forks `argv` (NULL-terminated pointers into C strings
/// the caller keeps alive) with `connection` as its descriptor 3 and no
/// other descriptor beyond the standard three. Returns the child's pid.
pub fn spawn_with_connection(
    argv: &[*const libc::c_char],
    connection: RawFd,
) -> Result<libc::pid_t, Errno> {
    if argv.last().is_none_or(|p| !p.is_null()) || argv.len() < 2 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: the child only makes async-signal-safe syscalls on values
    // that exist before the fork, then execs or exits.
    match unsafe { libc::fork() } {
        -1 => Err(Errno::last()),
        0 => {
            // SAFETY: in the child; `argv` stays valid (copied address space).
            unsafe {
                let placed = if connection == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(connection, 3)
                };
                if placed != -1 {
                    libc::syscall(
                        libc::SYS_close_range,
                        4u32,
                        u32::MAX,
                        libc::CLOSE_RANGE_CLOEXEC,
                    );
                    libc::execv(argv[0], argv.as_ptr());
                }
                libc::_exit(child::SETUP_FAILED_STATUS)
            }
        }
        pid => Ok(pid),
    }
}
