//! The artifact folder's `manifest.json`: format version, what was compiled, and the
//! blake3 pin of every other file. Its own blake3 is the pin users hand to
//! `capsule-launch --pin`. The serialisation is deterministic (fields in declaration
//! order, maps as BTreeMap) so the same policy gives the same bytes.
//!
//! Filled in by the compiler issue; the launcher reads it.
