//! Terminal etiquette: where colour goes (`--color`, `NO_COLOR`, `CLICOLOR_FORCE`, per
//! stream), whether progress is shown (only on a terminal, never in CI or with `--quiet`),
//! and what `--quiet` silences (progress and informational lines; never results, warnings,
//! errors or prompts).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_COLOR: AtomicBool = AtomicBool::new(false);
static STDERR_COLOR: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// Colour where the stream is a terminal, unless `NO_COLOR` is set (or
    /// `CLICOLOR_FORCE` asks for it anyway).
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

fn decide(when: ColorWhen, is_terminal: bool) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            if env_set("NO_COLOR") {
                false
            } else if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0")
            {
                true
            } else {
                is_terminal && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

/// Decide once, at start.
pub fn init(when: ColorWhen, quiet: bool) {
    STDOUT_COLOR.store(
        decide(when, std::io::stdout().is_terminal()),
        Ordering::SeqCst,
    );
    STDERR_COLOR.store(
        decide(when, std::io::stderr().is_terminal()),
        Ordering::SeqCst,
    );
    QUIET.store(quiet, Ordering::SeqCst);
}

/// Whether stderr gets colour (also the logs' ANSI codes).
pub fn stderr_color() -> bool {
    STDERR_COLOR.load(Ordering::SeqCst)
}

/// Whether stdout gets colour.
pub fn stdout_color() -> bool {
    STDOUT_COLOR.load(Ordering::SeqCst)
}

/// `--quiet`.
pub fn quiet() -> bool {
    QUIET.load(Ordering::SeqCst)
}

/// Whether a live progress display may be drawn: stderr is a terminal, not dumb, not CI,
/// not `--quiet`.
pub fn progress_allowed() -> bool {
    !quiet()
        && std::io::stderr().is_terminal()
        && !env_set("CI")
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// `text` in `style` (an SGR code such as `1;31`) when `color`.
pub fn paint(text: &str, style: &str, color: bool) -> String {
    if color {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// An informational line on stderr (silenced by `--quiet`).
pub fn info(line: &str) {
    if quiet() {
        return;
    }
    use std::io::Write as _;
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{}", pacc_proto::name::escape_for_terminal(line));
}
