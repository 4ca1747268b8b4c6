//! The parent side of a job's start: starts the child — `clone` as
//! `posix_spawn` does, learning at once whether it exec'd, or `fork` where
//! the start may hang — and keeps pmtr's long-lived descriptors out of the
//! way of the child's copy.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use pmtr_core::supervise::event::SetupStep;

use super::child::{self, Report, Reporter};
use super::plan::ExecPlan;

/// Which thread makes a start, each with a child stack of its own: the
/// loop's, and the helper that makes half of a batch of starts beside it
/// (spawner.rs). No two children made at once share a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Starter {
    Loop = 0,
    Helper = 1,
}

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
pub fn spawn(plan: &ExecPlan<'_>, starter: Starter) -> Result<Spawned, Errno> {
    let stack = child_stack(starter)?;
    let start = ChildStart {
        plan: (plan as *const ExecPlan<'_>).cast(),
        report: Report::default(),
    };
    // SAFETY: `child_main` runs on its own stack (`stack` is the top of a
    // private mapping only `starter`'s thread uses, and CLONE_VFORK keeps
    // that thread suspended until the child has exec'd or exited, so no
    // two children share it; pmtr's other threads — the loop or the other
    // starter, name lookups, usage — never touch this stack, this plan or
    // `start`). It reads `start` and the plan, which outlive this
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
pub const KEPT_DESCRIPTORS_FROM: RawFd = 256;

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

/// Grows pmtr's descriptor table to hold descriptors up to number
/// `count`, as far as the limit on open files allows, by duplicating `any`
/// there and closing the copy: the table never shrinks. Grown while the
/// second starting thread shares it, the table waits for an RCU grace
/// period (`expand_fdtable`) — 10 to 20 ms of the loop's thread here, at
/// each doubling; grown ahead of a round of starts, it doubles once.
pub fn reserve_descriptors(any: BorrowedFd<'_>, count: usize) {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0, |(soft, _)| soft);
    let highest = (count as u64).min(limit.saturating_sub(1));
    let Ok(highest) = RawFd::try_from(highest) else {
        return;
    };
    if let Ok(copy) = nix::fcntl::fcntl(any, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(highest)) {
        // SAFETY: a descriptor F_DUPFD_CLOEXEC just made, owned by no one
        // else; dropping it closes it.
        drop(unsafe { OwnedFd::from_raw_fd(copy) });
    }
}

/// `CLONE_INTO_CGROUP`, as `clone3` takes it (libc's constant is an `int`,
/// which it does not fit).
#[cfg(target_arch = "x86_64")]
const CLONE_INTO_CGROUP_FLAG: u64 = 0x2_0000_0000;

/// Whether `clone3` can make a child in its cgroup (`CLONE_INTO_CGROUP`,
/// Linux 5.7, here x86-64 only): true until the kernel says it cannot.
static CLONE_INTO_CGROUP: AtomicBool = AtomicBool::new(cfg!(target_arch = "x86_64"));

/// Starts a child that runs `plan`, as [`spawn`] does, made in the cgroup
/// `plan.cgroup_dir` names (`clone3` with `CLONE_INTO_CGROUP`): it is in
/// its cgroup from its first instruction, and moving a process between
/// cgroups — a write to `cgroup.procs`, which takes a lock every fork in
/// the system waits on — is never needed. `Err(ENOSYS)` where the kernel
/// cannot: the caller falls back to the child's own move.
pub fn spawn_in_cgroup(plan: &ExecPlan<'_>, starter: Starter) -> Result<Spawned, Errno> {
    if plan.cgroup_dir < 0 || !CLONE_INTO_CGROUP.load(Ordering::Relaxed) {
        return Err(Errno::ENOSYS);
    }
    let pid = clone3_in_cgroup(plan, starter)?;
    match pid {
        Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) => {
            CLONE_INTO_CGROUP.store(false, Ordering::Relaxed);
            Err(Errno::ENOSYS)
        }
        other => other,
    }
}

#[cfg(target_arch = "x86_64")]
fn clone3_in_cgroup(
    plan: &ExecPlan<'_>,
    starter: Starter,
) -> Result<Result<Spawned, Errno>, Errno> {
    let top = child_stack(starter)?;
    let start = ChildStart {
        plan: (plan as *const ExecPlan<'_>).cast(),
        report: Report::default(),
    };
    // SAFETY: a plain C struct of integers, all zero until set below.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags =
        (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES) as u64 | CLONE_INTO_CGROUP_FLAG;
    args.exit_signal = libc::SIGCHLD as u64;
    args.stack = (top as u64) - CHILD_STACK_BYTES as u64;
    args.stack_size = CHILD_STACK_BYTES as u64;
    args.cgroup = plan.cgroup_dir as u64;
    let entry: extern "C" fn(*mut libc::c_void) -> libc::c_int = child_main;
    let result: i64;
    // SAFETY: as in `spawn`, with `clone3` made directly: its wrapper in
    // libc is not exported. The kernel starts the child on the stack the
    // arguments give (its top, 16-byte aligned as the ABI wants at a call),
    // with the parent's registers: r12 holds the start and r13 the entry,
    // which the child calls and which never returns (it ends in execve or
    // _exit); `ud2` stops it if it ever did. The stack is `starter`'s
    // thread's alone, and CLONE_VFORK suspends that thread until the child
    // has exec'd or exited, so the stack and `start` are the child's alone
    // meanwhile (other threads never touch them). The parent gets the pid or
    // -errno in rax; the syscall clobbers rcx and r11. Memory is not
    // declared untouched: the child writes `start.report`.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => result,
            in("rdi") &mut args as *mut libc::clone_args,
            in("rsi") std::mem::size_of::<libc::clone_args>(),
            in("r12") (&start as *const ChildStart).cast_mut(),
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if result < 0 {
        return Ok(Err(Errno::from_raw(-result as i32)));
    }
    Ok(Ok(Spawned {
        pid: result as libc::pid_t,
        setup: Setup::Done(start.report.into_failure()),
    }))
}

#[cfg(not(target_arch = "x86_64"))]
fn clone3_in_cgroup(
    _plan: &ExecPlan<'_>,
    _starter: Starter,
) -> Result<Result<Spawned, Errno>, Errno> {
    Ok(Err(Errno::ENOSYS))
}

/// `cgroup.procs` of the cgroup directory `dir`, for writing.
pub fn open_procs(dir: std::os::fd::RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: `dir` is the open cgroup directory of the start under way,
    // borrowed for this call only.
    let dir = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir) };
    nix::fcntl::openat(
        dir,
        "cgroup.procs",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
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

/// The top of the stack the children `starter` makes start on, mapped
/// once with a guard page below it.
fn child_stack(starter: Starter) -> Result<*mut libc::c_void, Errno> {
    static STACK_TOPS: [std::sync::OnceLock<usize>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let stack_top = &STACK_TOPS[starter as usize];
    if let Some(&top) = stack_top.get() {
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
    Ok(*stack_top.get_or_init(|| top) as *mut libc::c_void)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// The size of this process's descriptor table (`FDSize`).
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn reserving_descriptors_grows_the_table_at_once() {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let wanted = 3000.min(soft.saturating_sub(1) as usize);
        let (read, _write) = pipe2(OFlag::O_CLOEXEC).unwrap();
        reserve_descriptors(read.as_fd(), wanted);
        assert!(
            table_size() > wanted,
            "FDSize {} for {wanted}",
            table_size()
        );
    }
}
