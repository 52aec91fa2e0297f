//! Switches written as Go's flag package takes them: `--follow=false`,
//! `--all-namespaces=true`, `-f=1`. A pasted `hubble observe` command line
//! carries such words; clap's switches take no value and stopped at them.
//!
//! The words are rewritten before clap reads them: a switch set to a true
//! value becomes the bare switch, one set to a false value is left out (every
//! switch of ours is off unless given). A value that is no Go boolean is left
//! as it is, for clap to refuse with its own message.

use std::ffi::OsString;

use clap::{ArgAction, Command};

/// The command line `args` (the program's name first) with each
/// `--switch=value` of the subcommand it names rewritten as above. Nothing
/// after `--` is touched.
pub fn rewrite(cmd: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut current = cmd;
    let mut out = Vec::with_capacity(args.len());
    let mut words = args.into_iter();
    out.extend(words.next());
    while let Some(word) = words.next() {
        let Some(text) = word.to_str() else {
            out.push(word);
            continue;
        };
        if text == "--" {
            out.push(word);
            out.extend(words.by_ref());
            break;
        }
        if let Some(sub) = current.find_subcommand(text) {
            current = sub;
            out.push(word);
            continue;
        }
        match switch_value(current, text) {
            Some((flag, true)) => out.push(OsString::from(flag)),
            Some((_, false)) => {}
            None => out.push(word),
        }
    }
    out
}

/// For `--name=value` or `-n=value` naming a switch of `cmd` with a Go
/// boolean value: the bare switch and the value.
fn switch_value<'a>(cmd: &Command, word: &'a str) -> Option<(&'a str, bool)> {
    let (flag, value) = word.split_once('=')?;
    let value = go_bool(value)?;
    let is_switch = |a: &clap::Arg| matches!(a.get_action(), ArgAction::SetTrue);
    let named = if let Some(long) = flag.strip_prefix("--") {
        cmd.get_arguments().any(|a| {
            is_switch(a)
                && (a.get_long() == Some(long)
                    || a.get_all_aliases().is_some_and(|all| all.contains(&long)))
        })
    } else if let Some(short) = flag.strip_prefix('-') {
        let mut chars = short.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => cmd
                .get_arguments()
                .any(|a| is_switch(a) && a.get_short() == Some(c)),
            _ => false,
        }
    } else {
        false
    };
    named.then_some((flag, value))
}

/// A boolean as Go's `strconv.ParseBool` reads it.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn cmd() -> Command {
        Command::new("observe").subcommand(
            Command::new("flows")
                .arg(
                    Arg::new("follow")
                        .long("follow")
                        .short('f')
                        .action(ArgAction::SetTrue),
                )
                .arg(
                    Arg::new("all")
                        .long("all-namespaces")
                        .short('A')
                        .alias("every-namespace")
                        .action(ArgAction::SetTrue),
                )
                .arg(Arg::new("output").long("output").short('o'))
                .arg(Arg::new("sql").num_args(0..)),
        )
    }

    fn words(line: &str) -> Vec<String> {
        let args = line.split(' ').map(OsString::from).collect();
        rewrite(&cmd(), args)
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_boolean_values_on_switches_become_the_switch_or_nothing() {
        assert_eq!(
            words("observe flows --follow=true --all-namespaces=false -o json"),
            ["observe", "flows", "--follow", "-o", "json"]
        );
        assert_eq!(
            words("observe flows --follow=0 -A=T --every-namespace=1 -f=F"),
            ["observe", "flows", "-A", "--every-namespace"]
        );
    }

    #[test]
    fn other_words_are_left_to_clap() {
        // Not a Go boolean, an option that takes a value, a value, and
        // anything after `--`.
        assert_eq!(
            words("observe flows --follow=yes --output=true -o --follow=1 -- --follow=1"),
            [
                "observe",
                "flows",
                "--follow=yes",
                "--output=true",
                "-o",
                "--follow",
                "--",
                "--follow=1"
            ]
        );
        // Before the subcommand there is no such switch.
        assert_eq!(
            words("observe --follow=true flows"),
            ["observe", "--follow=true", "flows"]
        );
    }
}
