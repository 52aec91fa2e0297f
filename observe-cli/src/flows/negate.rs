//! `--not`: the next filter flag goes to the blacklist, as in `hubble observe`
//! (`--not --to-port 8080` hides flows to port 8080).
//!
//! clap keeps the values of each flag, not their order across flags, so the order
//! is read back from the indices clap records for every value and switch: a
//! `--not` negates the first filter flag recorded after it, whatever non-filter
//! flags (`--last`, `-o`) sit in between. Both sides are then parsed again as
//! plain [`FilterArgs`], so a negated flag keeps all its meaning: negated flags
//! of different kinds AND together in one blacklist filter, repeated ones OR, and
//! a negated direction-neutral flag (`--pod`, `--ip`, ...) blacklists both its
//! source and its destination variant — the same rules as Hubble's.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, Parser};

use super::filters::FilterArgs;

/// The id (and long name) of the `--not` flag.
pub const NOT: &str = "not";

/// The `--not` flag; it may be given any number of times.
pub fn not_arg() -> clap::Arg {
    clap::Arg::new(NOT)
        .long(NOT)
        .action(ArgAction::Append)
        .num_args(0)
        .default_missing_value("true")
        .value_parser(clap::value_parser!(bool))
        .help("Negate the next filter flag: `--not --to-port 8080` hides flows to port 8080")
}

/// The filter flags alone, to parse each side again.
#[derive(Debug, Parser)]
#[command(name = "filters", no_binary_name = true)]
struct FilterLine {
    #[command(flatten)]
    args: FilterArgs,
}

/// One value (or switch) of a filter flag, where clap saw it.
#[derive(Debug)]
struct Occurrence {
    index: usize,
    word: OsString,
}

/// Splits the filter flags in `m` (matches of a command that has [`FilterArgs`]
/// and [`not_arg`]) into (kept, negated).
pub fn split(m: &ArgMatches) -> Result<(FilterArgs, FilterArgs), clap::Error> {
    let filters = FilterArgs::augment_args(Command::new("filters"));
    let mut seen = Vec::new();
    for arg in filters.get_arguments() {
        let id = arg.get_id().as_str();
        if m.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => continue,
        };
        let (Some(indices), Some(values)) = (m.indices_of(id), m.get_raw(id)) else {
            continue;
        };
        let takes_value = arg.get_action().takes_values();
        for (index, value) in indices.zip(values) {
            let mut word = OsString::from(&flag);
            if takes_value {
                word.push("=");
                word.push(value);
            }
            seen.push(Occurrence { index, word });
        }
    }
    seen.sort_by_key(|o| o.index);
    let mut negated = vec![false; seen.len()];
    if m.value_source(NOT) == Some(ValueSource::CommandLine) {
        for not in m.indices_of(NOT).into_iter().flatten() {
            let Some(next) = seen.iter().position(|o| o.index > not) else {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--not must be followed by the filter flag it negates",
                ));
            };
            if negated[next] {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--not twice before one filter flag: each --not negates the one after it",
                ));
            }
            negated[next] = true;
        }
    }
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for (o, neg) in seen.into_iter().zip(negated) {
        if neg {
            dropped.push(o.word);
        } else {
            kept.push(o.word);
        }
    }
    Ok((
        FilterLine::try_parse_from(kept)?.args,
        FilterLine::try_parse_from(dropped)?.args,
    ))
}
