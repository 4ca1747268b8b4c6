//! The `metrics to FILE` file: rewritten atomically (a temporary file
//! renamed over it) when its text changes, never on a timer.

use std::io::Write;
use std::path::{Path, PathBuf};

use pmtr_common::reason::Reason;

pub struct MetricsFile {
    path: PathBuf,
    written: Option<String>,
}

impl MetricsFile {
    pub fn new(path: &Path) -> MetricsFile {
        MetricsFile {
            path: path.to_path_buf(),
            written: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` unless it is what the file already holds. Errors are
    /// returned for the log and retried with the next change.
    pub fn update(&mut self, text: String) -> Result<(), String> {
        if self.written.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = self
            .path
            .with_file_name(format!(".{name}.pmtr-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(text.as_bytes())?;
            std::fs::rename(&temporary, &self.path)
        };
        match write() {
            Ok(()) => {
                self.written = Some(text);
                Ok(())
            }
            Err(error) => {
                let _ = std::fs::remove_file(&temporary);
                Err(format!(
                    "unable to write metrics to {}: {}",
                    self.path.display(),
                    Reason(&error)
                ))
            }
        }
    }
}
