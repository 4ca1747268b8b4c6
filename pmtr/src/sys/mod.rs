//! The thin syscall layer: the only place `unsafe` is allowed. Each
//! module wraps one concern, and each unsafe block says why it is sound.
#![allow(unsafe_code)]

pub mod beside;
pub mod child;
pub mod code;
pub mod daemonize;
pub mod mounts;
pub mod net;
pub mod plan;
pub mod process;
pub mod signals;
pub mod spawn;
