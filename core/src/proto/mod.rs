//! Wire formats: pure encode/decode pairs with hard size limits, shared by
//! every program that speaks them.

pub mod local;
