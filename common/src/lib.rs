//! What the daemon, `pmtr-ctl` and the collector share beyond the core:
//! OS errors as `strerror` text, files replaced whole, the `udp key` file and the clock and
//! nonces of signatures, the local time of the collector's status file, freed memory given back,
//! and the host name reports carry. Small on purpose: the collector links
//! this, never the daemon.

pub mod clock;
pub mod files;
pub mod host;
pub mod keyfile;
pub mod memory;
pub mod reason;
