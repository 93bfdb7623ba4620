//! `${WORKSPACE}`, `${HOME}` and `${TMPDIR}` in filesystem rules, resolved at launch.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The values the variables take for one launch.
#[derive(Debug, Clone)]
pub struct PathVars {
    pub workspace: PathBuf,
    pub home: Option<PathBuf>,
    pub tmpdir: PathBuf,
}

impl PathVars {
    /// `workspace` from `--workspace` or the current directory; `HOME` and `TMPDIR`
    /// (default `/tmp`) from the launcher's own environment.
    pub fn from_env(workspace: Option<&Path>) -> Result<PathVars, String> {
        let workspace = match workspace {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?,
        };
        let workspace = workspace
            .canonicalize()
            .map_err(|e| format!("the workspace {} cannot be used: {e}", workspace.display()))?;
        if !workspace.is_dir() {
            return Err(format!("the workspace {} is not a directory", workspace.display()));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let tmpdir = std::env::var_os("TMPDIR").filter(|t| !t.is_empty()).map_or_else(|| "/tmp".into(), PathBuf::from);
        Ok(PathVars { workspace, home, tmpdir })
    }

    /// Resolves one rule path. Unknown variables and relative results are errors:
    /// a rule the launcher cannot read exactly is not applied approximately.
    pub fn resolve(&self, rule: &str) -> Result<PathBuf, String> {
        let mut out = String::new();
        let mut rest = rule;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("unclosed variable in path {rule:?}"))?;
            let value = match &after[..end] {
                "WORKSPACE" => &self.workspace,
                "TMPDIR" => &self.tmpdir,
                "HOME" => self.home.as_ref().ok_or_else(|| format!("{rule:?} uses ${{HOME}}, but HOME is not set"))?,
                other => return Err(format!("unknown variable ${{{other}}} in path {rule:?}")),
            };
            let value = value.to_str().ok_or_else(|| format!("{} is not UTF-8", value.display()))?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        let path = PathBuf::from(out);
        if !path.is_absolute() {
            return Err(format!("path {rule:?} is not absolute after resolving variables"));
        }
        Ok(path)
    }

    /// Whether a rule names the workspace itself, which must exist.
    pub fn is_workspace_rule(rule: &str) -> bool {
        rule.trim_end_matches('/') == "${WORKSPACE}"
    }
}

/// A granted path as the launcher's own comparisons see it (is the log, the cache or the
/// state directory beneath it?): symlinks and `..` resolved, or as written when it
/// cannot be resolved (the grant of a path that does not exist grants nothing more).
pub fn resolved_grant(path: PathBuf) -> PathBuf {
    path.canonicalize().unwrap_or(path)
}

/// `path` made absolute with every existing part resolved (symlinks, `..`), so it can
/// be compared with the paths Landlock grants; the missing tail is kept as written. A
/// dangling symlink on the way is followed to where its target would be made: that is
/// where writes through it land.
pub fn resolve_existing(path: &Path) -> Result<PathBuf, String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?.join(path)
    };
    // As the kernel does, give up on a chain of links longer than this.
    let mut links_left = 40;
    let mut missing = Vec::new();
    let mut existing = absolute;
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                resolved.extend(missing.iter().rev());
                return Ok(resolved);
            }
            Err(_) if existing.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) => {
                links_left -= 1;
                let target =
                    std::fs::read_link(&existing).map_err(|e| format!("{} cannot be resolved: {e}", path.display()))?;
                if links_left == 0 {
                    return Err(format!("{} cannot be resolved: too many symlinks", path.display()));
                }
                // A relative target is relative to the link's directory.
                existing = existing.parent().map_or_else(|| target.clone(), |dir| dir.join(&target));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (Some(parent), Some(Component::Normal(name))) =
                    (existing.parent(), existing.components().next_back())
                else {
                    return Err(format!("{} cannot be resolved", path.display()));
                };
                missing.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            Err(e) => {
                return Err(format!("{} cannot be resolved: {e}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> PathVars {
        PathVars { workspace: "/w".into(), home: Some("/home/u".into()), tmpdir: "/tmp".into() }
    }

    #[test]
    fn resolves_variables() {
        assert_eq!(vars().resolve("${WORKSPACE}/src").unwrap(), Path::new("/w/src"));
        assert_eq!(vars().resolve("${HOME}/.cargo").unwrap(), Path::new("/home/u/.cargo"));
        assert_eq!(vars().resolve("${TMPDIR}").unwrap(), Path::new("/tmp"));
        assert_eq!(vars().resolve("/usr").unwrap(), Path::new("/usr"));
    }

    #[test]
    fn a_dangling_symlink_on_the_way_is_followed_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(dir.path().join("not-yet"), dir.path().join("link")).unwrap();
        assert_eq!(resolve_existing(&dir.path().join("link/cache/x")).unwrap(), real.join("not-yet/cache/x"));
        std::os::unix::fs::symlink("rel-target", dir.path().join("rel")).unwrap();
        assert_eq!(resolve_existing(&dir.path().join("rel/x")).unwrap(), real.join("rel-target/x"));
        std::os::unix::fs::symlink(dir.path().join("loop"), dir.path().join("loop")).unwrap();
        assert!(resolve_existing(&dir.path().join("loop/x")).is_err(), "a loop is an error");
        let fine = resolve_existing(&dir.path().join("missing/x")).unwrap();
        assert_eq!(fine, dir.path().canonicalize().unwrap().join("missing/x"));
    }

    #[test]
    fn refuses_what_it_cannot_resolve_exactly() {
        let no_home = PathVars { home: None, ..vars() };
        assert!(no_home.resolve("${HOME}/x").unwrap_err().contains("HOME is not set"));
        assert!(vars().resolve("${USER}/x").unwrap_err().contains("unknown variable ${USER}"));
        assert!(vars().resolve("${WORKSPACE").unwrap_err().contains("unclosed"));
        assert!(vars().resolve("relative/x").unwrap_err().contains("not absolute"));
    }
}
