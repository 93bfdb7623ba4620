//! Landlock: which rights each filesystem class handles, the ABI check, and applying
//! the ruleset in the child.
//!
//! Access-right classes (documented in docs/artifact-format.md):
//! - `read`: `ReadFile`, `ReadDir`.
//! - `write`: `WriteFile`, `RemoveDir`, `RemoveFile`, `MakeChar`, `MakeDir`, `MakeReg`,
//!   `MakeSock`, `MakeFifo`, `MakeBlock`, `MakeSym` (ABI 1), `Refer` (2), `Truncate` (3),
//!   `IoctlDev` (5), `ResolveUnix` (9): the crate's `AccessFs::from_write`.
//! - `execute`: `Execute`.
//!
//! A class the policy leaves out (`None`) is not handled, so it stays unrestricted.
//! The rights that exist at `min_abi` are required; rights of newer ABIs harden the
//! sandbox when the kernel has them and are reported when it does not.

use capsule_artifacts::launch::{LandlockMode, LaunchSettings};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::paths::PathVars;

/// The newest ABI this launcher knows the rights of.
const NEWEST_ABI: ABI = ABI::V10;
const NET_ABI: u8 = 4;
const SCOPE_ABI: u8 = 6;

#[derive(Debug, Clone)]
pub struct FsClass {
    pub name: &'static str,
    pub rights: BitFlags<AccessFs>,
    /// The rules' paths as the policy resolves them (variables substituted); Landlock
    /// opens these, and the kernel follows their symlinks.
    pub paths: Vec<PathBuf>,
    /// The same paths with symlinks and `..` resolved, for the launcher's own
    /// comparisons (is the log, the cache or the state directory beneath a grant?).
    pub resolved: Vec<PathBuf>,
}

impl FsClass {
    /// `memo` holds the resolutions made so far for one plan: a path in several classes
    /// (`/dev/null` is read and written) is resolved once, each a `readlink` per component.
    pub(crate) fn new(
        name: &'static str,
        rights: BitFlags<AccessFs>,
        paths: Vec<PathBuf>,
        memo: &mut BTreeMap<PathBuf, PathBuf>,
    ) -> FsClass {
        let resolved = paths
            .iter()
            .map(|path| memo.entry(path.clone()).or_insert_with(|| crate::paths::resolved_grant(path.clone())).clone())
            .collect();
        FsClass { name, rights, paths, resolved }
    }
}

#[derive(Debug, Clone)]
pub struct LandlockPlan {
    pub mode: LandlockMode,
    pub min_abi: u8,
    /// What `landlock_create_ruleset(.., LANDLOCK_CREATE_RULESET_VERSION)` said; 0: none.
    pub kernel_abi: u8,
    pub fs: Vec<FsClass>,
    pub connect: Option<Vec<u16>>,
    pub bind: Option<Vec<u16>>,
    pub scope: bool,
    /// Paths skipped because they do not exist, for `--verbose`.
    pub skipped: Vec<String>,
}

/// The kernel's Landlock ABI version, 0 when Landlock is missing or disabled.
pub fn kernel_abi() -> u8 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the syscall
    // only returns a number; it reads and writes no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u8::try_from(version.max(0)).unwrap_or(u8::MAX)
}

fn names(rights: BitFlags<AccessFs>) -> String {
    rights.iter().map(|right| format!("{right:?}")).collect::<Vec<_>>().join(" ")
}

fn abi_from(version: u8) -> ABI {
    ABI::from(i32::from(version))
}

impl LandlockPlan {
    pub fn new(settings: &LaunchSettings, vars: &PathVars, kernel_abi: u8) -> Result<LandlockPlan, String> {
        let fs = &settings.filesystem;
        let mut skipped = Vec::new();
        let mut classes = Vec::new();
        let mut memo = BTreeMap::new();
        let newest_read = AccessFs::from_read(NEWEST_ABI);
        for (name, rules, rights) in [
            ("read", &fs.read, newest_read & !AccessFs::Execute),
            ("write", &fs.write, AccessFs::from_write(NEWEST_ABI)),
            ("execute", &fs.execute, BitFlags::from(AccessFs::Execute)),
        ] {
            let Some(rules) = rules else { continue };
            let mut paths = Vec::new();
            for rule in rules {
                let path = vars.resolve(rule)?;
                if path.exists() {
                    paths.push(path);
                } else if PathVars::is_workspace_rule(rule) {
                    return Err(format!("the workspace {} does not exist", path.display()));
                } else {
                    skipped.push(format!("{name} {} (does not exist)", path.display()));
                }
            }
            classes.push(FsClass::new(name, rights, paths, &mut memo));
        }
        let ports = |rules: &Option<Vec<capsule_artifacts::launch::PortRule>>| {
            rules.as_ref().map(|rules| rules.iter().map(|r| r.port).collect::<Vec<u16>>())
        };
        let mut connect = ports(&settings.network.connect);
        // The proxy's port on the command's own loopback: the only listener in its
        // network namespace, so opening the port opens nothing else.
        if let (Some(proxy), Some(connect)) = (&settings.network.proxy, connect.as_mut()) {
            connect.push(crate::proxy::listen_port(proxy));
        }
        Ok(LandlockPlan {
            mode: settings.landlock.mode,
            min_abi: settings.landlock.min_abi,
            kernel_abi,
            fs: classes,
            connect,
            bind: ports(&settings.network.bind),
            scope: settings.landlock.scope,
            skipped,
        })
    }

