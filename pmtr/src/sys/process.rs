//! Processes as the kernel sees them: reaping children, signalling and
//! probing process groups, and the process-wide settings of a supervisor.

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use pmtr_core::supervise::event::{ExitStatus, StopSignal};

/// Reaps up to `most` children that have exited, without blocking.
/// Signals coalesce, so one SIGCHLD may stand for many children; fewer
/// than `most` reaped means none is left. Each `waitpid(-1)` walks pmtr's
/// children up to the first that exited (all of them when none has): with
/// 10 000 jobs, reaping 1 000 at once in one go kept the loop away for
/// 140 ms, so the caller takes a batch per turn.
pub fn reap_some(most: usize) -> Vec<(libc::pid_t, ExitStatus)> {
    let mut reaped = Vec::new();
    while reaped.len() < most {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                reaped.push((pid.as_raw(), ExitStatus::Code(code)))
            }
            Ok(WaitStatus::Signaled(pid, signal, _core)) => reaped.push((
                pid.as_raw(),
                ExitStatus::Signal {
                    number: signal as i32,
                    name: signal.as_str(),
                },
            )),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    reaped
}

/// Sends `signal` to process group `pgid`. A group already gone is not an
/// error.
pub fn signal_group(pgid: libc::pid_t, signal: StopSignal) -> Result<(), Errno> {
    let signal = match signal {
        StopSignal::Term => Signal::SIGTERM,
        StopSignal::Int => Signal::SIGINT,
        StopSignal::Quit => Signal::SIGQUIT,
        StopSignal::Hup => Signal::SIGHUP,
        StopSignal::Usr1 => Signal::SIGUSR1,
        StopSignal::Usr2 => Signal::SIGUSR2,
        StopSignal::Kill => Signal::SIGKILL,
        StopSignal::Winch => Signal::SIGWINCH,
    };
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(error) => Err(error),
    }
}

/// True while process group `pgid` has a member (zombies included).
pub fn group_alive(pgid: libc::pid_t) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// Marks every descriptor pmtr inherited (from whoever started it)
/// close-on-exec, so that no job gets one: the child's `close_range`
/// does the same, but a kernel before 5.11 lacks its CLOEXEC flag.
/// Returns how many were marked.
pub fn close_inherited_on_exec() -> usize {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let fds: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let mut marked = 0;
    for fd in fds {
        // SAFETY: the descriptor is only borrowed for the call; one that
        // was closed meanwhile (the directory's own) fails with EBADF.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let Ok(flags) = fcntl(borrowed, FcntlArg::F_GETFD) else {
            continue;
        };
        let flags = FdFlag::from_bits_truncate(flags);
        if !flags.contains(FdFlag::FD_CLOEXEC)
            && fcntl(borrowed, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).is_ok()
        {
            marked += 1;
        }
    }
    marked
}

/// Makes pmtr the reaper of what its jobs leave behind.
pub fn become_subreaper() -> Result<(), Errno> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Raises the open-file limit to its hard limit: each running job holds a
/// pipe or two in pmtr. Jobs get the original soft limit back unless
/// their `ulimit` says otherwise.
pub fn raise_open_file_limit() -> Result<(u64, u64), Errno> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard))
}

/// The value of extended attribute `name` of `path`, if it has one that
/// fits in 64 bytes (the `trusted.delegate` mark systemd puts on a
/// delegated cgroup is "1").
pub fn small_xattr(path: &std::ffi::CStr, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let mut value = [0u8; 64];
    // SAFETY: both names are NUL-terminated C strings; the kernel writes at
    // most `value.len()` bytes into the local buffer.
    let read = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let read = usize::try_from(read).ok()?;
    Some(value[..read].to_vec())
}

/// pmtr's children now: those of each of its threads
/// (`/proc/self/task/*/children`).
pub fn children() -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        children.extend(
            text.split_whitespace()
                .filter_map(|pid| pid.parse::<i32>().ok()),
        );
    }
    children
}

/// Sends `signal` to one process; one already gone is not an error.
pub fn signal_process(pid: libc::pid_t, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
}
