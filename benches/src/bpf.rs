//! `capsule-bench bpf`: the quality of the BPF program each compiler makes of Docker's
//! and podman's default profiles (x86_64, each engine's default capabilities), its
//! cost on the real kernel, and how long `capsulec build` takes. The profiles come
//! from their Debian packages (`compiler/tests/profiles/mod.rs`). docs/benchmarks.md
//! has the results.

use crate::kernel::{self, Call, Returned};
use crate::libseccomp::{LibSeccomp, Spec, spec_from_oci};
use crate::profiles::{self, Profile};
use crate::seccompiler_filter;
use anyhow::{Context, bail, ensure};
use capsule_artifacts::Target;
use capsule_compiler::back::bpf::action_ret;
use capsule_compiler::bpf::cache::kernel_would_cache;
use capsule_compiler::bpf::interp::{Program, SeccompData};
use capsule_compiler::build::{BuildOptions, build};
use capsule_compiler::ir::{self, Action, Policy};
use capsule_compiler::oci::{ImportOptions, import_oci};
use capsule_compiler::{tables, valid};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TARGET: Target = Target::LinuxX86_64;

#[derive(clap::Args)]
pub struct Options {
    /// The packaged OCI profiles to measure, in order: `docker`, `podman` (read in
    /// place from their Debian packages, or from the path in CAPSULE_DOCKER_PROFILE /
    /// CAPSULE_PODMAN_PROFILE; never copied into the project).
    #[arg(long, value_delimiter = ',', default_value = "docker,podman")]
    profile: Vec<ProfileName>,
    /// System calls per kernel measurement.
    #[arg(long, default_value_t = 1_000_000)]
    iterations: u64,
    /// Kernel measurements per filter and call (the minimum is reported).
    #[arg(long, default_value_t = 5)]
    repeats: u32,
    /// `capsulec build` runs (the minimum is reported).
    #[arg(long, default_value_t = 20)]
    compile_runs: u32,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ProfileName {
    Docker,
    Podman,
}

impl ProfileName {
    fn profile(self) -> Profile {
        match self {
            ProfileName::Docker => profiles::DOCKER,
            ProfileName::Podman => profiles::PODMAN,
        }
    }
}

/// One compiler's program and what we measured on it.
struct Filter {
    name: &'static str,
    program: Program,
}

/// The numbers of the target's table, sorted by what the profile decides.
struct Reference {
    policy: Policy,
    /// Allowed with zero arguments.
    allowed: Vec<u32>,
    /// Allowed whatever the arguments (no argument rule): what the cache may skip.
    arg_free_allowed: Vec<u32>,
    /// Syscalls with an argument rule.
    arg_checked: Vec<u32>,
    /// Denied with zero arguments, in the table.
    denied: Vec<u32>,
}

impl Reference {
    fn new(policy: Policy) -> anyhow::Result<Reference> {
        let info = valid::verify(&policy).context("the imported policy verifies")?;
        let arg_checked = info.target(TARGET).context("x86_64 in the policy")?.arg_checked.clone();
        let arch = TARGET.audit_arch().unwrap();
        let (mut allowed, mut denied) = (Vec::new(), Vec::new());
        for nr in 0..=tables::table(TARGET).max_nr {
            let d = ir::decide(&policy, TARGET, &ir::Call { arch, nr, args: [0; 6] });
            if d.action == Action::Allow { allowed.push(nr) } else { denied.push(nr) }
        }
        let arg_free_allowed = allowed.iter().copied().filter(|nr| !arg_checked.contains(nr)).collect();
        Ok(Reference { policy, allowed, arg_free_allowed, arg_checked: arg_checked.into_iter().collect(), denied })
    }

