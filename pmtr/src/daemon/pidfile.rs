//! The pidfile: written at start, locked for pmtr's life so that a second
//! pmtr on the same file refuses to start, removed at exit.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use pmtr_common::reason::{Reason, Text};

pub struct Pidfile {
    path: PathBuf,
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("unable to open pidfile {}: {}", .path.display(), Reason(.source))]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pidfile {} is locked by another pmtr{}", .path.display(), .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("unable to lock pidfile {}: {}", .path.display(), Text(*.errno))]
    Lock { path: PathBuf, errno: Errno },
    #[error("unable to write pidfile {}: {}", .path.display(), Reason(.source))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Pidfile, PidfileError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // A link planted at the pidfile's name (in a directory others
            // can write) is refused, not followed; so is anything but a
            // regular file.
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .and_then(|file| {
                if file.metadata()?.is_file() {
                    Ok(file)
                } else {
                    Err(std::io::Error::other("not a regular file"))
                }
            })
            .map_err(|source| PidfileError::Open {
                path: path.into(),
                source,
            })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(PidfileError::Held {
                    path: path.into(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err((_, errno)) => {
                return Err(PidfileError::Lock {
                    path: path.into(),
                    errno,
                })
            }
        };
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
        };
        write(&mut lock).map_err(|source| PidfileError::Write {
            path: path.into(),
            source,
        })?;
        Ok(Pidfile {
            path: path.into(),
            _lock: lock,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_as_the_pidfile_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let planted = dir.path().join("pmtr.pid");
        std::os::unix::fs::symlink(&precious, &planted).unwrap();
        assert!(matches!(
            Pidfile::create(&planted),
            Err(PidfileError::Open { .. })
        ));
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        let fifo = dir.path().join("fifo.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(Pidfile::create(&fifo).is_err(), "not a regular file");
        let real = dir.path().join("real.pid");
        let held = Pidfile::create(&real).unwrap();
        assert_eq!(
            std::fs::read_to_string(&real).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(held);
        assert!(!real.exists());
    }
}
