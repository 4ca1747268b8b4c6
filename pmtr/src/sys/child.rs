//! The child side of a job's start: runs between `clone` (spawn.rs: it
//! shares pmtr's memory and descriptor table, as a vfork child does) and
//! `execve`.
//!
//! Everything in this module must be async-signal-safe: no allocation, no
//! locks, no logging, no panics. It interprets a prebuilt `ExecPlan` with
//! raw libc calls and ends in `execve` or `_exit`. A failed step is left,
//! with its errno, in a `Report` in the memory it shares with pmtr, which
//! reads it once the child is gone.

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

/// Runs in the cloned child: applies the plan and execs, or leaves the
/// failed step in `report` and exits.
pub fn run(plan: &ExecPlan<'_>, report: &Report) -> ! {
    if let Err(step) = apply(plan) {
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

fn apply(plan: &ExecPlan<'_>) -> Result<(), SetupStep> {
    // SAFETY (whole function): plain syscalls on values the plan owns; each
    // pointer passed is to a live C string, struct or array of the plan, or
    // to a local. None allocates or takes a lock.
    unsafe {
        let raw = |result: libc::c_long| result as libc::c_int;
        // The table is pmtr's (CLONE_FILES) until this makes it the
        // child's own: nothing below may change a descriptor before. Only
        // the descriptors below `keep_below` are copied — the standard
        // three, pmtr's few fixed ones and this start's pipes; the rest
        // are close-on-exec anyway. Linux before 5.9 has no
        // CLOSE_RANGE_UNSHARE: the whole table is copied instead.
        let unshared = libc::syscall(
            libc::SYS_close_range,
            plan.keep_below,
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
        redirect(&plan.stdin, 0, libc::O_RDONLY, SetupStep::Stdin)?;
        let append = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND;
        redirect(&plan.stdout, 1, append, SetupStep::Stdout)?;
        redirect(&plan.stderr, 2, append, SetupStep::Stderr)?;
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

/// Points descriptor `target` at the stream.
///
/// # Safety
/// Call only in the child; the stream's path is a live C string.
unsafe fn redirect(
    stream: &Stream,
    target: RawFd,
    flags: libc::c_int,
    step: SetupStep,
) -> Result<(), SetupStep> {
    let fd = match stream {
        // SAFETY: `path` is a NUL-terminated string owned by the plan.
        Stream::File(path) => unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) },
        Stream::Fd(fd) => *fd,
    };
    check(fd, step)?;
    if fd != target {
        // SAFETY: dup2 on descriptors of this process; the new one is not
        // close-on-exec.
        check(unsafe { libc::dup2(fd, target) }, step)?;
    } else {
        // SAFETY: clearing FD_CLOEXEC on a descriptor we hold.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    Ok(())
}

fn fail(report: &Report, step: SetupStep) -> ! {
    // SAFETY: errno is thread-local and readable; _exit is
    // async-signal-safe.
    unsafe {
        report.write((step, *libc::__errno_location()));
        libc::_exit(SETUP_FAILED_STATUS)
    }
}
