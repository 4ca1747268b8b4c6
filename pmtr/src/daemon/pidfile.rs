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
            .open(path)
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
