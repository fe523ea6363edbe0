//! Reading a secret from the controlling terminal without echo.
//!
//! Echo is switched off *before* the prompt is written, so a fast typist (or a script
//! driving a pty) can never see the secret echoed between the prompt and the read — the
//! race `rpassword` 7 has, which our terminal test caught. The terminal's settings are
//! restored on every path out, including errors.

use rustix::termios::{
    LocalModes, OptionalActions, SpecialCodeIndex, Termios, tcgetattr, tcsetattr,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};

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
///
/// The terminal is put in non-canonical mode without signals so that the line is edited
/// here: Backspace/Delete removes one character, Ctrl-U clears, Enter ends the line,
/// Ctrl-C cancels ([`io::ErrorKind::Interrupted`]) and Ctrl-D on an empty line is end of
/// input. Because Ctrl-C is read rather than delivered as SIGINT, the terminal is always
/// restored; a signal from elsewhere would still leave echo off.
pub fn prompt_hidden(prompt: &str) -> io::Result<String> {
    let tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let saved = tcgetattr(&tty)?;
    let mut raw = saved.clone();
    raw.local_modes
        .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
    raw.special_codes[SpecialCodeIndex::VMIN] = 1;
    raw.special_codes[SpecialCodeIndex::VTIME] = 0;
    tcsetattr(&tty, OptionalActions::Now, &raw)?;
    let restore = Restore { tty: &tty, saved };
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    let line = read_line(&mut std::io::BufReader::new(&tty).bytes());
    drop(restore);
    let _ = (&tty).write_all(b"\n");
    line
}

/// The line editor behind [`prompt_hidden`], over any byte source (unit-tested).
fn read_line(input: &mut dyn Iterator<Item = io::Result<u8>>) -> io::Result<String> {
    let mut line: Vec<u8> = Vec::new();
    loop {
        let Some(byte) = input.next() else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the terminal closed before the end of the line",
            ));
        };
        match byte? {
            b'\r' | b'\n' => break,
            0x03 => return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled")),
            0x04 if line.is_empty() => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"));
            }
            0x7f | 0x08 => {
                // Remove one whole UTF-8 character: continuation bytes, then its lead.
                while line.last().is_some_and(|b| b & 0xC0 == 0x80) {
                    line.pop();
                }
                line.pop();
            }
            0x15 => line.clear(),
            b => {
                if line.len() as u64 >= MAX_SECRET {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("longer than {MAX_SECRET} bytes"),
                    ));
                }
                line.push(b);
            }
        }
    }
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(keys: &[u8]) -> io::Result<String> {
        read_line(&mut keys.iter().map(|&b| Ok(b)))
    }

    #[test]
    fn editing_keys_act_on_whole_characters() {
        assert_eq!(edit(b"secret\r").unwrap(), "secret");
        assert_eq!(edit(b"secrex\x7ft\n").unwrap(), "secret");
        assert_eq!(
            edit("pässw\u{f6}\x7f\x7fword\n".as_bytes()).unwrap(),
            "pässword"
        );
        assert_eq!(edit(b"wrong\x15right\n").unwrap(), "right");
        assert_eq!(edit(b"\x7f\x7fok\n").unwrap(), "ok");
    }

    #[test]
    fn control_keys_cancel_or_end() {
        assert_eq!(
            edit(b"sec\x03ret\n").unwrap_err().kind(),
            io::ErrorKind::Interrupted
        );
        assert_eq!(
            edit(b"\x04").unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            edit(b"no newline").unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let long = vec![b'a'; MAX_SECRET as usize + 1];
        assert_eq!(edit(&long).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            edit(b"\xff\n").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
