//! pmtr-rptserver: the collector of pmtr status reports. The fleet model
//! (`fleet`) and what is shown of it (`views`, `metrics`) are pure; `web`
//! answers HTTP requests from them.

pub mod cli;
pub mod fleet;
pub mod metrics;
pub mod views;
pub mod web;
