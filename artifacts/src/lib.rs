//! The contract between the compiler and the runtime.
//!
//! Everything here is shared by `capsulec` (which writes artifacts), `capsule-launch`
//! (which trusts only what it can pin) and `capsule` (which does both). It links no
//! compiler code: no YAML, no pest.

pub mod launch;
pub mod log;
pub mod manifest;
pub mod notify;
pub mod target;

pub use launch::LaunchSettings;
pub use target::Target;
