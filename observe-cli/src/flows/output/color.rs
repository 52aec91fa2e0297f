//! Colours for people, Hubble's: verdicts (what passed green, FORWARDED and
//! ALLOWED; what was stopped red, DROPPED and DENIED; audits yellow), hosts
//! cyan with their ports yellow, identities magenta; ANSI codes on a
//! terminal only, unless asked otherwise.

/// When to colour: `auto` colours on a terminal, unless `NO_COLOR` is set
/// or `TERM` is `dumb` (as Hubble's colour library decides).
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
        self.enabled_in(is_terminal, |name| std::env::var_os(name))
    }

    /// [`Self::enabled`] with the environment read through `env`.
    fn enabled_in(
        self,
        is_terminal: bool,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal
                    && env("NO_COLOR").is_none_or(|v| v.is_empty())
                    && env("TERM").is_none_or(|v| v != "dumb")
            }
        }
    }
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const MAGENTA: &str = "\x1b[35m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// A host (cyan), as Hubble's compact and dict lines colour it.
pub fn paint_host(host: &str, on: bool) -> String {
    paint(host, CYAN, on)
}

/// A port (yellow), inside its host's colour as in Hubble's lines.
pub fn paint_port(port: u32, on: bool) -> String {
    paint(&port.to_string(), YELLOW, on)
}

/// An identity column, `(ID:12001)` or `(world)` (magenta), as Hubble's.
pub fn paint_identity(identity: &str, on: bool) -> String {
    paint(identity, MAGENTA, on)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colours_a_terminal_unless_no_color_or_a_dumb_term() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let auto = ColorChoice::Auto;
        assert!(auto.enabled_in(true, env(&[("TERM", "xterm-256color")])));
        assert!(!auto.enabled_in(false, env(&[("TERM", "xterm-256color")])));
        assert!(!auto.enabled_in(true, env(&[("TERM", "dumb")])));
        assert!(!auto.enabled_in(true, env(&[("NO_COLOR", "1")])));
        assert!(
            auto.enabled_in(true, env(&[("NO_COLOR", "")])),
            "empty: unset"
        );
        assert!(ColorChoice::Always.enabled_in(false, env(&[("TERM", "dumb")])));
        assert!(!ColorChoice::Never.enabled_in(true, env(&[])));
    }
}
