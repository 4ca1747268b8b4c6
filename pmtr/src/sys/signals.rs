//! Signals as events: the signals pmtr acts on are blocked and read from a
//! signalfd on the event loop; none has a handler.

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals pmtr reads: a child's end, shutdown, reload, and reopening
/// the output files it writes (SIGUSR1, logrotate's `postrotate`).
pub const HANDLED: [Signal; 6] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
];

/// Blocks the handled signals and returns the descriptor they arrive on.
/// Also ignores SIGPIPE: a write to a closed socket or pipe must be an
/// error return, not pmtr's death. (Jobs get SIGPIPE's default back.)
pub fn take_signals() -> Result<SignalFd, Errno> {
    let mut mask = SigSet::empty();
    for signal in HANDLED {
        mask.add(signal);
    }
    mask.thread_block()?;
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no code of ours in a signal context.
    unsafe { sigaction(Signal::SIGPIPE, &ignore) }?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Highest signal number on Linux (`_NSIG - 1`).
const MAX_SIGNAL: libc::c_int = 64;

/// The kernel's `struct sigaction`, as raw storage: all zeroes is SIG_DFL
/// with no flags and an empty mask on every architecture.
type RawSigaction = [u64; 8];

/// Size of the kernel's signal set, as `rt_sigaction` wants it.
const KERNEL_SIGSET_SIZE: usize = 8;

/// The signals this process ignores. An ignored signal stays ignored
/// across `execve`, so each job's child resets exactly these. Asked of the
/// kernel directly: glibc refuses its own internal signals (32, 33), which
/// a parent of pmtr may still have ignored.
pub fn ignored_signals() -> Vec<libc::c_int> {
    (1..=MAX_SIGNAL)
        .filter(|&signal| {
            let mut old: RawSigaction = [0; 8];
            // SAFETY: a query (no new action); `old` is large enough for
            // the kernel's struct sigaction.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    std::ptr::null::<RawSigaction>(),
                    &mut old,
                    KERNEL_SIGSET_SIZE,
                )
            };
            // The handler is the struct's first field.
            result == 0 && old[0] == libc::SIG_IGN as u64
        })
        .collect()
}

/// Sets `signal` back to its default action. Async-signal-safe: for use in
/// a job's child before `execve`.
pub fn reset_to_default(signal: libc::c_int) {
    let default: RawSigaction = [0; 8];
    // SAFETY: an all-zero kernel sigaction is SIG_DFL; the syscall reads
    // only `default`.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            &default,
            std::ptr::null_mut::<RawSigaction>(),
            KERNEL_SIGSET_SIZE,
        )
    };
}

/// Lets the kernel reap this process's children (SA_NOCLDWAIT): for a
/// process that never waits for them, such as `onconnect`.
pub fn reap_children_automatically() -> Result<(), Errno> {
    let reap = SigAction::new(SigHandler::SigDfl, SaFlags::SA_NOCLDWAIT, SigSet::empty());
    // SAFETY: SIG_DFL runs no code of ours in a signal context.
    unsafe { sigaction(Signal::SIGCHLD, &reap) }.map(|_| ())
}
