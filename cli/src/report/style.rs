//! Terminal colours for the text report: on only when the report goes to a
//! terminal and `NO_COLOR` is unset (https://no-color.org), never in files
//! or pipes.

use lockstep_analysis::Severity;

/// Whether file descriptor `fd` is a terminal.
pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Whether the user asked for no colour (`NO_COLOR` set and not empty, or
/// a dumb terminal).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        || std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Colour for a report written to stdout: only on a terminal.
    pub fn for_stdout() -> Style {
        Style {
            on: is_tty(1) && !no_color(),
        }
    }

    /// No colour at all (files, pipes).
    pub fn plain() -> Style {
        Style { on: false }
    }

    fn paint(&self, sgr: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{sgr}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }

    /// Source positions (`file:line`).
    pub fn place(&self, s: &str) -> String {
        self.paint("36", s)
    }

    /// The fix hint.
    pub fn hint(&self, s: &str) -> String {
        self.paint("32", s)
    }

    /// `ERROR` / `WARNING` / `NOTE` in their colours.
    pub fn severity(&self, s: Severity) -> String {
        match s {
            Severity::Error => self.paint("1;31", "ERROR"),
            Severity::Warning => self.paint("1;35", "WARNING"),
            Severity::Note => self.paint("1;34", "NOTE"),
        }
    }
}