    fn expected(&self, data: &SeccompData) -> u32 {
        let call = ir::Call { arch: data.arch, nr: data.nr, args: data.args };
        action_ret(ir::decide(&self.policy, TARGET, &call).action)
    }
}

fn data(nr: u32) -> SeccompData {
    SeccompData { nr, arch: TARGET.audit_arch().unwrap(), instruction_pointer: 0, args: [0; 6] }
}

fn path_len(program: &Program, nr: u32) -> usize {
    program.run(&data(nr)).path.len()
}

fn mean_max(program: &Program, nrs: &[u32]) -> (f64, usize) {
    let lens: Vec<usize> = nrs.iter().map(|&nr| path_len(program, nr)).collect();
    (lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64, lens.iter().copied().max().unwrap_or(0))
}

fn syscall_name(nr: u32) -> &'static str {
    tables::table(TARGET).by_nr(nr).map_or("(no syscall)", |d| d.name())
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    println!("# capsule-bench bpf");
    for name in &options.profile {
        println!();
        run_profile(&name.profile(), options)?;
    }
    Ok(())
}

fn run_profile(profile: &Profile, options: &Options) -> anyhow::Result<()> {
    let path = profile.path();
    let json = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read the {} profile {}: install {} or set {}",
            profile.name,
            path.display(),
            profile.package,
            profile.env
        )
    })?;
    let import_options = ImportOptions { caps: profile.cap_set(), ..ImportOptions::new(TARGET) };
    let imported = import_oci(&json, &import_options).context("import the profile")?;
    let yaml = imported.yaml.into_bytes();
    let artifacts =
        build(&yaml, &BuildOptions { targets: vec![TARGET] }).map_err(|e| anyhow::anyhow!("capsulec build: {e}"))?;
    let reference = Reference::new(artifacts.policy.clone())?;

    let capsule = Program::from_bytes(&artifacts.files[TARGET.artifact_file()])?;
    let helper = LibSeccomp::build().map_err(|reason| anyhow::anyhow!("libseccomp unavailable: {reason}"))?;
    let oci: serde_json::Value = serde_json::from_str(&json)?;
    let kernel_version = import_options.kernel;
    let spec =
        spec_from_oci(&oci, TARGET, &profile.cap_set(), kernel_version, action_ret(reference.policy.foreign_arch))
            .map_err(|e| anyhow::anyhow!("libseccomp spec: {e}"))?;
    let linear = helper.export(&spec);
    let tree = helper.export(&Spec { optimize: 2, ..spec });
    let seccompiler = seccompiler_filter::build(&reference.policy, TARGET)?;

    let filters = [
        Filter { name: "capsulec", program: capsule },
        Filter { name: "libseccomp", program: Program::from_bytes(&linear.bpf)? },
        Filter { name: "libseccomp tree", program: Program::from_bytes(&tree.bpf)? },
        Filter { name: "seccompiler", program: Program::new(seccompiler.program)? },
    ];

    println!("## {}", profile.name);
    println!();
    println!(
        "Profile: {} (Debian package {}) imported for {} with capabilities {}.",
        path.display(),
        profile.package,
        TARGET.name(),
        profile.caps.join(", ")
    );
    println!(
        "Machine: {} cores, Linux {}; libseccomp {}; seccompiler 0.5.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel_release(),
        LibSeccomp::version()
    );
    println!(
        "Allowed numbers (args 0): {}, of which argument-free: {}; argument-checked syscalls: {}; denied numbers in the table: {}.",
        reference.allowed.len(),
        reference.arg_free_allowed.len(),
        reference.arg_checked.len(),
        reference.denied.len()
    );
    println!();
    quality(&filters, &reference);
    for note in &seccompiler.notes {
        println!("seccompiler: {note}");
    }
    for name in linear.unknown.iter().filter(|n| tables::table(TARGET).by_name(n).is_some()) {
        println!("libseccomp: does not know {name}, so its rule is dropped");
    }
    println!();
    kernel_cost(&filters, &reference, options)?;
    println!();
    compile_time(&yaml, options)?;
    Ok(())
}

