//! The Capsule policy compiler: `capsule.yaml` → AST → IR → passes → back-ends.
//!
//! See ARCHITECTURE.md at the repository root for the map.

pub mod bpf;
pub mod groups;
pub mod ir;
pub mod tables;
