//! pmtr-rptserver: the collector of pmtr status reports. The fleet model
//! (`fleet`) and what is shown of it (`views`, `metrics`) are pure; `web`
//! answers HTTP requests from them; `server` carries the answers.

pub mod cli;
pub mod fleet;
pub mod metrics;
pub mod server;
pub mod views;
pub mod web;
