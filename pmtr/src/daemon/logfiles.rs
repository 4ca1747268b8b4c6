//! The output files pmtr writes for jobs with `log rotate` or `log
//! timestamps` (SPEC 11.6): opened without following a symlink, created
//! 0640 and owned by the job's user, rotated by renames in their
//! directory before they would grow past their size, reopened on SIGUSR1.
//! A write that fails (a full disk) drops the line, counted and logged at
//! most once a minute: the job's pipe is drained whatever happens.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pmtr_common::reason::Reason;
use pmtr_core::config::{LogFiles as Options, Rotate};

use crate::sys::spawn::keep_high;

/// Drops are logged at most this often per file.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Gathered output is written out at least at this size.
const FLUSH_AT: usize = 128 * 1024;
/// A file that could not be opened is tried again at most this often.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Every file pmtr writes for jobs, by resolved path.
#[derive(Default)]
pub struct LogFiles {
    files: HashMap<String, LogFile>,
    stamp: Stamp,
    /// What went wrong since the last call of `take_warnings`.
    warnings: Vec<String>,
}

/// Who owns a file pmtr creates: the job's user (uid, gid); `None`:
/// pmtr's own.
pub type Owner = Option<(u32, u32)>;

struct LogFile {
    options: Options,
    owner: Owner,
    file: Option<File>,
    size: u64,
    /// Captures writing here: the file is closed when the last ends.
    users: usize,
    dropped: u64,
    /// When the last warning was logged, and the drops it told of.
    warned: Option<(Instant, u64)>,
    /// When opening last failed.
    failed_open: Option<Instant>,
    /// The last piece written did not end its line.
    mid_line: bool,
    /// Lines gathered by `write`, not written out yet, and their count.
    pending: Vec<u8>,
    pending_lines: u64,
}

impl LogFiles {
    /// One more capture writes to `path`; its job's options and owner rule.
    pub fn acquire(&mut self, path: &str, options: Options, owner: Owner) {
        let warnings = &mut self.warnings;
        let file = self.files.entry(path.to_string()).or_insert_with(|| {
            let mut file = LogFile {
                options,
                owner,
                file: None,
                size: 0,
                users: 0,
                dropped: 0,
                warned: None,
                failed_open: None,
                mid_line: false,
                pending: Vec::new(),
                pending_lines: 0,
            };
            file.open(path, warnings);
            file
        });
        file.options = options;
        file.owner = owner;
        file.users += 1;
    }

    /// A capture writing to `path` ended.
    pub fn release(&mut self, path: &str) {
        if let Some(file) = self.files.get_mut(path) {
            file.users = file.users.saturating_sub(1);
            file.flush(path, &mut self.warnings);
            if file.users == 0 {
                self.files.remove(path);
            }
        }
    }

    /// The writer of `path` for the lines of one read of a job's pipe,
    /// stamped `now` (the time pmtr read them) if the file has
    /// timestamps; `flush` it when the read is done.
    pub fn writer<'a>(&'a mut self, path: &'a str, now: SystemTime) -> Option<Writer<'a>> {
        let file = self.files.get_mut(path)?;
        if file.options.timestamps {
            self.stamp.update(now);
        }
        Some(Writer {
            file,
            path,
            stamp: &self.stamp.prefix,
            warnings: &mut self.warnings,
        })
    }

    /// Writes one whole line (without its newline), at once.
    #[cfg(test)]
    fn write_line(&mut self, path: &str, line: &[u8]) {
        if let Some(mut writer) = self.writer(path, SystemTime::now()) {
            writer.write(line, true);
            writer.flush();
        }
    }

    /// SIGUSR1: every file is closed and opened again by its name (after
    /// logrotate or an operator moved it).
    pub fn reopen_all(&mut self) {
        for (path, file) in &mut self.files {
            file.flush(path, &mut self.warnings);
            file.file = None;
            file.open(path, &mut self.warnings);
        }
    }

    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

/// Writes the lines of one read to one file: looked up once, not per
/// line.
pub struct Writer<'a> {
    file: &'a mut LogFile,
    path: &'a str,
    stamp: &'a [u8],
    warnings: &'a mut Vec<String>,
}

