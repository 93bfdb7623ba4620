//! Real OCI seccomp profiles, read in place from the Debian packages that ship them
//! (`.ci/run` installs both): Docker's default profile and podman's. Shared by the
//! compiler's tests and `capsule-bench bpf` (which includes this file by path).
//!
//! An environment variable overrides each path. A missing profile is a skip with a
//! message on a developer's machine and a failure under `CI=true`.

#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;

/// One packaged profile and how to import it.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The name tests and reports use.
    pub name: &'static str,
    /// The environment variable that overrides `path`.
    pub env: &'static str,
    /// The Debian package that ships it.
    pub package: &'static str,
    /// Where the package puts it.
    pub path: &'static str,
    /// The capabilities its container engine grants by default, which its
    /// `includes`/`excludes` are resolved against.
    pub caps: &'static [&'static str],
}

/// Docker's default profile, from moby's `profiles/seccomp/default.json`.
pub const DOCKER: Profile = Profile {
    name: "docker-default",
    env: "CAPSULE_DOCKER_PROFILE",
    package: "golang-github-docker-docker-dev",
    path: "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json",
    caps: &capsule_compiler::oci::DOCKER_DEFAULT_CAPS,
};

/// podman's (containers/common's) default profile.
pub const PODMAN: Profile = Profile {
    name: "podman-default",
    env: "CAPSULE_PODMAN_PROFILE",
    package: "golang-github-containers-common",
    path: "/usr/share/containers/seccomp.json",
    caps: &PODMAN_DEFAULT_CAPS,
};

pub const ALL: [Profile; 2] = [DOCKER, PODMAN];

/// `default_capabilities` of the same package's `/usr/share/containers/containers.conf`.
pub const PODMAN_DEFAULT_CAPS: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

impl Profile {
    /// The environment variable's value, else the package's path.
    pub fn path(&self) -> PathBuf {
        std::env::var_os(self.env).map_or_else(|| PathBuf::from(self.path), PathBuf::from)
    }

    /// The capabilities as the importer takes them.
    pub fn cap_set(&self) -> std::collections::BTreeSet<String> {
        self.caps.iter().map(|c| c.to_string()).collect()
    }

    /// The profile's text; `None` (after saying so) when it cannot be read outside CI.
    /// Under `CI=true` an unreadable profile panics: CI installs the package.
    pub fn read(&self) -> Option<String> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                let why = format!(
                    "{} profile not readable at {} ({e}): install the Debian package {} or set {}",
                    self.name,
                    path.display(),
                    self.package,
                    self.env
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{why} (CI=true: a missing profile is a failure)");
                }
                eprintln!("SKIPPED: {why}");
                None
            }
        }
    }
}
