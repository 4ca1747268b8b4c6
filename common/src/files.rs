//! Files in places others may write. Read: opened without blocking and
//! taken only if regular (a FIFO swapped in does not hold the reader, a
//! device is not read forever) — configuration, dependencies, the key.
//! Written: replaced whole through a temporary that is always created new
//! (a planted link is not followed) — pmtr's metrics, the collector's
//! status file.

use std::io::Write;
use std::path::Path;

/// Why [`open_regular`] gives no file.
#[derive(Debug)]
pub enum NotOpened {
    /// It could not be opened or examined.
    Io(std::io::Error),
    /// It is not a regular file (a FIFO, a device, a directory).
    NotRegular,
}

/// Opens `path` for reading, without blocking (`O_NONBLOCK`, `O_NOCTTY`),
/// if it is a regular file: its descriptor and what it is, examined on
/// that descriptor (no swap between the look and the read).
pub fn open_regular(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), NotOpened> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(NotOpened::Io)?;
    let metadata = file.metadata().map_err(NotOpened::Io)?;
    if !metadata.is_file() {
        return Err(NotOpened::NotRegular);
    }
    Ok((file, metadata))
}

/// Replaces `path` with `bytes` through `temporary` (in the same
/// directory). The temporary is created new, mode 0644 (`O_EXCL`: a link
/// planted at its name is not followed); one left by a crash, or planted,
/// is removed first (removing a link removes the link). On failure the
/// temporary is removed and `path` is left as it was.
pub fn replace(path: &Path, temporary: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let written = create_new(temporary)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(temporary);
    }
    written
}

fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
    };
    match open() {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let path = dir.path().join("status.txt");
        let temporary = dir.path().join(".status.txt.tmp");
        std::os::unix::fs::symlink(&precious, &temporary).unwrap();
        replace(&path, &temporary, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert!(!temporary.exists());
    }

    #[test]
    fn a_failed_replace_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let temporary = dir.path().join(".x.tmp");
        // Renaming over a directory that is not empty fails.
        let path = dir.path().join("full");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "").unwrap();
        assert!(replace(&path, &temporary, b"x").is_err());
        assert!(!temporary.exists());
    }
}
