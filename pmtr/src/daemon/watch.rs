//! Watching the configuration file and the jobs' dependency files with
//! inotify — on their directories, so that every way of saving works:
//! writing in place, renaming a temporary file over (vim, `sed -i`, `mv`),
//! deleting and creating, swapping a symlink (`ln -sfn`, ConfigMaps).
//! Included files and the directories of `include` patterns count as the
//! configuration. Also the content hashes that tell a real change of a
//! dependency from a rewrite.

use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::Hasher;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use pmtr_core::config::IncludePattern;

use crate::config_file::Includes;

/// What a batch of inotify events touched.
#[derive(Debug, PartialEq, Eq)]
pub enum Touched {
    /// A file of the configuration. `saved`: a writer finished with it (a
    /// close after writing, a rename over it); otherwise a write to a file
    /// still open, a delete or a create, which may be part of a burst.
    Config {
        saved: bool,
    },
    Dependency(String),
}

/// A file to watch, seen from its directory.
#[derive(Clone, Debug)]
struct Target {
    dir: PathBuf,
    name: OsString,
    /// The path is a symlink: any change in its directory may be a swap
    /// of what it points to (`..data` in a Kubernetes ConfigMap).
    any_name: bool,
    /// An `include` pattern: every name it matches is part of the
    /// configuration, those that are not there yet too.
    pattern: Option<IncludePattern>,
    what: What,
}

