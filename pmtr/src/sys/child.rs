//! The child side of a job's start: runs between `clone` (spawn.rs: it
//! shares pmtr's memory, as a vfork child does) and `execve`.
//!
//! Everything in this module must be async-signal-safe: no allocation, no
//! locks, no logging, no panics. It interprets a prebuilt `ExecPlan` with
//! raw libc calls and ends in `execve` or `_exit`. A failed step is sent
//! to the parent as data — one step byte and the errno — on a
//! close-on-exec pipe.

use std::os::fd::RawFd;

use pmtr_core::supervise::event::SetupStep;

use super::plan::{ExecPlan, Stream};

/// Exit status of a child whose setup failed; the parent knows it failed
/// from the pipe, so this status is never shown as the job's.
pub const SETUP_FAILED_STATUS: libc::c_int = 127;

/// The wire form of a failed step: a byte per step, in order.
pub const STEPS: [SetupStep; 12] = [
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
];

fn step_byte(step: SetupStep) -> u8 {
    let mut index = 0;
    while index < STEPS.len() {
        if STEPS[index] == step {
            return index as u8;
        }
        index += 1;
    }
    u8::MAX
}

/// Runs in the forked child: applies the plan and execs, or reports the
/// failed step on `status_fd` and exits.
pub fn run(plan: &ExecPlan<'_>, status_fd: RawFd) -> ! {
    if let Err(step) = apply(plan) {
        fail(status_fd, step);
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
    fail(status_fd, SetupStep::Exec)
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
            let raw = |result: libc::c_long| result as libc::c_int;
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

fn fail(status_fd: RawFd, step: SetupStep) -> ! {
    // SAFETY: errno is thread-local and readable; write and _exit are
    // async-signal-safe; the buffer is a local array.
    unsafe {
        let errno = *libc::__errno_location();
        let mut message = [0u8; 5];
        message[0] = step_byte(step);
        message[1..].copy_from_slice(&errno.to_le_bytes());
        libc::write(status_fd, message.as_ptr().cast(), message.len());
        libc::_exit(SETUP_FAILED_STATUS)
    }
}

/// Decodes what a child wrote on its status pipe: the failed step and
/// its errno. Anything else (a short or unknown message) is `None`.
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
            let mut message = [step_byte(step), 0, 0, 0, 0];
            message[1..].copy_from_slice(&13i32.to_le_bytes());
            assert_eq!(decode_failure(&message), Some((step, 13)));
        }
        assert_eq!(decode_failure(&[0, 1]), None);
        assert_eq!(decode_failure(&[200, 0, 0, 0, 0]), None);
    }
}