fn quality(filters: &[Filter], reference: &Reference) {
    let arg_names: Vec<&str> = reference.arg_checked.iter().map(|&nr| syscall_name(nr)).collect();
    println!(
        "| compiler | instructions | allowed: mean path | allowed: max path | arg-free allowed: mean / max | arg-free allowed cacheable | arg-checked path ({}) | denied: mean path | denied: max path | above table | decisions ≠ profile (args 0) |",
        arg_names.join(", ")
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let arch = TARGET.audit_arch().unwrap();
    let above = tables::table(TARGET).max_nr + 1;
    for f in filters {
        let (mean, max) = mean_max(&f.program, &reference.allowed);
        let (free_mean, free_max) = mean_max(&f.program, &reference.arg_free_allowed);
        let (denied_mean, denied_max) = mean_max(&f.program, &reference.denied);
        let cached = reference.arg_free_allowed.iter().filter(|&&nr| kernel_would_cache(&f.program, arch, nr)).count();
        let arg_paths: Vec<String> =
            reference.arg_checked.iter().map(|&nr| path_len(&f.program, nr).to_string()).collect();
        let wrong = (0..=above)
            .map(data)
            .filter(|d| f.program.run(d).ret != reference.expected(d))
            .map(|d| if d.nr == above { "(above table)" } else { syscall_name(d.nr) })
            .collect::<Vec<_>>();
        println!(
            "| {} | {} | {mean:.1} | {max} | {free_mean:.1} / {free_max} | {cached}/{} ({:.0}%) | {} | {denied_mean:.1} | {denied_max} | {} | {} |",
            f.name,
            f.program.insns().len(),
            reference.arg_free_allowed.len(),
            100.0 * cached as f64 / reference.arg_free_allowed.len().max(1) as f64,
            arg_paths.join(", "),
            path_len(&f.program, above),
            if wrong.is_empty() { "0".to_owned() } else { format!("{} ({})", wrong.len(), wrong.join(", ")) },
        );
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or("?".into(), |s| s.trim().to_owned())
}

/// The calls timed on the kernel: none reads or writes user memory. The denied call
/// is `reboot` where the profile denies it (Docker's) and else `nfsservctl` (podman's
/// allows `reboot`); both fail harmlessly unfiltered (EINVAL or EPERM, ENOSYS).
fn kernel_calls(reference: &Reference) -> anyhow::Result<Vec<(String, Call)>> {
    let table = tables::table(TARGET);
    let nr = |name: &str| table.by_name(name).map(|d| d.nr).with_context(|| format!("{name} not in the table"));
    let personality = nr("personality")?;
    let getppid = nr("getppid")?;
    let denied = ["reboot", "nfsservctl"]
        .into_iter()
        .find(|name| nr(name).is_ok_and(|n| reference.denied.contains(&n)))
        .context("the profile allows both reboot and nfsservctl")?;
    ensure!(reference.arg_checked.contains(&personality), "personality has no argument rule in this profile");
    ensure!(reference.arg_free_allowed.contains(&getppid), "getppid is not allowed without conditions");
    Ok(vec![
        // 0xffffffff only queries the persona; the profile allows it after an argument test.
        (
            "personality(0xffffffff): arg-checked, allowed".into(),
            Call { nr: personality.into(), args: [0xffff_ffff, 0, 0, 0, 0, 0] },
        ),
        (format!("{denied}(0, 0, 0, 0): denied"), Call { nr: nr(denied)?.into(), args: [0; 6] }),
        ("getppid(): allowed, no arguments".into(), Call { nr: getppid.into(), args: [0; 6] }),
    ])
}

fn kernel_cost(filters: &[Filter], reference: &Reference, options: &Options) -> anyhow::Result<()> {
    let insns = |name: &str| filters.iter().find(|f| f.name == name).map(|f| f.program.insns().to_vec()).unwrap();
    let capsule = insns("capsulec");
    let tree = insns("libseccomp tree");
    let configs: [(&str, Option<&[_]>); 3] =
        [("no filter", None), ("capsulec", Some(&capsule)), ("libseccomp tree", Some(&tree))];
    println!(
        "Real kernel, ns per call (min of {} runs of {} calls each, in forked children, configurations interleaved):",
        options.repeats, options.iterations
    );
    println!();
    println!("| call | no filter | capsulec | libseccomp tree | capsulec / no filter | libseccomp tree / no filter |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, call) in kernel_calls(reference)? {
        let mut best = [f64::INFINITY; 3];
        for _ in 0..options.repeats {
            for (i, (name, filter)) in configs.iter().enumerate() {
                let (ns, returned) = kernel::ns_per_call(*filter, call, options.iterations)?;
                if filter.is_some() {
                    check_outcome(name, call, returned, reference)?;
                }
                best[i] = best[i].min(ns);
            }
        }
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            best[0],
            best[1],
            best[2],
            best[1] / best[0],
            best[2] / best[0]
        );
    }
    Ok(())
}

/// The filter really did what the profile says: allowed calls ran, denied ones got
/// the profile's errno for that call.
fn check_outcome(filter: &str, call: Call, returned: Returned, reference: &Reference) -> anyhow::Result<()> {
    let nr = u32::try_from(call.nr)?;
    let ir_call = ir::Call { arch: TARGET.audit_arch().unwrap(), nr, args: call.args };
    let ok = match ir::decide(&reference.policy, TARGET, &ir_call).action {
        Action::Errno(e) => returned == Returned { ret: -1, errno: i32::from(e) },
        Action::Allow => !(returned.ret == -1 && returned.errno == denied_errno(reference)),
        other => bail!("the benchmark expects errno or allow, not {other}"),
    };
    ensure!(ok, "{filter}: {} returned {returned:?} under the filter", syscall_name(nr));
    Ok(())
}

/// The errno the profile denies with by default (what an allowed call must not get).
fn denied_errno(reference: &Reference) -> i32 {
    match reference.policy.default {
        Action::Errno(e) => i32::from(e),
        _ => 0,
    }
}

/// Where `capsulec` is: next to this binary (same profile), else built with cargo.
fn capsulec_binary() -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe()?;
    let sibling = here.with_file_name("capsulec");
    if sibling.exists() {
        return Ok(sibling);
    }
    let profile = if here.parent().is_some_and(|d| d.ends_with("release")) { "--release" } else { "--profile=dev" };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", profile, "-p", "capsule-compiler", "--bin", "capsulec"])
        .status()
        .context("run cargo to build capsulec")?;
    ensure!(status.success() && sibling.exists(), "could not build capsulec");
    Ok(sibling)
}

