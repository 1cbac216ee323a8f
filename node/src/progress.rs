//! Progress of long work (import, export, verify) on stderr, only when stderr is a terminal: a
//! script that captures it gets the result alone. Cleared when done, so that what follows (the
//! result, an error) starts on a clean line.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Redraws per second at most.
const HZ: u8 = 8;

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Attestations (or other items).
    Items,
    /// Bytes (shown as KiB, MiB…).
    Bytes,
}

/// A progress bar: `what [=====>    ] done/total (pct %) eta`.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// `total` items to do; shown only on a terminal.
    pub fn new(what: &'static str, total: u64) -> Progress {
        Progress::with(
            what,
            Some(total),
            Unit::Items,
            std::io::stderr().is_terminal(),
        )
    }

    /// `total` (if known) of `unit` to do; shown only on a terminal.
    pub fn of(what: &'static str, total: Option<u64>, unit: Unit) -> Progress {
        Progress::with(what, total, unit, std::io::stderr().is_terminal())
    }

    /// Work of unknown length (a spinner that keeps turning while nothing is counted).
    pub fn waiting(what: &'static str) -> Progress {
        let p = Progress::with(what, None, Unit::Items, std::io::stderr().is_terminal());
        p.bar.enable_steady_tick(Duration::from_millis(120));
        p
    }

    fn with(what: &'static str, total: Option<u64>, unit: Unit, on: bool) -> Progress {
        let target = if on {
            ProgressDrawTarget::stderr_with_hz(HZ)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total, target);
        let counts = match unit {
            Unit::Items => "{human_pos}/{human_len}",
            Unit::Bytes => "{bytes}/{total_bytes}",
        };
        let template = match total {
            Some(_) => format!("{{msg}} [{{bar:30}}] {counts} ({{percent}} %) {{eta}}"),
            None => match unit {
                Unit::Items => "{msg} {spinner} {human_pos}".to_string(),
                Unit::Bytes => "{msg} {spinner} {bytes}".to_string(),
            },
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what);
        Progress { bar }
    }

    /// `n` more done.
    pub fn add(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Done so far.
    #[cfg(test)]
    fn done(&self) -> u64 {
        self.bar.position()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_counts_up_to_the_total_and_draws_nothing_off_a_terminal() {
        let p = Progress::with("importing", Some(4_000), Unit::Items, false);
        assert!(p.bar.is_hidden());
        assert_eq!(p.done(), 0);
        p.add(2_000);
        assert_eq!(p.done(), 2_000);
        p.add(2_000);
        assert_eq!((p.done(), p.bar.length()), (4_000, Some(4_000)));
        let spin = Progress::with("exporting", None, Unit::Bytes, false);
        spin.add(10);
        assert_eq!((spin.done(), spin.bar.length()), (10, None));
    }
}
