//! pmtr-rptserver: the collector of pmtr status reports. The fleet model
//! and its views are pure (`fleet`); `web` serves them over HTTP.

pub mod cli;
pub mod fleet;
pub mod web;