    pub fn requests_anything(&self) -> bool {
        !self.fs.is_empty() || self.connect.is_some() || self.bind.is_some() || self.scope
    }

    /// The lowest ABI that enforces every requested right, with the reasons.
    pub fn required_abi(&self) -> (u8, Vec<String>) {
        let mut abi = self.min_abi;
        let mut why = vec![format!("the policy's min_abi is {}", self.min_abi)];
        if self.connect.is_some() || self.bind.is_some() {
            abi = abi.max(NET_ABI);
            why.push(format!("TCP port rules need ABI {NET_ABI}"));
        }
        if self.scope {
            abi = abi.max(SCOPE_ABI);
            why.push(format!("signal and abstract-socket scoping need ABI {SCOPE_ABI}"));
        }
        (abi, why)
    }

    /// In enforce mode the command does not run unless the kernel has every requested right.
    pub fn check_kernel(&self) -> Result<(), String> {
        if self.mode != LandlockMode::Enforce {
            return Ok(());
        }
        let (required, why) = self.required_abi();
        if self.kernel_abi < required {
            let kernel =
                if self.kernel_abi == 0 { "no Landlock".to_owned() } else { format!("ABI {}", self.kernel_abi) };
            return Err(format!(
                "Landlock mode is enforce and the policy needs Landlock ABI {required} ({}), but this kernel has {kernel}",
                why.join("; ")
            ));
        }
        Ok(())
    }

    /// Rights that must be enforced: those that exist at `min_abi` (at least ABI 1).
    fn required_rights(&self, rights: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
        rights & AccessFs::from_all(abi_from(self.min_abi.max(1)))
    }

    /// Human-readable lines for `--verbose` / `--explain`, computed without touching the kernel.
    pub fn describe(&self, explain: bool) -> Vec<String> {
        let mut lines = vec![format!(
            "landlock: kernel ABI {}, mode {}, min_abi {}",
            self.kernel_abi,
            match self.mode {
                LandlockMode::Enforce => "enforce",
                LandlockMode::BestEffort => "best-effort",
            },
            self.min_abi
        )];
        let kernel_rights = AccessFs::from_all(abi_from(self.kernel_abi));
        for class in &self.fs {
            let unenforced = class.rights & !kernel_rights;
            let status = if unenforced.is_empty() {
                "fully enforced".to_owned()
            } else {
                format!("enforced except {} (kernel ABI {} lacks them)", names(unenforced), self.kernel_abi)
            };
            lines.push(format!("landlock: {} beneath {} paths: {status}", class.name, class.paths.len()));
            if explain {
                lines.push(format!("landlock:   rights {}", names(class.rights)));
                for path in &class.paths {
                    lines.push(format!("landlock:   {}", path.display()));
                }
            }
        }
        for (name, ports) in [("connect", &self.connect), ("bind", &self.bind)] {
            let status = if self.kernel_abi >= NET_ABI { "enforced" } else { "NOT enforced (kernel ABI < 4)" };
            match ports {
                None => lines.push(format!("landlock: tcp {name}: not restricted")),
                Some(ports) => lines.push(format!("landlock: tcp {name} only to ports {ports:?}: {status}")),
            }
        }
        let scope_status = if self.kernel_abi >= SCOPE_ABI { "enforced" } else { "NOT enforced (kernel ABI < 6)" };
        lines.push(if self.scope {
            format!("landlock: signal and abstract-socket scoping: {scope_status}")
        } else {
            "landlock: signal and abstract-socket scoping: off".to_owned()
        });
        lines.extend(self.skipped.iter().map(|s| format!("landlock: skipped {s}")));
        lines
    }

