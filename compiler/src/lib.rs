//! The Capsule policy compiler: `capsule.yaml` → AST → IR → passes → back-ends.
//!
//! See ARCHITECTURE.md at the repository root for the map.

pub mod back;
pub mod bpf;
pub mod build;
pub mod diagnostic;
pub mod diff;
pub mod explain;
pub mod filetest;
pub mod front;
pub mod groups;
pub mod ir;
pub mod oci;
pub mod passes;
pub mod tables;
pub mod valid;
