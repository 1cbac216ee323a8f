//! A password for the key-file commands (`member export-key`, `init --import-key`): from a
//! file (`--password-file`, its first line), from an environment variable (scripts), or
//! typed at the terminal without echo.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

/// The environment variable scripts give the password in.
pub const ENV: &str = "PASSALONG_KEY_PASSWORD";

/// The password: `file`'s first line, else `$PASSALONG_KEY_PASSWORD`, else typed at the
/// terminal after `prompt` (not echoed).
pub fn read(prompt: &str, file: Option<&Path>) -> Result<Zeroizing<String>> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the password file {}", f.display()))?,
        );
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            bail!("the password file {} is empty", f.display());
        }
        return Ok(Zeroizing::new(line.to_string()));
    }
    if let Some(p) = std::env::var_os(ENV) {
        let p = p
            .into_string()
            .map_err(|_| anyhow::anyhow!("{ENV} is not UTF-8"))?;
        return Ok(Zeroizing::new(p));
    }
    from_terminal(prompt)
}

/// Reads a line from the controlling terminal with echo off (restored after, whatever
/// happens).
fn from_terminal(prompt: &str) -> Result<Zeroizing<String>> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .with_context(|| {
            format!("no terminal to ask the password on: pass --password-file FILE or set {ENV}")
        })?;
    let before = rustix::termios::tcgetattr(&tty).context("cannot read the terminal's mode")?;
    let mut quiet = before.clone();
    quiet.local_modes -= rustix::termios::LocalModes::ECHO;
    rustix::termios::tcsetattr(&tty, rustix::termios::OptionalActions::Flush, &quiet)
        .context("cannot turn the terminal's echo off")?;
    let read = (|| -> std::io::Result<Zeroizing<String>> {
        let mut w = &tty;
        w.write_all(prompt.as_bytes())?;
        w.flush()?;
        let mut line = Zeroizing::new(String::new());
        std::io::BufReader::new(&tty).read_line(&mut line)?;
        w.write_all(b"\n")?;
        Ok(line)
    })();
    let restored =
        rustix::termios::tcsetattr(&tty, rustix::termios::OptionalActions::Flush, &before);
    let line = read.context("cannot read the password from the terminal")?;
    restored.context("cannot turn the terminal's echo back on")?;
    let p = line.trim_end_matches(['\n', '\r']);
    if p.is_empty() {
        bail!("no password given");
    }
    Ok(Zeroizing::new(p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "correct horse battery\nsecond line\n").unwrap();
        assert_eq!(
            read("", Some(&f)).unwrap().as_str(),
            "correct horse battery"
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(format!("{:#}", read("", Some(&f)).unwrap_err()).contains("is empty"));
        let e = read("", Some(&dir.path().join("none"))).unwrap_err();
        assert!(format!("{e:#}").contains("cannot read the password file"));
    }
}
