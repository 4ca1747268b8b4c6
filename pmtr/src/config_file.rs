//! Reading the configuration file from disk and handing it to the pure
//! parser; the one place that turns a path into a `Config` or an error an
//! operator can act on.

use std::io::Read;
use std::path::{Path, PathBuf};

use pmtr_core::config::{self, Config, Diagnostic};

use pmtr_common::reason::Reason;

/// Larger files are refused before parsing: a real configuration of
/// 100 000 jobs is about 5 MB.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Errors shown before the loop runs (a bad config at start, `-t`) and
/// logged by reload.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unable to read {}: {}", .path.display(), Reason(.source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unable to read {}: larger than {MAX_CONFIG_BYTES} bytes", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {} error{} in configuration", .path.display(), .diagnostics.len(), if .diagnostics.len() == 1 { "" } else { "s" })]
    Invalid {
        path: PathBuf,
        source_text: Vec<u8>,
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// Every error of an invalid file rendered with its line and caret, at
    /// most `limit` of them; other errors as their one sentence.
    pub fn render(&self, limit: usize) -> String {
        match self {
            LoadError::Invalid {
                path,
                source_text,
                diagnostics,
            } => config::render_all(diagnostics, &path.to_string_lossy(), source_text, limit),
            other => format!("{other}\n"),
        }
    }
}

/// The file's bytes, read in full, refusing a file larger than
/// [`MAX_CONFIG_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// Validates the file's bytes into a configuration whose jobs without
/// `dir` run in the directory pmtr was started in (SPEC 3.1, as the
/// original: in a container, the image's `WORKDIR`).
pub fn parse(bytes: &[u8]) -> Result<Config, Vec<Diagnostic>> {
    let mut config = config::parse(bytes)?;
    config.set_default_dir(start_dir());
    Ok(config)
}

/// The directory pmtr was started in. pmtr never changes directory, so
/// the first look is the answer for its whole life (kept, in case the
/// directory is removed later); `/` if it cannot be named.
pub fn start_dir() -> &'static str {
    static START_DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    START_DIR.get_or_init(|| {
        std::env::current_dir()
            .ok()
            .and_then(|dir| dir.to_str().map(str::to_string))
            .unwrap_or_else(|| "/".to_string())
    })
}

/// Reads and validates the file; returns the text too, for diagnostics.
pub fn load(path: &Path) -> Result<(Vec<u8>, Config), LoadError> {
    let bytes = read(path)?;
    match parse(&bytes) {
        Ok(config) => Ok((bytes, config)),
        Err(diagnostics) => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            source_text: bytes,
            diagnostics,
        }),
    }
}
