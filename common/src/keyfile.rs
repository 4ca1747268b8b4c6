//! The `udp key` file as pmtr and pmtr-ctl read it — refused when group or
//! others may read it — and the clock and nonces that signing takes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pmtr_core::proto::auth::Key;

use crate::reason::Reason;

/// Reads a key file once. The reason says why it is refused.
pub fn load(path: &Path) -> Result<Key, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {}", Reason(&e)))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err("is readable by group or others (chmod 600)".into());
    }
    let content = std::fs::read(path).map_err(|e| format!("cannot be read: {}", Reason(&e)))?;
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
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }
}
