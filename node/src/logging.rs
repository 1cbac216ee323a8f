//! The daemon's log: tracing to stderr through a writer that cannot fail.
//!
//! tracing-subscriber reports a failed write of a log line with `eprintln!`, which panics when
//! stderr cannot be written (a full disk under a redirected log, a closed pipe): the task that
//! logged dies (it was the API's store writer and the network's event loop). A lost log line
//! must never cost a write or a connection, so [`LossyStderr`] swallows write errors, counts
//! the lines lost and says how many once stderr takes lines again.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;

/// Log lines that could not be written since the last one that could.
static LOST_LINES: AtomicU64 = AtomicU64::new(0);

/// How many log lines were lost and not yet reported.
#[cfg(test)]
pub fn lost_lines() -> u64 {
    LOST_LINES.load(Ordering::Relaxed)
}

/// A [`MakeWriter`] over any sink (stderr in the daemon) whose writes never fail.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl<'a> MakeWriter<'a> for LossyStderr {
    type Writer = Lossy<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Lossy(io::stderr())
    }
}

/// A writer that reports success whatever its sink does (see the module doc).
#[derive(Debug)]
pub struct Lossy<W>(pub W);

impl<W: Write> Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter writes one whole line per `write_all`: one call, one line.
        let lost = LOST_LINES.load(Ordering::Relaxed);
        if lost > 0
            && self
                .0
                .write_all(
                    format!(
                        "passalong: {lost} log lines were lost (the log could not be written)\n"
                    )
                    .as_bytes(),
                )
                .is_ok()
        {
            LOST_LINES.fetch_sub(lost, Ordering::Relaxed);
        }
        if self.0.write_all(buf).is_err() {
            LOST_LINES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Installs the daemon's subscriber: `filter`, ANSI colours on a terminal, lossy stderr.
pub fn init(filter: tracing_subscriber::EnvFilter) {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(LossyStderr)
        // Its own report of a failed write is an `eprintln!`, the panic this module avoids.
        .log_internal_errors(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/full` answers every write with ENOSPC, as a full disk does.
    #[test]
    fn a_full_log_device_loses_lines_without_failing_or_panicking() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        assert!(
            (&full).write_all(b"x\n").is_err(),
            "/dev/full refuses writes"
        );
        let before = lost_lines();
        let mut w = Lossy(full);
        for _ in 0..3 {
            w.write_all(b"a log line\n").expect("never fails");
        }
        w.flush().expect("never fails");
        assert!(lost_lines() >= before + 3);

        // A subscriber on the full device logs without panicking (its default reports the
        // failed write with `eprintln!`; under a full stderr that is the panic).
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| {
                Lossy(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open("/dev/full")
                        .expect("/dev/full"),
                )
            })
            .log_internal_errors(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(answer = 42, "to a full disk");
        });

        // Once the sink takes lines again, it says how many were lost.
        let mut back = Lossy(Vec::new());
        back.write_all(b"next\n").unwrap();
        let text = String::from_utf8(back.0).unwrap();
        assert!(text.contains("log lines were lost"), "{text}");
        assert!(text.ends_with("next\n"), "{text}");
        assert_eq!(lost_lines(), 0);
    }
}