    /// One rule per path with the union of its classes' rights: Landlock grants the
    /// union of the rules on a path anyway, and each rule costs the child an open, an
    /// fstat, an add_rule and a close (the default policy names 16 paths 25 times).
    fn rights_per_path(&self) -> BTreeMap<&PathBuf, BitFlags<AccessFs>> {
        let mut merged: BTreeMap<&PathBuf, BitFlags<AccessFs>> = BTreeMap::new();
        for class in &self.fs {
            for path in &class.paths {
                *merged.entry(path).or_default() |= class.rights;
            }
        }
        merged
    }

    /// Builds and enforces the ruleset on the calling thread. Runs in the child.
    pub fn apply(&self) -> Result<String, String> {
        if !self.requests_anything() {
            return Ok("landlock: nothing requested".to_owned());
        }
        let level = match self.mode {
            LandlockMode::Enforce => CompatLevel::HardRequirement,
            LandlockMode::BestEffort => CompatLevel::BestEffort,
        };
        let all_rights = self.fs.iter().fold(BitFlags::empty(), |acc, c| acc | c.rights);
        let required = self.required_rights(all_rights);
        let hardening = all_rights & !required;
        let error = |e: landlock::RulesetError| format!("landlock: {e}");

        let mut ruleset = Ruleset::default().set_compatibility(level);
        if !required.is_empty() {
            ruleset = ruleset.handle_access(required).map_err(error)?;
        }
        if self.connect.is_some() {
            ruleset = ruleset.handle_access(AccessNet::ConnectTcp).map_err(error)?;
        }
        if self.bind.is_some() {
            ruleset = ruleset.handle_access(AccessNet::BindTcp).map_err(error)?;
        }
        if self.scope {
            ruleset = ruleset.scope(Scope::AbstractUnixSocket | Scope::Signal).map_err(error)?;
        }
        // Newer rights only narrow what is allowed; a kernel without them keeps the rest.
        ruleset = ruleset.set_compatibility(CompatLevel::BestEffort);
        if !hardening.is_empty() {
            ruleset = ruleset.handle_access(hardening).map_err(error)?;
        }
        // Rules are best effort: the crate drops rights a rule cannot carry (directory
        // rights on a file, rights the kernel lacks), which only narrows the grant.
        let mut created = ruleset.create().map_err(error)?;
        for (path, rights) in self.rights_per_path() {
            let fd = PathFd::new(path).map_err(|e| format!("landlock: cannot open {}: {e}", path.display()))?;
            created = created.add_rule(PathBeneath::new(fd, rights)).map_err(error)?;
        }
        for (ports, access) in [(&self.connect, AccessNet::ConnectTcp), (&self.bind, AccessNet::BindTcp)] {
            for &port in ports.iter().flatten() {
                created = created.add_rule(NetPort::new(port, access)).map_err(error)?;
            }
        }
        let status = created.restrict_self().map_err(error)?;
        if status.ruleset == RulesetStatus::NotEnforced && self.mode == LandlockMode::Enforce {
            return Err("landlock: the kernel did not enforce the ruleset".to_owned());
        }
        let enforced = match status.ruleset {
            RulesetStatus::FullyEnforced => "fully enforced",
            RulesetStatus::PartiallyEnforced => "enforced (rights the kernel lacks left out)",
            RulesetStatus::NotEnforced => "NOT enforced",
        };
        Ok(format!("landlock: ruleset {enforced}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_named_by_several_classes_gets_one_rule_with_their_union() {
        let class = |name, rights, paths: &[&str]| {
            FsClass::new(name, rights, paths.iter().map(PathBuf::from).collect(), &mut BTreeMap::new())
        };
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        let plan = LandlockPlan {
            mode: LandlockMode::Enforce,
            min_abi: 1,
            kernel_abi: 7,
            fs: vec![
                class("read", read, &["/usr", "/tmp"]),
                class("write", BitFlags::from(AccessFs::WriteFile), &["/tmp"]),
                class("execute", BitFlags::from(AccessFs::Execute), &["/usr"]),
            ],
            connect: None,
            bind: None,
            scope: false,
            skipped: vec![],
        };
        let merged: Vec<(String, BitFlags<AccessFs>)> =
            plan.rights_per_path().into_iter().map(|(p, r)| (p.display().to_string(), r)).collect();
        assert_eq!(
            merged,
            [("/tmp".to_owned(), read | AccessFs::WriteFile), ("/usr".to_owned(), read | AccessFs::Execute)]
        );
    }
}
