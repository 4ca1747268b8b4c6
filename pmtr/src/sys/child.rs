//! The child side of a job's start: runs between `clone` (spawn.rs: it
//! shares pmtr's memory and descriptor table, as a vfork child does) and
//! `execve`.
//!
//! Everything in this module must be async-signal-safe: no allocation, no
//! locks, no logging, no panics. It interprets a prebuilt `ExecPlan` with
//! raw libc calls and ends in `execve` or `_exit`. A failed step is left,
//! with its errno, in a `Report` in the memory it shares with pmtr, which
//! reads it once the child is gone — or, for a child made by `fork`, which
//! shares nothing, written to a close-on-exec pipe.

use std::cell::UnsafeCell;
use std::os::fd::RawFd;

use pmtr_core::supervise::event::SetupStep;

use super::plan::{ExecPlan, Stream};

/// Exit status of a child whose setup failed; the parent knows it failed
/// from its report, so this status is never shown as the job's.
pub const SETUP_FAILED_STATUS: libc::c_int = 127;

/// The step of a child's setup that failed and its errno, written by the
/// child, read by pmtr after the child has exec'd or exited (a child that
/// exec'd wrote nothing).
#[derive(Default)]
pub struct Report(UnsafeCell<Option<(SetupStep, i32)>>);

impl Report {
    /// What the child left; consumes the report, so it is read only once
    /// the child no longer runs in pmtr's memory.
    pub fn into_failure(self) -> Option<(SetupStep, i32)> {
        self.0.into_inner()
    }

    fn write(&self, failure: (SetupStep, i32)) {
        // SAFETY: only the child writes, while pmtr is suspended (vfork),
        // to memory alive for the whole start; volatile so that the store
        // is not dropped before `_exit`.
        unsafe { self.0.get().write_volatile(Some(failure)) }
    }
}

/// Where a child tells pmtr which step failed.
#[derive(Clone, Copy)]
pub enum Reporter<'a> {
    /// Memory shared with pmtr (a `CLONE_VM` child).
    Memory(&'a Report),
    /// The write end of a close-on-exec pipe (a forked child).
    Pipe(RawFd),
}

/// Runs in the new child: applies the plan and execs, or reports the
/// failed step and exits.
pub fn run(plan: &ExecPlan<'_>, report: Reporter<'_>) -> ! {
    // What the child copies of pmtr's descriptor table: the plan's, and
    // the pipe it reports on.
    let keep_below = match report {
        Reporter::Memory(_) => plan.keep_below,
        Reporter::Pipe(fd) => plan.keep_below.max(fd as libc::c_uint + 1),
    };
    // A child that shares pmtr's memory holds pmtr up until it execs: it
    // must not wait on a FIFO (or a device) it opens. pmtr starts with
    // `fork` a job whose stream is a FIFO (spawner.rs), where the open
    // waits as the original's does; this covers one swapped in since.
    let nonblocking = matches!(report, Reporter::Memory(_));
    if let Err(step) = apply(plan, keep_below, nonblocking) {
        fail(report, step);
    }
    // SAFETY: the plan's program, argv and envp are NUL-terminated C strings
    // and NULL-terminated pointer arrays owned by the plan, alive here.
    unsafe {
        libc::execve(
            plan.program.as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
        )
    };
    fail(report, SetupStep::Exec)
}

fn check(result: libc::c_int, step: SetupStep) -> Result<(), SetupStep> {
    if result == -1 {
        Err(step)
    } else {
        Ok(())
    }
}

