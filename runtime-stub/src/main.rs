//! capsule-launch: apply a pinned artifact and run a command as its parent.
//! Everything lives in the library so `capsule run` takes the same code path.
// Started by the C runtime's `main` below, not Rust's (capsule_launch::entry says why).
#![cfg_attr(not(test), no_main)]

// SAFETY: the one C entry point of this binary, called once by the C runtime; std
// reads the arguments itself, and `entry::run` sets up what Rust's start-up would.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    capsule_launch::entry::run(|| capsule_launch::cli::main(std::env::args_os().skip(1)))
}
