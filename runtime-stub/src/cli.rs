//! The `capsule-launch` binary: parse, verify, launch, exit.

use crate::args::{self, Parsed};
use crate::audit::record_refusal;
use crate::{EXIT_SETUP_FAILURE, LaunchOptions, launch};
use capsule_artifacts::Target;
use capsule_artifacts::manifest::load_pinned;
use std::ffi::OsString;

/// Runs the launcher with `args` (without the program name); returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args = match args::parse(args) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return 0;
        }
        Ok(Parsed::Version) => {
            println!("capsule-launch {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Err(e) => {
            eprintln!("capsule-launch: {e}");
            return EXIT_SETUP_FAILURE;
        }
    };
    let Some(target) = Target::host() else {
        eprintln!("capsule-launch: this host is not a platform capsule supports");
        return EXIT_SETUP_FAILURE;
    };
    let artifact = match load_pinned(&args.manifest, args.pin.as_deref(), target) {
        Ok(artifact) => artifact,
        Err(e) => {
            let reason = format!("refusing to run: {e}");
            eprintln!("capsule-launch: {reason}");
            // A tampered or unpinned artifact is evidence too.
            if let Some(log) = &args.log
                && let Err(e) = record_refusal(log, &args.command, &reason, &args.manifest, args.pin.as_deref())
            {
                eprintln!("capsule-launch: the refusal is not in the audit log: {e}");
            }
            return EXIT_SETUP_FAILURE;
        }
    };
    let verbose = args.verbose || args.explain;
    if verbose && args.pin.is_none() {
        eprintln!("capsule-launch: no --pin given: trusting the manifest as found (its pin is {})", artifact.pin);
    }
    if verbose && args.log.is_none() {
        eprintln!("capsule-launch: no --log given: this invocation is not audited");
    }
    let options = LaunchOptions {
        command: args.command,
        workspace: args.workspace,
        log: args.log,
        // No syscall table here: records carry numbers, `capsule log show` names them.
        names: None,
        verbose: args.verbose,
        explain: args.explain,
        announce_fd: None,
    };
    let outcome = launch(&artifact, &options);
    if let Some(failure) = &outcome.failure {
        eprintln!("capsule-launch: {}", failure.message);
    }
    outcome.exit_code
}
