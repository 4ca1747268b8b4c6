//! pmtr-rptserver's integration tests: the fleet protocol end to end over
//! 127.0.0.1 with the real binaries, through pmtr's test harness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../pmtr/tests/harness/mod.rs"]
mod harness;

mod bounds;
mod browser;
mod fleet;
mod fleet_page;