fn apply(
    plan: &ExecPlan<'_>,
    keep_below: libc::c_uint,
    nonblocking: bool,
) -> Result<(), SetupStep> {
    // SAFETY (whole function): plain syscalls on values the plan owns; each
    // pointer passed is to a live C string, struct or array of the plan, or
    // to a local. None allocates or takes a lock.
    unsafe {
        let raw = |result: libc::c_long| result as libc::c_int;
        // First, so that everything the job does is counted in its cgroup
        // and ended with it. Writing "0" moves the writer; the descriptor
        // is pmtr's (close-on-exec), used before the table is unshared.
        if plan.cgroup_procs >= 0 {
            let written = libc::write(plan.cgroup_procs, b"0".as_ptr().cast(), 1);
            check(raw(written as libc::c_long), SetupStep::Cgroup)?;
        }
        // The table is pmtr's (CLONE_FILES) until this makes it the
        // child's own: nothing below may change a descriptor before. Only
        // the descriptors below `keep_below` are copied — the standard
        // three, pmtr's few fixed ones and this start's pipes; the rest
        // are close-on-exec anyway. Linux before 5.9 has no
        // CLOSE_RANGE_UNSHARE: the whole table is copied instead. A forked
        // child's table is its own already: this only closes.
        let unshared = libc::syscall(
            libc::SYS_close_range,
            keep_below,
            u32::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        );
        if unshared == -1 {
            check(
                raw(libc::syscall(libc::SYS_unshare, libc::CLONE_FILES)),
                SetupStep::Descriptors,
            )?;
        }
        // An ignored signal stays ignored across execve (handled ones are
        // reset by execve itself): reset those pmtr ignores or inherited
        // ignored. pmtr blocks the signals it reads from its signalfd: the
        // job starts with none blocked.
        for &signal in &plan.ignored_signals {
            super::signals::reset_to_default(signal);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        check(libc::setpgid(0, 0), SetupStep::ProcessGroup)?;
        check(libc::chdir(plan.dir.as_ptr()), SetupStep::Chdir)?;
        if let Some(nice) = plan.nice {
            check(
                libc::setpriority(libc::PRIO_PROCESS, 0, nice),
                SetupStep::Nice,
            )?;
        }
        if let Some(mask) = &plan.cpu {
            let size = std::mem::size_of::<libc::cpu_set_t>();
            check(libc::sched_setaffinity(0, size, mask), SetupStep::Affinity)?;
        }
        for (resource, limit) in &plan.rlimits {
            check(libc::setrlimit(*resource, limit), SetupStep::Rlimit)?;
        }
        if let Some(identity) = &plan.identity {
            // Raw syscalls, not glibc's wrappers: those would signal every
            // thread glibc knows of, and this child shares pmtr's memory
            // (spawn.rs) — glibc's view of threads is pmtr's.
            let groups = &identity.groups;
            check(
                raw(libc::syscall(
                    libc::SYS_setgroups,
                    groups.len(),
                    groups.as_ptr(),
                )),
                SetupStep::Groups,
            )?;
            check(
                raw(libc::syscall(libc::SYS_setgid, identity.gid)),
                SetupStep::Gid,
            )?;
            check(
                raw(libc::syscall(libc::SYS_setuid, identity.uid)),
                SetupStep::Uid,
            )?;
        }
        // Opened after the privilege drop: a job writes only where its
        // user may.
        let opening = Opening { nonblocking };
        opening.redirect(&plan.stdin, 0, libc::O_RDONLY, SetupStep::Stdin)?;
        let append = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND;
        opening.redirect(&plan.stdout, 1, append, SetupStep::Stdout)?;
        opening.redirect(&plan.stderr, 2, append, SetupStep::Stderr)?;
        // Every descriptor of pmtr is close-on-exec already; this also
        // covers any inherited from whoever started pmtr. Older kernels
        // without close_range leave it to O_CLOEXEC.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

/// How the child opens the files of its streams.
struct Opening {
    /// Opened with O_NONBLOCK, which is cleared once open: the open itself
    /// never waits (a FIFO without a writer, a device), reads and writes
    /// block as the job expects.
    nonblocking: bool,
}

impl Opening {
    /// Points descriptor `target` at the stream.
    ///
    /// # Safety
    /// Call only in the child; the stream's path is a live C string.
    unsafe fn redirect(
        &self,
        stream: &Stream,
        target: RawFd,
        flags: libc::c_int,
        step: SetupStep,
    ) -> Result<(), SetupStep> {
        let fd = match stream {
            Stream::File(path) => {
                let nonblocking = if self.nonblocking {
                    libc::O_NONBLOCK
                } else {
                    0
                };
                let open = flags | nonblocking | libc::O_CLOEXEC;
                // SAFETY: `path` is a NUL-terminated string owned by the plan.
                let fd = unsafe { libc::open(path.as_ptr(), open, 0o644) };
                check(fd, step)?;
                if self.nonblocking {
                    // F_SETFL ignores the access mode and creation flags.
                    // SAFETY: fcntl on the descriptor just opened.
                    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }, step)?;
                }
                fd
            }
            Stream::Fd(fd) => *fd,
        };
        if fd != target {
            // SAFETY: dup2 on descriptors of this process; the new one is
            // not close-on-exec.
            check(unsafe { libc::dup2(fd, target) }, step)?;
        } else {
            // SAFETY: clearing FD_CLOEXEC on a descriptor we hold.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        }
        Ok(())
    }
}

fn fail(report: Reporter<'_>, step: SetupStep) -> ! {
    // SAFETY: errno is thread-local and readable; write and _exit are
    // async-signal-safe; the buffer is a local array.
    unsafe {
        let errno = *libc::__errno_location();
        match report {
            Reporter::Memory(report) => report.write((step, errno)),
            Reporter::Pipe(fd) => {
                let message = encode_failure(step, errno);
                libc::write(fd, message.as_ptr().cast(), message.len());
            }
        }
        libc::_exit(SETUP_FAILED_STATUS)
    }
}

/// The wire form of a failed step on a pipe: its index, then the errno.
fn encode_failure(step: SetupStep, errno: i32) -> [u8; 5] {
    let mut message = [0u8; 5];
    let mut index = 0;
    while index < STEPS.len() && STEPS[index] != step {
        index += 1;
    }
    message[0] = index as u8;
    message[1..].copy_from_slice(&errno.to_le_bytes());
    message
}

/// Every step, in the order of their wire bytes.
const STEPS: [SetupStep; 14] = [
    SetupStep::Descriptors,
    SetupStep::ProcessGroup,
    SetupStep::Chdir,
    SetupStep::Nice,
    SetupStep::Affinity,
    SetupStep::Rlimit,
    SetupStep::Groups,
    SetupStep::Gid,
    SetupStep::Uid,
    SetupStep::Stdin,
    SetupStep::Stdout,
    SetupStep::Stderr,
    SetupStep::Exec,
    SetupStep::Cgroup,
];

/// Decodes what a forked child wrote on its pipe: the failed step and its
/// errno. Anything else (nothing: it exec'd; a short or unknown message)
/// is `None`.
pub fn decode_failure(message: &[u8]) -> Option<(SetupStep, i32)> {
    let [step, a, b, c, d] = *message else {
        return None;
    };
    let step = *STEPS.get(step as usize)?;
    Some((step, i32::from_le_bytes([a, b, c, d])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_round_trip() {
        for step in STEPS {
            let message = encode_failure(step, 13);
            assert_eq!(decode_failure(&message), Some((step, 13)));
        }
        assert_eq!(decode_failure(&[0, 1]), None);
        assert_eq!(decode_failure(&[200, 0, 0, 0, 0]), None);
    }
}
