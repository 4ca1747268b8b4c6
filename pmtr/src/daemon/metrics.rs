//! The `metrics to FILE` file: rewritten atomically (a temporary file
//! renamed over it) when its text changes, never on a timer. The
//! temporary file is always a new one: a link planted at its name, in a
//! directory others can write, is never written through.

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
        match pmtr_common::files::replace(&self.path, &temporary, text.as_bytes()) {
            Ok(()) => {
                self.written = Some(text);
                Ok(())
            }
            Err(error) => Err(format!(
                "unable to write metrics to {}: {}",
                self.path.display(),
                Reason(&error)
            )),
        }
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
        let path = dir.path().join("pmtr.prom");
        let planted = dir
            .path()
            .join(format!(".pmtr.prom.pmtr-{}", std::process::id()));
        std::os::unix::fs::symlink(&precious, &planted).unwrap();
        let mut file = MetricsFile::new(&path);
        file.update("pmtr_up 1\n".into()).unwrap();
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "pmtr_up 1\n");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }
}
