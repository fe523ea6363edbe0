//! A one-line live status on stderr while network steps run (only on a terminal).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;

pub struct Progress {
    enabled: bool,
    active: Mutex<Vec<String>>,
}

impl Progress {
    /// Shows progress only if asked and stderr is a terminal.
    pub fn new(wanted: bool) -> Self {
        Progress {
            enabled: wanted && std::io::stderr().is_terminal(),
            active: Mutex::new(Vec::new()),
        }
    }

    pub fn update(&self, event: pacc::Progress) {
        if !self.enabled {
            return;
        }
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        match event {
            pacc::Progress::Started { step, target } => active.push(format!("{step} {target}")),
            pacc::Progress::Finished { step, target, .. } => {
                let label = format!("{step} {target}");
                active.retain(|a| *a != label);
            }
            _ => {}
        }
        let line = if active.is_empty() {
            String::new()
        } else {
            format!("… {}", active.join(" | "))
        };
        let width = 100;
        let shown: String = line.chars().take(width).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{shown}");
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
