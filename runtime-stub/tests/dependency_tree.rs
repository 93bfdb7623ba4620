//! API boundary: the launcher links no YAML parser, no pest, no compiler, no clap.

use std::process::Command;

const FORBIDDEN: [&str; 7] =
    ["pest", "pest_derive", "saphyr", "saphyr-parser", "codespan-reporting", "clap", "capsule-compiler"];

#[test]
fn the_launcher_links_no_parser_and_no_compiler() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "-p", "capsule-launch", "-e", "normal", "--prefix", "none", "--offline", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).unwrap();
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(crates.contains(&"capsule-launch") && crates.contains(&"capsule-artifacts"), "{tree}");
    for crate_name in crates {
        let forbidden = FORBIDDEN.contains(&crate_name) || crate_name == "capsule-grammar";
        assert!(!forbidden, "capsule-launch depends on {crate_name}:\n{tree}");
    }
}
