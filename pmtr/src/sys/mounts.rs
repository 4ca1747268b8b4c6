//! Which paths lie on a filesystem that can stop a process touching it
//! for as long as a server is away — network and user-space filesystems —
//! read from /proc/self/mountinfo. A start whose directory, program or
//! files are on one is made with `fork`, so that only the job waits, not
//! pmtr (sys/spawn.rs). Before starts, one `poll` asks the kernel whether
//! the table changed (`POLLPRI` on the open file); it is read again only
//! then. It is not watched: on a container host mounts come and go all
//! day, and an idle pmtr must not wake for them.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Filesystem types a start stays away from, besides every `fuse.*`.
const REMOTE_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "ceph",
    "glusterfs",
    "lustre",
    "afs",
    "9p",
    "virtiofs",
    "fuse",
    "fuseblk",
];

/// More filesystem types to treat so, comma-separated: for a local
/// filesystem known to hang (and for the tests, which have no network
/// filesystem to mount).
pub const EXTRA_TYPES_VARIABLE: &str = "PMTR_REMOTE_FSTYPES";

/// This process's mount table: the open mountinfo file and what it said
/// when last read.
#[derive(Debug)]
pub struct MountTable {
    /// None where /proc is not mounted: every path is then taken as local.
    file: Option<File>,
    /// The types named in [`EXTRA_TYPES_VARIABLE`], read once at start.
    extra_types: Vec<String>,
    mounts: Mounts,
}

impl MountTable {
    /// Opens and reads the mount table.
    pub fn open() -> MountTable {
        let extra_types = std::env::var(EXTRA_TYPES_VARIABLE)
            .map(|types| types.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let mut table = MountTable {
            file: File::open("/proc/self/mountinfo").ok(),
            extra_types,
            mounts: Mounts::default(),
        };
        table.refresh();
        table
    }

    /// Reads the table again if it changed since it was last asked:
    /// mountinfo reports `POLLPRI` once after each change.
    pub fn refresh_if_changed(&mut self) {
        if self.changed() {
            self.refresh();
        }
    }

    fn changed(&self) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
        let polled = nix::poll::poll(&mut fds, PollTimeout::ZERO);
        polled.is_ok_and(|ready| ready > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR))
    }

    /// Reads the table again; unreadable, it is kept as it was.
    fn refresh(&mut self) {
        let Some(file) = &mut self.file else {
            return;
        };
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            self.mounts = Mounts::parse(&text, &self.extra_types);
        }
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }
}

/// Each mount of mountinfo (proc(5)): its mount point (the fifth field,
/// unescaped) and its filesystem type (the first field after ` - `).
fn entries(mountinfo: &str) -> impl Iterator<Item = (String, &str)> {
    mountinfo.lines().filter_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        let point = unescape(mount.split(' ').nth(4)?);
        Some((point, filesystem.split(' ').next()?))
    })
}

/// The mount point of the first mount of type `fstype` in this process's
/// mount table (`cgroup2`: where the cgroup v2 hierarchy is).
pub fn first_of_type(fstype: &str) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let found = entries(&mountinfo).find_map(|(point, kind)| (kind == fstype).then_some(point));
    found
}

/// The mount table, reduced to what a start needs: each mount point and
/// whether its filesystem is remote.
#[derive(Debug, Default)]
pub struct Mounts {
    points: Vec<(String, bool)>,
}

impl Mounts {
    /// Parses mountinfo (proc(5)): the mount point is the fifth field, the
    /// filesystem type the first after the ` - ` separator.
    pub fn parse(mountinfo: &str, extra_types: &[String]) -> Mounts {
        let points = entries(mountinfo)
            .map(|(point, fstype)| {
                let remote = REMOTE_TYPES.contains(&fstype)
                    || fstype.starts_with("fuse.")
                    || extra_types.iter().any(|extra| extra == fstype);
                (point, remote)
            })
            .collect();
        Mounts { points }
    }

    /// True if any mount is remote: else no path needs looking at.
    pub fn any_remote(&self) -> bool {
        self.points.iter().any(|&(_, remote)| remote)
    }

    /// True if `path` (absolute) is on a remote filesystem: the innermost
    /// mount point above it decides. A relative path is taken under `dir`.
    pub fn is_remote(&self, path: &CStr, dir: &CStr) -> bool {
        let (Ok(path), Ok(dir)) = (path.to_str(), dir.to_str()) else {
            return false;
        };
        let joined;
        let path = if path.starts_with('/') {
            path
        } else {
            joined = format!("{dir}/{path}");
            &joined
        };
        self.points
            .iter()
            .filter(|(point, _)| under(path, point))
            .max_by_key(|(point, _)| point.len())
            .is_some_and(|&(_, remote)| remote)
    }
}

/// True if `path` is `point` or below it.
fn under(path: &str, point: &str) -> bool {
    match path.strip_prefix(point) {
        Some(rest) => point.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /srv/share rw shared:9 - nfs4 server:/export rw,vers=4.2
31 30 0:41 / /srv/share/scratch rw shared:10 - tmpfs tmpfs rw
32 22 0:42 / /home/ann/remote rw shared:11 - fuse.sshfs ann@box: rw
33 22 0:43 / /mnt/with\\040space rw shared:12 - cifs //box/s rw
";

    fn c(text: &str) -> std::ffi::CString {
        std::ffi::CString::new(text).unwrap()
    }

    #[test]
    fn the_innermost_mount_decides() {
        let mounts = Mounts::parse(TABLE, &[]);
        assert!(mounts.any_remote());
        let root = c("/");
        for (path, remote) in [
            ("/usr/bin/env", false),
            ("/srv/share", true),
            ("/srv/share/app/run", true),
            ("/srv/shared/x", false),
            ("/srv/share/scratch/x", false),
            ("/home/ann/remote/bin/job", true),
            ("/mnt/with space/x", true),
        ] {
            assert_eq!(mounts.is_remote(&c(path), &root), remote, "{path}");
        }
    }

    #[test]
    fn a_relative_program_is_under_its_dir() {
        let mounts = Mounts::parse(TABLE, &[]);
        assert!(mounts.is_remote(&c("bin/job"), &c("/srv/share/app")));
        assert!(!mounts.is_remote(&c("bin/job"), &c("/opt/app")));
    }

    #[test]
    fn more_types_can_be_named() {
        let local = Mounts::parse(TABLE, &[]);
        assert!(!local.is_remote(&c("/srv/share/scratch/x"), &c("/")));
        let named = Mounts::parse(TABLE, &["tmpfs".to_string()]);
        assert!(named.is_remote(&c("/srv/share/scratch/x"), &c("/")));
        assert!(!Mounts::parse("22 1 254:0 / / rw - ext4 /dev/vda rw\n", &[]).any_remote());
    }

    /// A mount made after the table was read is seen at the next
    /// `refresh_if_changed`, and only a change makes it read (needs
    /// `mount`: root).
    #[test]
    fn a_new_mount_is_read_at_the_next_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = MountTable::open();
        table.extra_types = vec!["tmpfs".to_string()];
        assert!(!table.changed(), "a change before any");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "pmtr-test", dir.path().to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            println!("SKIP a_new_mount_is_read_at_the_next_refresh: cannot mount a tmpfs here (not root?)");
            return;
        }
        let path = c(&format!("{}/x", dir.path().display()));
        let before = table.mounts().is_remote(&path, &c("/"));
        table.refresh_if_changed();
        let after = table.mounts().is_remote(&path, &c("/"));
        let _ = std::process::Command::new("umount")
            .arg(dir.path())
            .status();
        assert!(!before && after, "the new mount was not read");
    }
}