fn compile_time(yaml: &[u8], options: &Options) -> anyhow::Result<()> {
    let runs = options.compile_runs.max(1);
    let mut in_process = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let artifacts = build(yaml, &BuildOptions::default()).map_err(|e| anyhow::anyhow!("capsulec build: {e}"))?;
        in_process = in_process.min(start.elapsed());
        std::hint::black_box(artifacts);
    }
    let capsulec = capsulec_binary()?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("docker-default.capsule.yaml");
    std::fs::write(&policy, yaml)?;
    let mut process = Duration::MAX;
    for i in 0..runs {
        let out = dir.path().join(format!("out{i}"));
        let start = Instant::now();
        let result = Command::new(&capsulec).arg("build").arg(&policy).arg("-o").arg(&out).output()?;
        process = process.min(start.elapsed());
        ensure!(result.status.success(), "capsulec build failed: {}", String::from_utf8_lossy(&result.stderr));
    }
    println!("`capsulec build` on the imported profile (translation validation included), min of {runs} runs:");
    println!();
    println!("| how | time |");
    println!("|---|---:|");
    println!("| in process (`build::build`) | {:.2} ms |", in_process.as_secs_f64() * 1e3);
    println!("| as a process (`{} build POLICY -o DIR`) | {:.2} ms |", short(&capsulec), process.as_secs_f64() * 1e3);
    Ok(())
}

fn short(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}
