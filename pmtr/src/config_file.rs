//! Reading the configuration file from disk and handing it to the pure
//! parser; the one place that turns a path into a `Config` or an error an
//! operator can act on.

use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};

use pmtr_core::config::{self, envfile, Config, Diagnostic, EnvVar, Files, IncludePattern, Source};

use pmtr_common::files::NotOpened;
use pmtr_common::reason::Reason;

/// Larger files are refused before parsing: a real configuration of
/// 100 000 jobs is about 5 MB.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Largest environment file (`env file`) read: a file of settings, not
/// of data.
pub const MAX_ENV_FILE_BYTES: u64 = 1 << 20;

/// Errors shown before the loop runs (a bad config at start, `-t`) and
/// logged by reload.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unable to read {}: {}", .path.display(), Reason(.source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unable to read {}: larger than {max} bytes", .path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("unable to read {}: not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: {} error{} in configuration", .path.display(), .diagnostics.len(), if .diagnostics.len() == 1 { "" } else { "s" })]
    Invalid {
        path: PathBuf,
        sources: Vec<Source>,
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// Why, without the path: for messages that name the file already.
    pub fn reason(&self) -> String {
        match self {
            LoadError::Read { source, .. } => Reason(source).to_string(),
            LoadError::TooLarge { max, .. } => format!("larger than {max} bytes"),
            LoadError::NotAFile { .. } => "not a regular file".to_string(),
            LoadError::Invalid { diagnostics, .. } => format!("{} errors", diagnostics.len()),
        }
    }

    /// Every error of an invalid file rendered with its file, line and
    /// caret, at most `limit` of them; other errors as their one sentence.
    pub fn render(&self, limit: usize) -> String {
        match self {
            LoadError::Invalid {
                sources,
                diagnostics,
                ..
            } => config::render_all(diagnostics, sources, limit),
            other => format!("{other}\n"),
        }
    }
}

/// A configuration read from disk, with every file it includes.
pub struct Reading {
    /// Content hash of every file read, path and bytes: a reload that
    /// reads the same changes nothing.
    pub hash: u64,
    /// What a reload watches besides the main file.
    pub includes: Includes,
    /// The configuration and the files it came from (for `-t` warnings).
    pub result: Result<(Config, Vec<Source>), LoadError>,
}

/// The included files read and the `include` patterns, also when the
/// configuration was refused: fixing a broken included file must reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Includes {
    pub files: Vec<String>,
    pub patterns: Vec<IncludePattern>,
}

/// The file's bytes, read in full. Refuses a file larger than
/// [`MAX_CONFIG_BYTES`] and anything but a regular file: opening does
/// not block on a FIFO, and a device is not read forever.
pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    read_regular(path, MAX_CONFIG_BYTES)
}

/// As [`read`], for a file of at most `max` bytes.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match pmtr_common::files::open_regular(path) {
        Ok((file, _)) => file,
        Err(NotOpened::Io(source)) => return Err(read_error(source)),
        Err(NotOpened::NotRegular) => {
            return Err(LoadError::NotAFile {
                path: path.to_path_buf(),
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > max {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(bytes)
}

/// The variables of the environment file at `path` (`env file`), as a
/// start reads them: a missing `optional` file (`-PATH`) sets none; any
/// other fault, or the file's first errors, is the reason the job cannot
/// start. `pmtr -t` asks the same question.
pub fn read_env_file(path: &str, optional: bool) -> Result<Vec<EnvVar>, String> {
    let bytes = match read_regular(Path::new(path), MAX_ENV_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(LoadError::Read { source, .. })
            if optional && source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(Vec::new())
        }
        Err(error) => return Err(error.reason()),
    };
    envfile::parse(&bytes).map_err(|errors| {
        let shown: Vec<String> = errors.iter().take(3).map(|e| e.to_string()).collect();
        shown.join("; ")
    })
}

/// The real file system, for `include`.
struct DiskFiles;

impl Files for DiskFiles {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        read(Path::new(path)).map_err(|error| error.reason())
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, String> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Reason(&error).to_string()),
        };
        // A name that is not UTF-8 cannot be written in a pattern.
        Ok(entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect())
    }
}

/// Reads and validates the configuration at `path` with its includes.
/// Jobs without `dir` run in the directory pmtr was started in (SPEC 3.1,
/// as the original: in a container, the image's `WORKDIR`).
pub fn load(path: &Path) -> Reading {
    let text = match read(path) {
        Ok(text) => text,
        Err(error) => {
            return Reading {
                hash: content_hash(&[error.to_string().as_bytes()]),
                includes: Includes::default(),
                result: Err(error),
            }
        }
    };
    let loaded = config::load(&path.to_string_lossy(), text, &DiskFiles);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * loaded.sources.len());
    for source in &loaded.sources {
        parts.extend([source.path.as_bytes(), &source.text]);
    }
    let hash = content_hash(&parts);
    let includes = Includes {
        files: loaded
            .sources
            .iter()
            .skip(1)
            .map(|s| s.path.clone())
            .collect(),
        patterns: loaded.patterns,
    };
    let result = match loaded.result {
        Ok(mut config) => {
            config.set_default_dir(start_dir());
            Ok((config, loaded.sources))
        }
        Err(diagnostics) => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            sources: loaded.sources,
            diagnostics,
        }),
    };
    Reading {
        hash,
        includes,
        result,
    }
}

/// A hash of the parts, each with its length so that moving bytes from
/// one part to the next changes it.
pub(crate) fn content_hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for part in parts {
        hasher.write_usize(part.len());
        hasher.write(part);
    }
    hasher.finish()
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
