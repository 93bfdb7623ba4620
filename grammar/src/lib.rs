//! The condition language of capsule.yaml.
