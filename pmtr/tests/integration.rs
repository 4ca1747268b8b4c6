//! The one integration-test binary: every test runs the real programs in a
//! temp dir of its own, through the harness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod check;
mod containers;
mod containment;
mod control;
mod daemonize;
mod engine;
mod envfiles;
mod faults;
mod handover;
mod include;
mod instances;
mod logfiles;
mod notify;
mod onconnect;
mod pid1;
mod readiness;
mod reload;
mod restart;
mod shutdown;
mod spawning;
mod start;
