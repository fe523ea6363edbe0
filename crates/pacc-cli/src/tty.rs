//! Reading a secret from the controlling terminal without echo.
//!
//! Echo is switched off *before* the prompt is written, so a fast typist (or a script
//! driving a pty) can never see the secret echoed between the prompt and the read — the
//! race `rpassword` 7 has, which our terminal test caught. The terminal's settings are
//! restored on every path out, including errors.

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};

/// A password longer than this is refused rather than buffered without bound.
const MAX_SECRET: u64 = 4096;

/// Restores the saved terminal attributes when dropped.
struct Restore<'a> {
    tty: &'a File,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty, OptionalActions::Now, &self.saved);
    }
}

/// Writes `prompt` to `/dev/tty` with echo off and reads one line from it.
pub fn prompt_hidden(prompt: &str) -> io::Result<String> {
    let tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let saved = tcgetattr(&tty)?;
    let mut hidden = saved.clone();
    hidden.local_modes.remove(LocalModes::ECHO);
    hidden.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&tty, OptionalActions::Now, &hidden)?;
    let _restore = Restore { tty: &tty, saved };
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    let mut line = String::new();
    BufReader::new((&tty).take(MAX_SECRET)).read_line(&mut line)?;
    if !line.ends_with('\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no end of line within {MAX_SECRET} bytes"),
        ));
    }
    line.truncate(line.trim_end_matches(['\r', '\n']).len());
    Ok(line)
}
