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

/// What `capsulec check` reports for a policy file's bytes: the front-end's
/// diagnostics plus the back-ends' notes on the checked policy (N0402: syscall rules
/// with no effect on macOS). The command line and the Python SDK's `capsule.check`
/// both call this, so they report the same codes.
pub fn check_policy(bytes: &[u8], format: front::Format) -> front::Checked {
    let mut checked = front::check_source_bytes(bytes, format);
    let text = String::from_utf8_lossy(bytes);
    if let Some(note) = checked.policy.as_ref().and_then(|p| back::sbpl::syscall_note(p, &text)) {
        checked.diagnostics.push(note);
    }
    checked
}
