//! The line `capsule profile` keeps on a terminal while it traces: `command 2 of 5
//! [00:00:03] 1234 syscalls: make test`, redrawn on each of the tracer's 100 ms ticks.
//!
//! Drawn with `console` rather than indicatif: indicatif's rate estimator calls `pow`,
//! which made the `capsule` binary load libm, and one more shared library cost every
//! `capsule run` about 0.07 ms of CPU (3% of a launch, docs/benchmarks.md) for a line
//! only `capsule profile` draws.

use console::Term;
use std::time::Instant;

pub struct Progress {
    /// Standard error, when it is a terminal and the line is wanted.
    term: Option<Term>,
    start: Instant,
    prefix: String,
    message: String,
}

impl Progress {
    pub fn new(wanted: bool) -> Self {
        let term = Term::stderr();
        let term = (wanted && term.is_term()).then_some(term);
        Progress { term, start: Instant::now(), prefix: String::new(), message: String::new() }
    }

    pub fn set_prefix(&mut self, prefix: String) {
        self.prefix = prefix;
        self.draw();
    }

    pub fn set_message(&mut self, message: String) {
        self.message = message;
        self.draw();
    }

    /// Runs `print`, which writes lines of its own, with the line cleared; then redraws it.
    pub fn suspend(&mut self, print: impl FnOnce()) {
        self.clear();
        print();
        self.draw();
    }

    pub fn finish_and_clear(&mut self) {
        self.clear();
        self.term = None;
    }

    fn clear(&self) {
        if let Some(term) = &self.term {
            let _ = term.clear_line();
        }
    }

    fn draw(&self) {
        let Some(term) = &self.term else { return };
        let secs = self.start.elapsed().as_secs();
        let line =
            format!("{} [{:02}:{:02}:{:02}] {}", self.prefix, secs / 3600, secs / 60 % 60, secs % 60, self.message);
        // One column spare, so that the cursor never wraps to a new line.
        let width = usize::from(term.size().1).saturating_sub(1);
        let _ = term.clear_line();
        let _ = term.write_str(&console::truncate_str(&line, width, "…"));
    }
}
