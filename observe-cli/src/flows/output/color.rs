//! Verdict colours for people: what passed green (FORWARDED, ALLOWED), what
//! was stopped red (DROPPED, DENIED), audits yellow, the rest uncoloured; ANSI
//! codes on a terminal only, unless asked otherwise.

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

/// Every code this module writes (the escaping of flow text lets them pass).
pub const CODES: [&str; 4] = [GREEN, RED, YELLOW, RESET];

/// `verdict` wrapped in its colour when `on` and it has one: green for what
/// passed, red for what was stopped, yellow for the rest, as Hubble colours
/// them. The first word decides, so `DENIED BY …` is red whole.
pub fn paint_verdict(verdict: &str, on: bool) -> String {
    let code = match verdict.split(' ').next().unwrap_or_default() {
        "FORWARDED" | "REDIRECTED" | "ALLOWED" => GREEN,
        "DROPPED" | "ERROR" | "DENIED" => RED,
        "AUDIT" | "AUDITED" | "TRACED" | "TRANSLATED" => YELLOW,
        _ => "",
    };
    if on && !code.is_empty() {
        format!("{code}{verdict}{RESET}")
    } else {
        verdict.to_string()
    }
}