impl Target {
    fn is_touched_by(&self, name: Option<&OsString>) -> bool {
        if self.any_name || name == Some(&self.name) {
            return true;
        }
        match (&self.pattern, name.and_then(|n| n.to_str())) {
            (Some(pattern), Some(name)) => pattern.matches(name),
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum What {
    Config,
    Dependency(String),
}

pub struct Watcher {
    inotify: Option<Inotify>,
    config: PathBuf,
    /// Where the configuration file is (and points, if a symlink).
    config_targets: Vec<Target>,
    /// The files the configuration includes and its `include` patterns.
    include_targets: Vec<Target>,
    dependency_targets: Vec<Target>,
    /// Each directory watched, with the events asked for there.
    dirs: HashMap<PathBuf, (WatchDescriptor, AddWatchFlags)>,
    by_descriptor: HashMap<WatchDescriptor, PathBuf>,
}

/// Why watching does not work; pmtr keeps running and reloads on SIGHUP.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("unable to watch files (inotify): {}; reload with SIGHUP", pmtr_common::reason::Text(*.0))]
    Init(Errno),
    #[error("unable to watch {}: {}", .0.display(), pmtr_common::reason::Text(*.1))]
    Directory(PathBuf, Errno),
}

/// A writer that keeps the configuration open is seen by its writes;
/// dependency directories (maybe a busy data directory) are spared them.
const CONFIG_EVENTS: AddWatchFlags = EVENTS.union(AddWatchFlags::IN_MODIFY);

/// The events that say a writer is done with a file.
const SAVED: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE.union(AddWatchFlags::IN_MOVED_TO);

const EVENTS: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ATTRIB);

impl Watcher {
    /// A watcher of the configuration file. Without inotify, it watches
    /// nothing and says why.
    pub fn new(config: &Path) -> (Watcher, Vec<WatchError>) {
        let (inotify, mut errors) =
            match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
                Ok(inotify) => (Some(inotify), Vec::new()),
                Err(errno) => (None, vec![WatchError::Init(errno)]),
            };
        let mut watcher = Watcher {
            inotify,
            config: config.to_path_buf(),
            config_targets: Vec::new(),
            include_targets: Vec::new(),
            dependency_targets: Vec::new(),
            dirs: HashMap::new(),
            by_descriptor: HashMap::new(),
        };
        errors.extend(watcher.refresh_config());
        (watcher, errors)
    }

    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inotify.as_ref().map(|i| i.as_fd())
    }

    /// Watches these dependency files, in place of the previous ones.
    pub fn set_dependencies(&mut self, dependencies: &[String]) -> Vec<WatchError> {
        self.dependency_targets = dependencies
            .iter()
            .flat_map(|path| targets_of(Path::new(path), What::Dependency(path.clone())))
            .collect();
        self.sync_directories()
    }

    /// Watches the configuration file where it is now: a symlinked one may
    /// point elsewhere since the last read.
    pub fn refresh_config(&mut self) -> Vec<WatchError> {
        self.config_targets = targets_of(&self.config, What::Config);
        self.sync_directories()
    }

    /// Watches the files the configuration includes and the directories
    /// of its `include` patterns, in place of the previous ones.
    pub fn set_includes(&mut self, includes: &Includes) -> Vec<WatchError> {
        let files = includes
            .files
            .iter()
            .flat_map(|path| targets_of(Path::new(path), What::Config));
        let patterns = includes.patterns.iter().map(|pattern| Target {
            dir: PathBuf::from(&pattern.dir),
            name: OsString::new(),
            any_name: false,
            pattern: Some(pattern.clone()),
            what: What::Config,
        });
        self.include_targets = files.chain(patterns).collect();
        self.sync_directories()
    }

    fn targets(&self) -> impl Iterator<Item = &Target> {
        self.config_targets
            .iter()
            .chain(&self.include_targets)
            .chain(&self.dependency_targets)
    }

    fn sync_directories(&mut self) -> Vec<WatchError> {
        let Some(inotify) = &self.inotify else {
            return Vec::new();
        };
        let mut wanted: HashMap<PathBuf, AddWatchFlags> = HashMap::new();
        for target in self.targets() {
            let events = match target.what {
                What::Config => CONFIG_EVENTS,
                What::Dependency(_) => EVENTS,
            };
            *wanted.entry(target.dir.clone()).or_insert(events) |= events;
        }
        let mut errors = Vec::new();
        let stale: Vec<PathBuf> = self
            .dirs
            .keys()
            .filter(|d| !wanted.contains_key(*d))
            .cloned()
            .collect();
        for dir in stale {
            if let Some((wd, _)) = self.dirs.remove(&dir) {
                self.by_descriptor.remove(&wd);
                let _ = inotify.rm_watch(wd);
            }
        }
        for (dir, events) in wanted {
            if self.dirs.get(&dir).is_some_and(|&(_, had)| had == events) {
                continue;
            }
            // Watching a directory again replaces its events, same descriptor.
            match inotify.add_watch(&dir, events) {
                Ok(wd) => {
                    self.dirs.insert(dir.clone(), (wd, events));
                    self.by_descriptor.insert(wd, dir);
                }
                // A missing directory is a missing dependency, reported
                // by the supervisor; it is watched again at the next reload.
                Err(Errno::ENOENT) => {}
                Err(errno) => errors.push(WatchError::Directory(dir, errno)),
            }
        }
        errors
    }

    /// Reads the pending events and says what they touched.
    pub fn read(&mut self) -> Vec<Touched> {
        let Some(inotify) = &self.inotify else {
            return Vec::new();
        };
        let mut touched = Vec::new();
        // The configuration's events of one read, merged: the last says
        // whether a writer is done (a close, then a write: it is back).
        let mut config: Option<bool> = None;
        let mut push = |t: &What, saved: bool| match t {
            What::Config => config = Some(saved),
            What::Dependency(path) => {
                let t = Touched::Dependency(path.clone());
                if !touched.contains(&t) {
                    touched.push(t);
                }
            }
        };
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: anything may have changed.
                    for target in self.targets() {
                        push(&target.what, false);
                    }
                    continue;
                }
                let Some(dir) = self.by_descriptor.get(&event.wd) else {
                    continue;
                };
                let saved = event.mask.intersects(SAVED);
                for target in self.targets().filter(|t| &t.dir == dir) {
                    if target.is_touched_by(event.name.as_ref()) {
                        push(&target.what, saved);
                    }
                }
            }
        }
        if let Some(saved) = config {
            touched.insert(0, Touched::Config { saved });
        }
        touched
    }
}

/// The directory entries that stand for `path`: its own, and where it
/// points if it is a symlink.
fn targets_of(path: &Path, what: What) -> Vec<Target> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut targets = Vec::new();
    let is_symlink = std::fs::symlink_metadata(&absolute).is_ok_and(|m| m.file_type().is_symlink());
    if let (Some(dir), Some(name)) = (absolute.parent(), absolute.file_name()) {
        targets.push(Target {
            dir: dir.to_path_buf(),
            name: name.to_os_string(),
            any_name: is_symlink,
            pattern: None,
            what: what.clone(),
        });
    }
    if is_symlink {
        if let Ok(real) = std::fs::canonicalize(&absolute) {
            if let (Some(dir), Some(name)) = (real.parent(), real.file_name()) {
                targets.push(Target {
                    dir: dir.to_path_buf(),
                    name: name.to_os_string(),
                    any_name: false,
                    pattern: None,
                    what,
                });
            }
        }
    }
    targets
}

/// Read of a dependency for its hash; a longer file is hashed by this
/// much and its length.
const MAX_HASHED_BYTES: u64 = 64 << 20;

