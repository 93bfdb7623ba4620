//! Back-ends: functions that turn a verified IR ([`crate::ir::Policy`] with its
//! [`crate::valid::PolicyInfo`]) into the artifact formats, and the translation
//! validation that checks their output against the IR before anything is written.

pub mod bpf;
pub mod sbpl;
pub mod validate;
