//! Entering a job's cgroup for a start: made the first time, opened, on
//! the thread that makes the start — the loop's or the starter, beside
//! it (daemon/spawner.rs) — so it touches nothing on the heap.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use pmtr_core::resources;

/// A job's cgroup, for the thread that makes the job's start to enter.
pub struct ToEnter {
    /// The subtree's directory, open: the job's cgroup is `name` in it
    /// (no path to walk from the root at each start).
    pub base: Arc<OwnedFd>,
    pub name: CString,
    /// Not made yet: the thread makes it.
    pub make: bool,
}

/// What entering a job's cgroup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entered {
    /// Made now.
    Made,
    /// Made before (by a pmtr before this one): the OOM kills it counted.
    Found { oom_kills: u64 },
    /// Known made; opened.
    Opened,
    /// Not made or not opened: the job runs in its process group only.
    Failed { what: &'static str, errno: Errno },
}

impl ToEnter {
    /// Makes the cgroup if it is to be made, and opens it for the child
    /// to be made in. Runs on the thread that makes the start, beside the
    /// other: makes and frees nothing on the heap (a thread's first
    /// `malloc` or `free` gives it an arena of its own).
    pub fn enter(&self) -> (Option<OwnedFd>, Entered) {
        // Made now: `Some(true)`; found made: `Some(false)`.
        let mut made_now = None;
        if self.make {
            match make(self.base.as_fd(), &self.name) {
                Ok(now) => made_now = Some(now),
                Err(errno) => {
                    let what = "create";
                    return (None, Entered::Failed { what, errno });
                }
            }
        }
        let dir = match open_dir(self.base.as_fd(), self.name.as_c_str()) {
            Ok(dir) => dir,
            Err(errno) => {
                return (
                    None,
                    Entered::Failed {
                        what: "open",
                        errno,
                    },
                )
            }
        };
        let entered = match made_now {
            None => Entered::Opened,
            Some(true) => Entered::Made,
            Some(false) => Entered::Found {
                oom_kills: oom_kills_at(&dir),
            },
        };
        (Some(dir), entered)
    }
}

/// Makes the cgroup directory `name` in `base`: true if made now, false
/// if it was there.
pub(super) fn make(base: BorrowedFd<'_>, name: &CStr) -> Result<bool, Errno> {
    match nix::sys::stat::mkdirat(base, name, Mode::from_bits_truncate(0o777)) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(errno) => Err(errno),
    }
}

pub(super) fn open_dir<P: nix::NixPath + ?Sized>(
    base: BorrowedFd<'_>,
    dir: &P,
) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::openat(base, dir, flags, Mode::empty())
}

/// The OOM kills the `memory.events` of the open cgroup `dir` counts; 0
/// without one. Read into the stack: see `ToEnter::enter`.
fn oom_kills_at(dir: &OwnedFd) -> u64 {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let Ok(events) = nix::fcntl::openat(dir, c"memory.events", flags, Mode::empty()) else {
        return 0;
    };
    let mut text = [0u8; 512];
    let read = nix::unistd::read(&events, &mut text).unwrap_or(0);
    std::str::from_utf8(&text[..read])
        .ok()
        .and_then(resources::oom_kills)
        .unwrap_or(0)
}

/// [`oom_kills_at`] the cgroup `dir`, on the loop.
pub(super) fn oom_kills_in(dir: &Path) -> u64 {
    open_dir(AT_FDCWD, dir).map_or(0, |dir| oom_kills_at(&dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn to_enter(base: &Path, name: &str, make: bool) -> ToEnter {
        ToEnter {
            base: Arc::new(open_dir(AT_FDCWD, base).unwrap()),
            name: CString::new(name).unwrap(),
            make,
        }
    }

    /// What the starting thread does, against a plain directory: make,
    /// find made (with the OOM kills counted before, which are not news),
    /// open, and fail either step.
    #[test]
    fn entering_makes_finds_or_opens_the_cgroup() {
        let base = tempfile::tempdir().unwrap();
        let base = base.path();
        let (fd, entered) = to_enter(base, "job.web", true).enter();
        assert_eq!(entered, Entered::Made);
        assert!(fd.is_some() && base.join("job.web").is_dir());

        let events = "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n";
        fs::write(base.join("job.web/memory.events"), events).unwrap();
        let (fd, entered) = to_enter(base, "job.web", true).enter();
        assert_eq!(entered, Entered::Found { oom_kills: 2 });
        assert!(fd.is_some());

        let (fd, entered) = to_enter(base, "job.web", false).enter();
        assert_eq!((fd.is_some(), entered), (true, Entered::Opened));

        let gone = "no-such-dir/job.web";
        let (fd, entered) = to_enter(base, gone, true).enter();
        let failed = Entered::Failed {
            what: "create",
            errno: Errno::ENOENT,
        };
        assert_eq!((fd.is_none(), entered), (true, failed));
        let (_, entered) = to_enter(base, gone, false).enter();
        let failed = Entered::Failed {
            what: "open",
            errno: Errno::ENOENT,
        };
        assert_eq!(entered, failed);
    }
}
