//! capsule-launch: apply a pinned artifact and run a command as its parent.
//! Everything lives in the library so `capsule run` takes the same code path.

fn main() {
    std::process::exit(capsule_launch::cli::main(std::env::args_os().skip(1)));
}
