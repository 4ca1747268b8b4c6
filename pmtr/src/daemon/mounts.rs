//! Which paths lie on a filesystem that can stop a process touching it
//! for as long as a server is away — network and user-space filesystems —
//! read from /proc/self/mountinfo. A start whose directory, program or
//! files are on one is made with `fork`, so that only the job waits, not
//! pmtr (sys/spawn.rs).

use std::ffi::CStr;

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

/// The mount table, reduced to what a start needs: each mount point and
/// whether its filesystem is remote.
#[derive(Debug, Default)]
pub struct Mounts {
    points: Vec<(String, bool)>,
}

impl Mounts {
    /// The mount table of this process now, with the types named in
    /// [`EXTRA_TYPES_VARIABLE`]; empty if unreadable (every path is then
    /// taken as local).
    pub fn read() -> Mounts {
        let extra: Vec<String> = std::env::var(EXTRA_TYPES_VARIABLE)
            .map(|types| types.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => Mounts::parse(&text, &extra),
            Err(_) => Mounts::default(),
        }
    }

    /// Parses mountinfo (proc(5)): the mount point is the fifth field, the
    /// filesystem type the first after the ` - ` separator.
    pub fn parse(mountinfo: &str, extra_types: &[String]) -> Mounts {
        let points = mountinfo
            .lines()
            .filter_map(|line| {
                let (mount, filesystem) = line.split_once(" - ")?;
                let point = unescape(mount.split(' ').nth(4)?);
                let fstype = filesystem.split(' ').next()?;
                let remote = REMOTE_TYPES.contains(&fstype)
                    || fstype.starts_with("fuse.")
                    || extra_types.iter().any(|extra| extra == fstype);
                Some((point, remote))
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
}
