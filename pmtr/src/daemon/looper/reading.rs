//! A reload's reading: the configuration file and what it includes read
//! and checked, the files jobs depend on hashed, and what the jobs a
//! reload deleted leave behind dropped.

use pmtr_core::supervise::event::{Event, Level};

use super::Daemon;
use crate::config_file;
use crate::daemon::watch;

impl Daemon {
    /// Reads and checks the configuration file (with its includes) for a
    /// reload, and watches what it now includes.
    pub(super) fn read_config(&mut self, forced: bool) -> Event {
        let reading = config_file::load(&self.config_path);
        let mut errors = self.watcher.refresh_config();
        errors.extend(self.watcher.set_includes(&reading.includes));
        for error in errors {
            self.logger.log(Level::Warning, &error.to_string());
        }
        let result = match reading.result {
            Ok((config, _)) => Ok(Box::new(config)),
            Err(error @ config_file::LoadError::Invalid { .. }) => Err(error.render(SHOWN_ERRORS)),
            Err(error) => Err(error.to_string()),
        };
        Event::ConfigRead {
            hash: reading.hash,
            forced,
            result,
        }
    }

    /// Drops the output rings and the (empty) cgroups of jobs a reload
    /// deleted.
    pub(super) fn forget_deleted_jobs(&mut self) {
        let names: std::collections::HashSet<&str> = self
            .supervisor
            .jobs()
            .iter()
            .map(|j| j.def.name.as_str())
            .collect();
        self.captures.retain(|name| names.contains(name));
        if let Some(containment) = &mut self.containment {
            containment.remove_unless(|name| names.contains(name));
        }
    }
}

/// Most errors of a rejected configuration logged on reload.
const SHOWN_ERRORS: usize = 50;

pub(super) fn hash_files(paths: Vec<String>) -> Event {
    let hashes = paths.into_iter().map(|path| {
        let hash = watch::file_hash(&path);
        (path, hash)
    });
    Event::FilesHashed {
        hashes: hashes.collect(),
    }
}
