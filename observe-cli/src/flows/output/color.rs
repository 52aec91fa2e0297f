//! Verdict colours for people: FORWARDED green, DROPPED red, AUDIT yellow, the
//! rest uncoloured; ANSI codes on a terminal only, unless asked otherwise.

/// When to colour: `auto` colours on a terminal (and not with `NO_COLOR` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour output going to a terminal (`is_terminal`) or not.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// `verdict` wrapped in its colour when `on` and it has one.
pub fn paint_verdict(verdict: &str, on: bool) -> String {
    let code = match verdict {
        "FORWARDED" => GREEN,
        "DROPPED" => RED,
        "AUDIT" => YELLOW,
        _ => "",
    };
    if on && !code.is_empty() {
        format!("{code}{verdict}{RESET}")
    } else {
        verdict.to_string()
    }
}