impl Writer<'_> {
    /// Writes a piece of a job's output line: the line's newline after it
    /// if it `ends_line`; the timestamp before it, and a rotation if one is
    /// due, if it starts one. Gathered and written out in batches.
    pub fn write(&mut self, piece: &[u8], ends_line: bool) {
        let file = &mut *self.file;
        let starts_line = !file.mid_line;
        let before = file.pending.len();
        if starts_line && file.options.timestamps {
            file.pending.extend_from_slice(self.stamp);
        }
        file.pending.extend_from_slice(piece);
        if ends_line {
            file.pending.push(b'\n');
            file.pending_lines += 1;
        }
        file.mid_line = !ends_line;
        if let Some(Rotate { size, keep }) = file.options.rotate {
            // Between lines only: a line is never split across files.
            let record = (file.pending.len() - before) as u64;
            let written = file.size + before as u64;
            if starts_line && written > 0 && written + record > size {
                let line = file.pending.split_off(before);
                let lines = u64::from(ends_line);
                file.pending_lines -= lines;
                file.flush(self.path, self.warnings);
                file.rotate(self.path, keep, self.warnings);
                file.pending = line;
                file.pending_lines = lines;
            }
        }
        if file.pending.len() >= FLUSH_AT {
            file.flush(self.path, self.warnings);
        }
    }

    /// Writes out what `write` gathered.
    pub fn flush(&mut self) {
        self.file.flush(self.path, self.warnings);
    }
}

impl LogFile {
    fn open(&mut self, path: &str, warnings: &mut Vec<String>) {
        match open(path, self.owner) {
            Ok(file) => {
                self.size = file.metadata().map_or(0, |m| m.len());
                // Held while the job runs: out of the way of the starts.
                self.file = Some(File::from(keep_high(OwnedFd::from(file))));
                self.failed_open = None;
            }
            Err(error) => {
                if self.failed_open.is_none() {
                    warnings.push(format!(
                        "unable to open {path}: {}; its lines are dropped until it opens",
                        Reason(&error)
                    ));
                }
                self.failed_open = Some(Instant::now());
            }
        }
    }

    /// Writes the gathered lines; on failure they are dropped and counted.
    fn flush(&mut self, path: &str, warnings: &mut Vec<String>) {
        if self.pending.is_empty() {
            return;
        }
        if self.file.is_none() && self.failed_open.is_none_or(|t| t.elapsed() >= REOPEN_EVERY) {
            self.open(path, warnings);
        }
        let result = match &mut self.file {
            Some(file) => file.write_all(&self.pending),
            None => Err(std::io::Error::other("the file could not be opened")),
        };
        match result {
            Ok(()) => self.size += self.pending.len() as u64,
            Err(error) => {
                self.dropped += self.pending_lines.max(1);
                self.warn(path, &error, warnings);
            }
        }
        self.pending.clear();
        self.pending_lines = 0;
    }

    /// FILE.(KEEP-1) → FILE.KEEP … FILE → FILE.1, then a new FILE. Renames
    /// within the directory, so a reader holding the old file keeps it.
    fn rotate(&mut self, path: &str, keep: u32, warnings: &mut Vec<String>) {
        self.file = None;
        for index in (1..keep).rev() {
            let from = format!("{path}.{index}");
            let _ = std::fs::rename(&from, format!("{path}.{}", index + 1));
        }
        if let Err(error) = std::fs::rename(path, format!("{path}.1")) {
            if error.kind() != ErrorKind::NotFound {
                warnings.push(format!("unable to rotate {path}: {}", Reason(&error)));
            }
        }
        self.open(path, warnings);
    }

