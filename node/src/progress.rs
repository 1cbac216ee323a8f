//! Progress of long work (an import) on stderr, only when stderr is a terminal: a script that
//! captures it gets the result alone.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const EVERY: Duration = Duration::from_millis(200);

/// A `what: done/total (pct %)` line redrawn in place; erased when dropped.
pub struct Progress {
    what: &'static str,
    total: u64,
    done: u64,
    on: bool,
    shown: Option<Instant>,
}

impl Progress {
    /// Shown only on a terminal.
    pub fn new(what: &'static str, total: u64) -> Progress {
        Progress::with(what, total, std::io::stderr().is_terminal())
    }

    fn with(what: &'static str, total: u64, on: bool) -> Progress {
        Progress {
            what,
            total,
            done: 0,
            on,
            shown: None,
        }
    }

    /// `n` more done.
    pub fn add(&mut self, n: u64) {
        self.done = (self.done + n).min(self.total);
        if self.on && self.shown.is_none_or(|t| t.elapsed() >= EVERY) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}", self.line());
            let _ = err.flush();
            self.shown = Some(Instant::now());
        }
    }

    fn line(&self) -> String {
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        format!("{}: {}/{} ({pct} %)", self.what, self.done, self.total)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.on && self.shown.is_some() {
            // Erase the line: what follows (the result, an error) starts clean.
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_up_to_the_total() {
        let mut p = Progress::with("importing", 4_000, false);
        assert_eq!(p.line(), "importing: 0/4000 (0 %)");
        p.add(2_000);
        assert_eq!(p.line(), "importing: 2000/4000 (50 %)");
        p.add(5_000);
        assert_eq!(p.line(), "importing: 4000/4000 (100 %)");
        assert!(p.shown.is_none(), "off: nothing drawn");
        assert_eq!(Progress::with("x", 0, false).line(), "x: 0/0 (100 %)");
    }
}
