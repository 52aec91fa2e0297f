//! YAML in and out for every file of the project (endpoints, policy,
//! services, the lab's scenario): serde-saphyr, safe Rust with a budget
//! ([`budget`]: [`MAX_DEPTH`] levels of nesting, block or flow, the text
//! within [`crate::input::MAX_FILE_BYTES`], 250,000 nodes, 1,024 documents),
//! so no input can take a reader down; and errors that name the field path
//! and the line.
//!
//! The field path comes from `serde_path_to_error`, wrapped around each
//! document: serde-saphyr reports the line and column but not the path.

use std::cell::RefCell;
use std::fmt;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use serde_saphyr::MessageFormatter;

/// Why a YAML text was refused: `spec.ingress[0].toPorts: expected sequence
/// start at line 13 column 18`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// The field path, `spec.ingress[0]`; empty for the document itself or a
    /// syntax error.
    pub path: String,
    pub message: String,
    /// Line and column, counted from 1 in the whole text.
    pub at: Option<(u64, u64)>,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some((line, column)) = self.at {
            write!(f, " at line {line} column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for YamlError {}

/// Levels of nesting (mappings and sequences, block or flow style) a
/// document may have; the deepest real file (a policy) uses 7.
pub const MAX_DEPTH: usize = 32;

/// What one parse may take: the nesting above, and no more text than an
/// input file may hold; counts left at serde-saphyr's defaults.
fn budget() -> serde_saphyr::Budget {
    let bytes = crate::input::MAX_FILE_BYTES as usize;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_reader_input_bytes = Some(bytes);
    budget.max_total_scalar_bytes = bytes;
    budget
}

/// The [`budget`], and a plain null (`name:`) read into a string is the
/// empty string, as serde_yaml read it, so every file it took still reads.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! { null_as_string: true, budget: Some(budget()) }
}

/// Text longer than an input file may be is refused before parsing.
fn check_size(text: &str) -> Result<(), YamlError> {
    if text.len() as u64 > crate::input::MAX_FILE_BYTES {
        return Err(YamlError {
            path: String::new(),
            message: format!(
                "{} bytes of text, more than the limit of 4 MiB ({} bytes)",
                text.len(),
                crate::input::MAX_FILE_BYTES
            ),
            at: None,
        });
    }
    Ok(())
}

/// One document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_size(text)?;
    traced(|| serde_saphyr::from_str_with_options::<Traced<T>>(text, options())).map(|t| t.0)
}

/// Every document of a stream (`---` between them) into a `T` each; empty
/// documents are skipped.
pub fn documents<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, YamlError> {
    check_size(text)?;
    traced(|| serde_saphyr::from_multiple_with_options::<Traced<T>>(text, options()))
        .map(|docs| docs.into_iter().map(|t| t.0).collect())
}

/// `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError {
        path: String::new(),
        message: e.to_string(),
        at: None,
    })
}

thread_local! {
    /// The field path of the last document that failed on this thread.
    static FAILED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A document deserialized through `serde_path_to_error`, which records the
/// path of a failure in [`FAILED_AT`] (serde-saphyr's error type has no room
/// for it).
struct Traced<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Traced<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_path_to_error::deserialize(deserializer)
            .map(Traced)
            .map_err(|e| {
                let path = e.path().to_string();
                FAILED_AT.with(|at| *at.borrow_mut() = Some(path));
                e.into_inner()
            })
    }
}

/// Runs a parse and joins its error with the path recorded meanwhile.
fn traced<R>(parse: impl FnOnce() -> Result<R, serde_saphyr::Error>) -> Result<R, YamlError> {
    FAILED_AT.with(|at| at.borrow_mut().take());
    let result = parse();
    let path = FAILED_AT.with(|at| at.borrow_mut().take());
    result.map_err(|e| error(&e, path.as_deref().unwrap_or("")))
}

fn error(e: &serde_saphyr::Error, path: &str) -> YamlError {
    let plain = e.without_snippet();
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(plain)
        .into_owned();
    // The reader's advice is to its own caller (an option of its API).
    let message = match message.strip_prefix("duplicate mapping key: ") {
        Some(rest) => {
            let key = rest
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(rest);
            format!("duplicate key `{key}`")
        }
        None => message,
    };
    let too_deep = matches!(
        plain,
        serde_saphyr::Error::Budget {
            breach: serde_saphyr::budget::BudgetBreach::Depth { .. },
            ..
        }
    ) || message == "recursion limit exceeded";
    let (path, message) = if too_deep {
        // The path down to the breach is as long as the nesting: left out.
        (
            String::new(),
            format!("nested deeper than the limit of {MAX_DEPTH} levels"),
        )
    } else if let serde_saphyr::Error::Budget { breach, .. } = unwrapped(plain) {
        // The reader's own words are its debug text (`Nodes { nodes: 250001 }`).
        (String::new(), over_budget(breach))
    } else {
        (shown_path(path, &message), message)
    };
    YamlError {
        path,
        message,
        at: e.location().map(|l| (l.line(), l.column())),
    }
}