    fn warn(&mut self, path: &str, error: &std::io::Error, warnings: &mut Vec<String>) {
        let due = self.warned.is_none_or(|(at, _)| at.elapsed() >= WARN_EVERY);
        if !due {
            return;
        }
        let told = self.warned.map_or(0, |(_, count)| count);
        warnings.push(format!(
            "dropped {} line(s) of output to {path} ({} in all): {}",
            self.dropped - told,
            self.dropped,
            Reason(error)
        ));
        self.warned = Some((Instant::now(), self.dropped));
    }
}

/// Opens `path` to append, never through a symlink; a file it creates is
/// 0640 and given to `owner`.
fn open(path: &str, owner: Owner) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    match options.clone().create_new(true).open(path) {
        Ok(file) => {
            if let Some((uid, gid)) = owner {
                nix::unistd::fchown(&file, Some(uid.into()), Some(gid.into()))?;
            }
            Ok(file)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => options.open(path),
        Err(error) => Err(error),
    }
}

/// The timestamp prefix of a line, `2026-12-02T19:15:00.123+01:00 `: the
/// local date and time are worked out once a second, the prefix once a
/// millisecond.
#[derive(Default)]
struct Stamp {
    secs: i64,
    millis: u32,
    date_time: String,
    offset: String,
    prefix: Vec<u8>,
}

impl Stamp {
    fn update(&mut self, now: SystemTime) {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = now.as_secs() as i64;
        let millis = now.subsec_millis();
        if secs != self.secs || self.date_time.is_empty() {
            (self.date_time, self.offset) = pmtr_common::clock::rfc3339_local(secs);
            self.secs = secs;
        } else if millis == self.millis && !self.prefix.is_empty() {
            return;
        }
        self.millis = millis;
        self.prefix.clear();
        let _ = write!(
            self.prefix,
            "{}.{millis:03}{} ",
            self.date_time, self.offset
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn options(size: u64, keep: u32, timestamps: bool) -> Options {
        Options {
            rotate: Some(Rotate { size, keep }),
            timestamps,
        }
    }

    /// Rotation before a line would cross the size: no line is split, no
    /// file is larger than the size, the oldest beyond KEEP is gone.
    #[test]
    fn rotation_keeps_whole_lines_and_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log").to_str().unwrap().to_string();
        let mut files = LogFiles::default();
        files.acquire(&path, options(100, 2, false), None);
        for i in 0..50 {
            files.write_line(&path, format!("line {i:04} of output").as_bytes());
        }
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let all: Vec<String> = [format!("{path}.2"), format!("{path}.1"), path.clone()]
            .iter()
            .map(|p| read(p))
            .collect();
        for text in &all {
            assert!(text.len() <= 100, "{text:?}");
            assert!(text.lines().all(|l| l.len() == 19), "{text:?}");
        }
        assert!(!std::path::Path::new(&format!("{path}.3")).exists());
        let last: Vec<&str> = all.iter().flat_map(|t| t.lines()).collect();
        assert_eq!(last.last(), Some(&"line 0049 of output"));
        assert!(files.take_warnings().is_empty());
    }

    #[test]
    fn created_0640_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.log");
        let mut files = LogFiles::default();
        let text = path.to_str().unwrap();
        files.acquire(text, options(1 << 20, 1, true), None);
        files.write_line(text, b"hello");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        let written = std::fs::read_to_string(&path).unwrap();
        let (stamp, line) = written.trim_end().split_once(' ').unwrap();
        assert_eq!(line, "hello");
        assert_eq!(
            stamp.len(),
            "2026-12-02T19:15:00.123+01:00".len(),
            "{stamp}"
        );
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let link = link.to_str().unwrap();
        files.acquire(link, options(1 << 20, 1, false), None);
        files.write_line(link, b"through the link");
        assert!(!std::fs::read_to_string(&path).unwrap().contains("through"));
        let warnings = files.take_warnings();
        assert!(
            warnings.iter().any(|w| w.contains("unable to open")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("dropped 1 line(s)")),
            "{warnings:?}"
        );
    }
}
