//! The test harness: a sandbox directory per test, the real binaries, and
//! waiting for conditions with a deadline instead of sleeping.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PMTR: &str = env!("CARGO_BIN_EXE_pmtr");

/// A directory of the test's own, removed when the test ends.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("pmtr-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `relative` and returns its full path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// `pmtr` with these arguments, run in the sandbox.
    pub fn pmtr(&self, args: &[&str]) -> Output {
        Command::new(PMTR)
            .args(args)
            .current_dir(self.root())
            .output()
            .expect("run pmtr")
    }
}

/// Polls `condition` until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
