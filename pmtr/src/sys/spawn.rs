//! The parent side of a job's start: makes the status pipe, starts the
//! child (`clone` as `posix_spawn` does), and hands it its plan.

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

/// Starts a child that runs `plan` and reports on `status` (from
/// [`status_pipe`]). Fails only for want of a system resource (EAGAIN,
/// ENOMEM): the job is not at fault.
///
/// The child is made as `posix_spawn` makes it: `clone` with `CLONE_VM |
/// CLONE_VFORK` on a stack of its own. It shares pmtr's memory until its
/// `execve`, while pmtr waits, so a start costs pmtr the same whether it
/// supervises ten jobs or ten thousand: `fork` copied the page tables of
/// pmtr's whole heap, which grows with the number of jobs, at every start.
pub fn spawn(plan: &ExecPlan<'_>, status: (OwnedFd, OwnedFd)) -> Result<Forked, Errno> {
    let (status_read, status_write) = status;
    let stack = child_stack()?;
    let start = ChildStart {
        plan: (plan as *const ExecPlan<'_>).cast(),
        status_fd: status_write.as_raw_fd(),
    };
    // SAFETY: `child_main` runs on its own stack (`stack` is the top of a
    // private mapping no one else uses: CLONE_VFORK keeps pmtr, the only
    // thread, suspended until the child has exec'd or exited, so starts
    // never overlap). It reads `start` and the plan, which outlive this
    // call, writes only its own stack, and ends in execve or _exit, like
    // `child::run` after a fork. Signal dispositions are not shared (no
    // CLONE_SIGHAND); pmtr installs no handler that could run in the child.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&start as *const ChildStart).cast_mut().cast(),
        )
    };
    match pid {
        -1 => Err(Errno::last()),
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

/// What the cloned child needs, passed by pointer.
struct ChildStart {
    plan: *const libc::c_void,
    status_fd: RawFd,
}

extern "C" fn child_main(start: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `start` points at the `ChildStart` of `spawn`, alive while
    // pmtr waits for this child's execve or exit; its plan likewise.
    let (plan, status_fd) = unsafe {
        let start = &*(start as *const ChildStart);
        (&*(start.plan as *const ExecPlan<'_>), start.status_fd)
    };
    child::run(plan, status_fd)
}

/// Bytes of the children's stack: `child::run` needs a few hundred.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// The top of the stack every child starts on, mapped once with a guard
/// page below it.
fn child_stack() -> Result<*mut libc::c_void, Errno> {
    static STACK_TOP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&top) = STACK_TOP.get() {
        return Ok(top as *mut libc::c_void);
    }
    let page = 4096;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CHILD_STACK_BYTES + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: the lowest page of the mapping just made: an overflow of the
    // child's stack faults instead of writing past it.
    unsafe { libc::mprotect(base, page, libc::PROT_NONE) };
    // Stacks grow down on x86-64 and aarch64: the child starts at the top.
    let top = base as usize + CHILD_STACK_BYTES + page;
    Ok(*STACK_TOP.get_or_init(|| top) as *mut libc::c_void)
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
