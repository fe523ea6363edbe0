//! A live status line on stderr while network steps run (only where
//! [`crate::term::progress_allowed`]): an `indicatif` spinner that fits the terminal's width
//! and is erased completely when done.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The steps running now, shown on one line.
pub struct Progress {
    bar: Option<ProgressBar>,
    active: Mutex<Vec<String>>,
}

impl Progress {
    /// Shows progress only if `wanted` and the terminal allows it.
    pub fn new(wanted: bool) -> Self {
        let bar = (wanted && crate::term::progress_allowed()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            active: Mutex::new(Vec::new()),
        }
    }

    /// A discovery step started or finished.
    pub fn update(&self, event: pacc::Progress) {
        let Some(bar) = &self.bar else { return };
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
        bar.set_message(pacc_proto::name::escape_for_terminal(&active.join(" | ")));
    }

    /// Show `message` (a phase: "probing 8 services").
    pub fn set(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(pacc_proto::name::escape_for_terminal(message));
        }
    }

    /// Erase the line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