/// The error inside the reader's wrappers (the alias that led there, a
/// snippet of the text).
fn unwrapped(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = e
    {
        e = error;
    }
    e
}

/// What limit a text broke, as a person reads it: aliases that expand a small
/// text into millions of nodes ("billion laughs") end here.
fn over_budget(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let limits = budget();
    match breach {
        B::Nodes { .. } => format!(
            "more than {} nodes once its aliases (*name) are expanded",
            limits.max_nodes
        ),
        B::Aliases { .. } => format!("more than {} aliases (*name)", limits.max_aliases),
        B::Anchors { .. } => format!("more than {} anchors (&name)", limits.max_anchors),
        B::Events { .. } => format!("more than {} YAML events", limits.max_events),
        B::Documents { .. } => format!("more than {} documents", limits.max_documents),
        B::AliasAnchorRatio { aliases, anchors } => {
            format!("{aliases} aliases of {anchors} anchors: more than a text needs")
        }
        other => format!("past a limit of the YAML reader ({other:?})"),
    }
}

/// The path as worth showing: none for the document itself (`.`) or where
/// the parser stopped inside a value (`?`), and without the unknown field's
/// own name, which the message already gives.
fn shown_path(path: &str, message: &str) -> String {
    if path == "." || path.split(['.', '[']).any(|part| part == "?") {
        return String::new();
    }
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    match unknown.and_then(|field| path.strip_suffix(field)) {
        Some(parent) => parent.trim_end_matches('.').to_string(),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Doc {
        name: String,
        #[serde(default)]
        ports: Vec<u16>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }

    fn err(text: &str) -> String {
        from_str::<Doc>(text).unwrap_err().to_string()
    }

    #[test]
    fn aliases_that_expand_past_the_node_limit_are_named_so() {
        // Each level ten times the one before: 10^6 names from 60 lines.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..7 {
            let p = i - 1;
            text += &format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            );
        }
        text += "name: laughs\n";
        let e = from_str::<BTreeMap<String, serde::de::IgnoredAny>>(&text).unwrap_err();
        assert_eq!(e.path, "");
        assert_eq!(
            e.message,
            "more than 250000 nodes once its aliases (*name) are expanded"
        );
    }

    #[test]
    fn documents_read_and_write() {
        let doc: Doc = from_str("name: a\nports: [80, 443]\n").unwrap();
        assert_eq!(doc.ports, [80, 443]);
        assert_eq!(
            to_string(&doc).unwrap(),
            "name: a\nports:\n- 80\n- 443\nlabels: {}\n"
        );
        let docs: Vec<Doc> = documents("name: a\n---\n# nothing\n---\nname: b\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].name, "b");
        assert_eq!(documents::<Doc>("").unwrap(), []);
        // A null name reads as an empty one, as serde_yaml read it.
        assert_eq!(from_str::<Doc>("name:\n").unwrap().name, "");
    }

    #[test]
    fn errors_name_the_path_and_the_line() {
        assert_eq!(
            err("name: a\nports: [80, 70000]\n"),
            "ports[1]: invalid u16 at line 2 column 13"
        );
        assert_eq!(
            err("name: a\nportz: []\n"),
            "unknown field `portz`, expected one of name, ports, labels at line 2 column 1"
        );
        assert_eq!(
            err("name: a\nlabels: {a: b\n"),
            "unclosed bracket '{' at line 2 column 9"
        );
        assert_eq!(
            err("just text"),
            "expected mapping start at line 1 column 1"
        );
        assert_eq!(
            err("name: a\nname: b\n"),
            "duplicate key `name` at line 2 column 1"
        );
        // A later document's error carries its line in the whole text.
        assert_eq!(
            documents::<Doc>("name: a\n---\nname: b\nports: x\n")
                .unwrap_err()
                .to_string(),
            "ports: expected sequence start at line 4 column 8"
        );
    }

    fn refusal(text: &str) -> String {
        from_str::<serde::de::IgnoredAny>(text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        // 200 KB of `[`: refused at the 33rd.
        let text = format!("name: a\nlabels: {}", "[".repeat(200_000));
        assert_eq!(
            refusal(&text),
            "nested deeper than the limit of 32 levels at line 2 column 41"
        );
        let mut block = String::from("name: a\nlabels:\n");
        for level in 1..=40 {
            block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        assert_eq!(
            refusal(&block),
            "nested deeper than the limit of 32 levels at line 34 column 65"
        );
        assert_eq!(
            refusal(&"- ".repeat(50)),
            "nested deeper than the limit of 32 levels at line 1 column 65"
        );
        // 32 levels are fine.
        let at_limit = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(from_str::<serde::de::IgnoredAny>(&at_limit).is_ok());
    }

    #[test]
    fn text_over_the_file_limit_is_refused_unparsed() {
        let text = format!("name: {}\n", "a".repeat(4 << 20));
        assert_eq!(
            refusal(&text),
            "4194311 bytes of text, more than the limit of 4 MiB (4194304 bytes)"
        );
    }
}
