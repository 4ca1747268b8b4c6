//! Signals as events: the signals pmtr acts on are blocked and read from a
//! signalfd on the event loop; none has a handler.

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals pmtr reads: a child's end, shutdown, and reload.
pub const HANDLED: [Signal; 5] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
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

/// Undoes `take_signals` for a process that is about to become something
/// else (the daemonizing parent does not need it).
pub fn restore_mask() -> Result<(), Errno> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}
