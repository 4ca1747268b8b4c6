//! `pmtr -t`: checks a configuration file and says so — every error with
//! its line and caret, then warnings about what would fail at run time.

use std::io::Write;
use std::path::Path;

use pmtr_core::config::render_all;

use super::preflight;
use crate::config_file;

/// Most diagnostics printed for one file; a binary file would print
/// thousands.
const SHOWN: usize = 100;

/// Runs the check, printing to `out` (the verdict) and `err` (the
/// diagnostics); `cgroup` is what `--cgroup` says. Returns true when the file is valid.
pub fn run(path: &Path, cgroup: &str, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let shown_path = path.to_string_lossy();
    match config_file::load(path).result {
        Err(error) => {
            if let config_file::LoadError::Invalid { .. } = error {
                let _ = write!(err, "{}", error.render(SHOWN));
            }
            let _ = writeln!(err, "pmtr: {error}");
            false
        }
        Ok((config, sources)) => {
            let warnings = preflight::warnings(&config, cgroup);
            let _ = write!(err, "{}", render_all(&warnings, &sources, SHOWN));
            let _ = writeln!(
                out,
                "pmtr: {shown_path}: configuration ok: {} job{}{}",
                config.jobs.len(),
                if config.jobs.len() == 1 { "" } else { "s" },
                match warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                }
            );
            true
        }
    }
}
