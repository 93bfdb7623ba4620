//! The library behind `capsule`: the parts the Python SDK shares with the command line
//! (`run` is `capsule run`, the same refusals and the same cache), so the SDK has no
//! second implementation of them.

pub mod cache;
pub mod run;
pub mod trust;
