//! The compiler's source identity (`build::source_id`), for `capsule run`'s compile
//! cache: a cached artifact must not outlive a change to the code that compiled it,
//! and a fix that adds deny rules need not change the version number or the manifest
//! format. It is the blake3 of every file under the `src` directories of this crate
//! and of the crates whose code decides an artifact's bytes, of their manifests and of
//! the workspace's lock file, in path order, so the same sources give the same identity
//! on every machine.

use std::path::{Path, PathBuf};

fn main() {
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = crate_dir.parent().expect("the crate lies in the workspace");
    // A sibling missing (a packaged source without the workspace) is left out.
    let roots: Vec<PathBuf> = [crate_dir.join("src"), workspace.join("artifacts/src"), workspace.join("grammar/src")]
        .into_iter()
        .filter(|dir| dir.is_dir())
        .collect();
    let mut files = Vec::new();
    for root in &roots {
        println!("cargo::rerun-if-changed={}", root.display());
        collect(root, &mut files);
    }
    // What else decides the compiled code: this script, the crates' manifests (features)
    // and the lock file (the versions of the YAML parser, pest, serde, ...).
    let manifests = [
        crate_dir.join("build.rs"),
        crate_dir.join("Cargo.toml"),
        workspace.join("artifacts/Cargo.toml"),
        workspace.join("grammar/Cargo.toml"),
        workspace.join("Cargo.toml"),
        workspace.join("Cargo.lock"),
    ];
    for file in manifests.into_iter().filter(|file| file.is_file()) {
        println!("cargo::rerun-if-changed={}", file.display());
        files.push(file);
    }
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for file in &files {
        let relative = file.strip_prefix(workspace).unwrap_or(file);
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update(&[0]);
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    println!("cargo::rustc-env=CAPSULE_COMPILER_SOURCE_ID={}", hasher.finalize().to_hex());
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