/// The content hash of a regular file, read in pieces; `None` if it cannot
/// be read (missing, not readable by pmtr, or not a regular file). A
/// dependency may live in a directory a job's user can write: opened
/// without blocking, a FIFO put in its place cannot hold up pmtr, and a
/// device (a link to /dev/zero) is refused rather than read forever.
pub fn file_hash(path: &str) -> Option<u64> {
    let (file, metadata) = pmtr_common::files::open_regular(Path::new(path)).ok()?;
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write_u64(metadata.len().saturating_sub(MAX_HASHED_BYTES));
    let mut file = file.take(MAX_HASHED_BYTES);
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Some(hasher.finish()),
            Ok(n) => hasher.write(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_has_no_hash() {
        assert_eq!(file_hash("/no/such/file"), None);
    }

    #[test]
    fn only_regular_files_are_hashed() {
        assert_eq!(file_hash("/dev/zero"), None, "a device, never read");
        assert_eq!(file_hash("/"), None, "a directory");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            file_hash(fifo.to_str().unwrap()),
            None,
            "a FIFO, not waited on"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "v1").unwrap();
        assert!(file_hash(file.to_str().unwrap()).is_some());
    }

    #[test]
    fn a_symlink_is_watched_where_it_is_and_where_it_points() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("data");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("pmtr.conf"), "").unwrap();
        let link = dir.path().join("pmtr.conf");
        std::os::unix::fs::symlink(real.join("pmtr.conf"), &link).unwrap();
        let targets = targets_of(&link, What::Config);
        assert_eq!(targets.len(), 2);
        assert!(targets[0].any_name);
        assert_eq!(targets[1].dir, std::fs::canonicalize(&real).unwrap());
    }

    #[test]
    fn a_rename_over_the_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pmtr.conf");
        std::fs::write(&config, "a").unwrap();
        let (mut watcher, errors) = Watcher::new(&config);
        assert!(errors.is_empty());
        std::fs::write(dir.path().join("other"), "x").unwrap();
        assert!(watcher.read().is_empty(), "another file is not the config");
        std::fs::write(dir.path().join(".pmtr.conf.swp"), "b").unwrap();
        std::fs::rename(dir.path().join(".pmtr.conf.swp"), &config).unwrap();
        assert_eq!(watcher.read(), [Touched::Config { saved: true }]);
    }

    #[test]
    fn a_new_file_an_include_pattern_matches_is_seen_a_swap_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pmtr.conf");
        std::fs::write(&config, "").unwrap();
        let included = dir.path().join("pmtr.d");
        std::fs::create_dir(&included).unwrap();
        let (mut watcher, _) = Watcher::new(&config);
        let includes = Includes {
            files: Vec::new(),
            patterns: vec![IncludePattern {
                dir: included.to_string_lossy().into_owned(),
                names: "*.conf".into(),
            }],
        };
        assert!(watcher.set_includes(&includes).is_empty());
        std::fs::write(included.join(".web.conf.swp"), "x").unwrap();
        std::fs::write(included.join("notes.txt"), "x").unwrap();
        assert!(watcher.read().is_empty());
        std::fs::write(included.join("web.conf"), "x").unwrap();
        assert_eq!(watcher.read(), [Touched::Config { saved: true }]);
        std::fs::remove_file(included.join("web.conf")).unwrap();
        assert_eq!(watcher.read(), [Touched::Config { saved: false }]);
    }

    #[test]
    fn writes_to_a_file_held_open_are_not_a_save_its_close_is() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pmtr.conf");
        std::fs::write(&config, "").unwrap();
        let (mut watcher, _) = Watcher::new(&config);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .unwrap();
        file.write_all(b"job {\n").unwrap();
        assert_eq!(watcher.read(), [Touched::Config { saved: false }]);
        file.write_all(b"}\n").unwrap();
        drop(file);
        assert_eq!(watcher.read(), [Touched::Config { saved: true }]);
        // A save, then a writer back at it before pmtr looked: not a save.
        std::fs::write(&config, "a").unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .unwrap();
        file.write_all(b"b").unwrap();
        assert_eq!(watcher.read(), [Touched::Config { saved: false }]);
    }

    #[test]
    fn dependency_directories_are_not_asked_for_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pmtr.conf");
        std::fs::write(&config, "").unwrap();
        let data = tempfile::tempdir().unwrap();
        let dependency = data.path().join("app.db");
        std::fs::write(&dependency, "").unwrap();
        let (mut watcher, _) = Watcher::new(&config);
        let path = dependency.to_string_lossy().into_owned();
        assert!(watcher
            .set_dependencies(std::slice::from_ref(&path))
            .is_empty());
        let (_, events) = watcher.dirs[data.path()];
        assert!(!events.contains(AddWatchFlags::IN_MODIFY));
        let (_, events) = watcher.dirs[dir.path()];
        assert!(events.contains(AddWatchFlags::IN_MODIFY));
    }
}
