//! The macOS back-end's cost: `build::build` of the built-in default policy for the
//! Linux x86_64 target alone, for macOS alone (profile, emission, parse-back and
//! validation), and for both, in process, minimum of N runs; and the size of the
//! profile and the number of decisions its validation compared.

use capsule_artifacts::Target;
use capsule_compiler::build::{BuildOptions, build};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Options {
    /// Runs per configuration (the minimum is reported).
    #[arg(long, default_value_t = 50)]
    runs: usize,
}

const POLICY: &str = include_str!("../../cli/src/default-policy.yaml");

fn min_time(runs: usize, targets: &[Target]) -> anyhow::Result<Duration> {
    let options = BuildOptions { targets: targets.to_vec() };
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let built = build(POLICY.as_bytes(), &options).map_err(|e| anyhow::anyhow!("{e}"))?;
        best = best.min(start.elapsed());
        std::hint::black_box(built);
    }
    Ok(best)
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let linux = min_time(options.runs, &[Target::LinuxX86_64])?;
    let macos = min_time(options.runs, &[Target::Macos])?;
    let both = min_time(options.runs, &[Target::LinuxX86_64, Target::Macos])?;
    let built =
        build(POLICY.as_bytes(), &BuildOptions { targets: vec![Target::Macos] }).map_err(|e| anyhow::anyhow!("{e}"))?;
    let probes = built.macos_validation.as_ref().map_or(0, |r| r.probes);
    let size = built.files.get("macos.sb").map_or(0, Vec::len);
    // The mapping and emission alone, without parse-back and validation.
    let policy = capsule_compiler::front::check(POLICY).policy.ok_or_else(|| anyhow::anyhow!("policy errors"))?;
    let facts = capsule_compiler::back::sbpl::SyscallFacts::of(&policy);
    let mut emit_only = Duration::MAX;
    for _ in 0..options.runs {
        let start = Instant::now();
        let profile =
            capsule_compiler::back::sbpl::map::profile(&policy, &facts).map_err(|e| anyhow::anyhow!("{e}"))?;
        std::hint::black_box(capsule_compiler::back::sbpl::emit::emit(&profile));
        emit_only = emit_only.min(start.elapsed());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("`build::build` of cli/src/default-policy.yaml, in process, min of {} runs:", options.runs);
    println!();
    println!("| targets | time | ratio to linux-x86_64 |");
    println!("|---|---:|---:|");
    for (name, t) in [("linux-x86_64", linux), ("macos", macos), ("linux-x86_64 + macos", both)] {
        println!("| {name} | {:.2} ms | {:.2}x |", ms(t), t.as_secs_f64() / linux.as_secs_f64());
    }
    println!();
    println!("macos.sb: {size} bytes; validation compared {probes} decisions");
    println!("mapping and emission alone: {:.3} ms", ms(emit_only));
    Ok(())
}
