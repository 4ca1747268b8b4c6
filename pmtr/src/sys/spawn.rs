//! The parent side of a job's start: starts the child — `clone` as
//! `posix_spawn` does, learning at once whether it exec'd, or `fork` where
//! the start may hang — and keeps pmtr's long-lived descriptors out of the
//! way of the child's copy.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use pmtr_core::supervise::event::SetupStep;

use super::child::{self, Report, Reporter};
use super::plan::ExecPlan;

/// A started child and what is known of its setup.
pub struct Spawned {
    pub pid: libc::pid_t,
    pub setup: Setup,
}

/// How a child's setup went.
pub enum Setup {
    /// It exec'd (`None`) or failed at a step, with the errno.
    Done(Option<(SetupStep, i32)>),
    /// Not known yet (a forked child): the read end (non-blocking) of the
    /// pipe on which it reports a failed step, which reads end-of-file
    /// once it exec'd (`child::decode_failure`).
    Pending(OwnedFd),
}

/// Starts a child that runs `plan`. Fails only for want of a system
/// resource (EAGAIN, ENOMEM): the job is not at fault.
///
/// The child is made as `posix_spawn` makes it: `clone` with `CLONE_VM |
/// CLONE_VFORK` on a stack of its own. It shares pmtr's memory until its
/// `execve`, while pmtr waits, so a start costs pmtr the same whether it
/// supervises ten jobs or ten thousand: `fork` copied the page tables of
/// pmtr's whole heap, which grows with the number of jobs, at every start.
/// For the same reason it also shares pmtr's descriptor table
/// (`CLONE_FILES`) and copies only the low part it needs (child.rs):
/// copying the whole table, one pipe per job, and closing it again at
/// `execve` grew with the number of jobs too. When `clone` returns the
/// child has exec'd or given up, and a failed step is in its report.
///
/// The price: pmtr waits for the child's `execve`. A start whose directory,
/// program or files are on a filesystem that can hang (a network one) must
/// use [`fork_spawn`] instead.
pub fn spawn(plan: &ExecPlan<'_>) -> Result<Spawned, Errno> {
    let stack = child_stack()?;
    let start = ChildStart {
        plan: (plan as *const ExecPlan<'_>).cast(),
        report: Report::default(),
    };
    // SAFETY: `child_main` runs on its own stack (`stack` is the top of a
    // private mapping no one else uses: CLONE_VFORK keeps pmtr, the only
    // thread, suspended until the child has exec'd or exited, so starts
    // never overlap). It reads `start` and the plan, which outlive this
    // call, writes only its own stack and `start.report`, and ends in
    // execve or _exit. It makes its descriptor table its own before it
    // changes any descriptor (child.rs). Signal dispositions are not
    // shared (no CLONE_SIGHAND); pmtr installs no handler that could run
    // in the child.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD,
            (&start as *const ChildStart).cast_mut().cast(),
        )
    };
    match pid {
        -1 => Err(Errno::last()),
        pid => Ok(Spawned {
            pid,
            setup: Setup::Done(start.report.into_failure()),
        }),
    }
}

/// What a forked child's status pipe says now: `Err(EAGAIN)` while it has
/// neither exec'd nor failed, else the failed step (`None`: it exec'd, or
/// the pipe said nothing readable).
pub fn read_failure(pipe: &OwnedFd) -> Result<Option<(SetupStep, i32)>, Errno> {
    let mut message = [0u8; 8];
    match nix::unistd::read(pipe, &mut message) {
        Ok(read) => Ok(child::decode_failure(&message[..read])),
        Err(errno @ (Errno::EAGAIN | Errno::EINTR)) => Err(errno),
        Err(_) => Ok(None),
    }
}

/// Starts a child that runs `plan` with `fork`: pmtr goes on at once, so a
/// child stuck on a hung filesystem holds up only itself. Its setup is
/// reported on a pipe (`Setup::Pending`).
pub fn fork_spawn(plan: &ExecPlan<'_>) -> Result<Spawned, Errno> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    // SAFETY: the child only runs `child::run`, which makes
    // async-signal-safe syscalls on the plan (a copy of pmtr's memory,
    // valid in the child) and ends in execve or _exit.
    match unsafe { libc::fork() } {
        -1 => Err(Errno::last()),
        0 => child::run(plan, Reporter::Pipe(write.as_raw_fd())),
        pid => {
            drop(write);
            // Also set in the child: whichever runs first, the group
            // exists before pmtr ever signals it. The child may already
            // have exec'd (EACCES) or died (ESRCH): both are fine.
            // SAFETY: setpgid on our own child.
            unsafe { libc::setpgid(pid, pid) };
            Ok(Spawned {
                pid,
                setup: Setup::Pending(read),
            })
        }
    }
}

/// The lowest number pmtr gives a descriptor it keeps while a job runs
/// (capture pipes, log files): below it stay the few a child needs, so
/// that the part of the table a child copies stays small.
const KEPT_DESCRIPTORS_FROM: RawFd = 256;

/// `fd` renumbered at or above [`KEPT_DESCRIPTORS_FROM`], close-on-exec.
/// Where the limit on open files leaves no room up there, `fd` as it is:
/// starts then copy more, nothing else changes.
pub fn keep_high(fd: OwnedFd) -> OwnedFd {
    if fd.as_raw_fd() >= KEPT_DESCRIPTORS_FROM {
        return fd;
    }
    match nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(KEPT_DESCRIPTORS_FROM),
    ) {
        // SAFETY: a descriptor F_DUPFD_CLOEXEC just made, owned by no one
        // else; the original is closed when `fd` drops.
        Ok(high) => unsafe { OwnedFd::from_raw_fd(high) },
        Err(_) => fd,
    }
}

/// What the cloned child needs, passed by pointer.
struct ChildStart {
    plan: *const libc::c_void,
    report: Report,
}

extern "C" fn child_main(start: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `start` points at the `ChildStart` of `spawn`, alive while
    // pmtr waits for this child's execve or exit; its plan likewise.
    let (plan, report) = unsafe {
        let start = &*(start as *const ChildStart);
        (&*(start.plan as *const ExecPlan<'_>), &start.report)
    };
    child::run(plan, Reporter::Memory(report))
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
