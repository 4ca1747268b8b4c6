//! Processes as the kernel sees them: reaping children, signalling and
//! probing process groups, and the process-wide settings of a supervisor.

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
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
    match killpg(Pid::from_raw(pgid), signal_of(signal)) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Sends `signal` to process `pid`, and to its process group if it leads
/// one (what it started in its own session goes too). One already gone
/// is not an error.
pub fn signal_process_and_group(pid: libc::pid_t, signal: StopSignal) {
    let (pid, signal) = (Pid::from_raw(pid), signal_of(signal));
    if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
        let _ = killpg(pid, signal);
    } else {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}

/// The name of the variable that marks each job's processes with the
/// job's name (`PMTR_JOB=NAME`), set in every job's environment.
pub const JOB_MARK: &str = "PMTR_JOB";

/// Most bytes of a process's environment read for its mark.
const ENVIRONMENT_READ_BYTES: u64 = 1 << 20;

/// The value of [`JOB_MARK`] in the environment process `pid` started
/// with, if it has one and pmtr may read it.
pub fn job_mark(pid: libc::pid_t) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(format!("/proc/{pid}/environ")).ok()?;
    let mut environment = Vec::new();
    file.take(ENVIRONMENT_READ_BYTES)
        .read_to_end(&mut environment)
        .ok()?;
    let prefix = [JOB_MARK.as_bytes(), b"="].concat();
    environment
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_slice()))
        .map(<[u8]>::to_vec)
}

fn signal_of(signal: StopSignal) -> Signal {
    match signal {
        StopSignal::Term => Signal::SIGTERM,
        StopSignal::Int => Signal::SIGINT,
        StopSignal::Quit => Signal::SIGQUIT,
        StopSignal::Hup => Signal::SIGHUP,
        StopSignal::Usr1 => Signal::SIGUSR1,
        StopSignal::Usr2 => Signal::SIGUSR2,
        StopSignal::Kill => Signal::SIGKILL,
        StopSignal::Winch => Signal::SIGWINCH,
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

/// A descriptor that reads as ready once process `pid` has ended: how
/// pmtr follows a job it adopted but did not start, which is not its child
/// (SPEC 11.8).
pub fn pidfd_open(pid: libc::pid_t) -> Result<std::os::fd::OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new
    // descriptor (close-on-exec) or -1; nothing else is touched.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    match fd {
        -1 => Err(Errno::last()),
        // SAFETY: the kernel just made this descriptor, and only here.
        fd => Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as RawFd) }),
    }
}

/// Sets (`keep` false) or clears (`keep` true) close-on-exec on `fd`: a
/// reexec keeps exactly the descriptors it hands over open.
pub fn keep_across_exec(fd: RawFd, keep: bool) -> Result<(), Errno> {
    // SAFETY: `fd` is one of pmtr's open descriptors, owned elsewhere and
    // alive for this call; fcntl only changes its flags.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = match keep {
        true => FdFlag::empty(),
        false => FdFlag::FD_CLOEXEC,
    };
    fcntl(borrowed, FcntlArg::F_SETFD(flags)).map(|_| ())
}

/// Replaces pmtr with `program` run with `args` (argv[0] included) and
/// pmtr's environment; returns only if that failed.
pub fn exec(program: &std::path::Path, args: &[std::ffi::OsString]) -> Errno {
    use std::os::unix::ffi::OsStrExt;
    let c = |bytes: &[u8]| std::ffi::CString::new(bytes).map_err(|_| Errno::EINVAL);
    let program = match c(program.as_os_str().as_bytes()) {
        Ok(program) => program,
        Err(errno) => return errno,
    };
    let args: Result<Vec<std::ffi::CString>, Errno> =
        args.iter().map(|a| c(a.as_bytes())).collect();
    match args {
        Ok(args) => match nix::unistd::execv(&program, &args) {
            Err(errno) => errno,
            Ok(never) => match never {},
        },
        Err(errno) => errno,
    }
}

/// Takes ownership of descriptor `fd`, which the pmtr before this one
/// kept open across its exec for this one (SPEC 11.8); none if it is not
/// open. Marked close-on-exec again: no job gets it.
pub fn take_handed(fd: RawFd) -> Option<std::os::fd::OwnedFd> {
    if fd <= 2 {
        return None;
    }
    // SAFETY: only borrowed for the flag check; a closed number fails.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    // SAFETY: the descriptor is open and was handed to this process by
    // number; the state that names it is checked to name each number once
    // (daemon/handover.rs), and nothing else in pmtr took it over.
    Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Whether `pid` is pmtr's child, running or ended but not reaped: its
/// pid cannot be another process's meanwhile.
pub fn is_child(pid: libc::pid_t) -> bool {
    use nix::sys::wait::{waitid, Id};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    waitid(Id::Pid(Pid::from_raw(pid)), flags).is_ok()
}
