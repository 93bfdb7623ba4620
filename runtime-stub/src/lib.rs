//! capsule-launch: apply a pinned artifact and run a command as its parent.
