//! The front ends of the programs this package builds — `pmtr` (with
//! `pmtr -t`), `pmtr-ctl` and `onconnect` — each its command line and
//! what it does before, or instead of, the daemon. The fourth program,
//! `pmtr-rptserver`, is a package of its own; all four stand on
//! `pmtr-core`.

pub mod ctl;
pub mod onconnect;
pub mod pmtr;
