//! The `udp key` file as pmtr and pmtr-ctl read it — refused when group or
//! others may read it — and the clock and nonces that signing takes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pmtr_core::proto::auth::Key;

use crate::files::NotOpened;
use crate::reason::Reason;

/// Largest key file read: a key is a line of text.
const MAX_KEY_BYTES: u64 = 4096;

/// Reads a key file once. The reason says why it is refused: not a
/// regular file, readable by group or others, owned by someone other than
/// the reader or root (who could change it), or not a usable key. The
/// checks are made on the descriptor that is read, so the file cannot be
/// swapped between the check and the read.
pub fn load(path: &Path) -> Result<Key, String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let unreadable = |e: std::io::Error| format!("cannot be read: {}", Reason(&e));
    let (file, meta) = match crate::files::open_regular(path) {
        Ok(opened) => opened,
        Err(NotOpened::Io(error)) => return Err(unreadable(error)),
        Err(NotOpened::NotRegular) => return Err("is not a regular file".into()),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err("is readable by group or others (chmod 600)".into());
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "is owned by uid {}, neither root nor this user (chown it)",
            meta.uid()
        ));
    }
    let mut content = Vec::new();
    file.take(MAX_KEY_BYTES)
        .read_to_end(&mut content)
        .map_err(unreadable)?;
    Key::new(&content).map_err(|e| e.to_string())
}

/// Wall-clock time in Unix seconds: signatures carry it, and control
/// datagrams must be within 30 s of it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 64 random bits for a signature's nonce.
pub fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: the time still makes it unique here.
        return SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "a secret of enough length\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&path)
            .unwrap_err()
            .contains("readable by group or others"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&path).is_ok());
        std::fs::write(&path, "short").unwrap();
        assert!(load(&path).unwrap_err().contains("shorter than 16 bytes"));
    }

    #[test]
    fn a_key_file_that_is_not_a_regular_file_is_refused() {
        assert!(load(Path::new("/dev/zero"))
            .unwrap_err()
            .contains("not a regular file"));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(load(&fifo).unwrap_err().contains("not a regular file"));
    }

    #[test]
    fn a_key_file_owned_by_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP a_key_file_owned_by_another_user_is_refused: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "a secret of enough length\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        assert!(load(&path).unwrap_err().contains("owned by uid 65534"));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }
}
