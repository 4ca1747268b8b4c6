//! Wire formats: pure encode/decode pairs with hard size limits, shared by
//! every program that speaks them.

pub mod auth;
pub mod control;
pub mod local;
pub mod notify;
pub mod report;
pub mod state;
