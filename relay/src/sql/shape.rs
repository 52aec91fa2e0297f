//! Limits on what a statement may weigh, checked before it is planned, so
//! that no statement can overflow a stack or plan for minutes:
//!
//! - its text: at most [`MAX_STATEMENT_BYTES`] and [`MAX_TOKENS`] tokens
//!   (checked on the tokens, before any tree is built: the parser folds a
//!   chain such as `1+1+...` into a tree as deep as the chain is long);
//! - its nesting: parentheses, subqueries, tables in `FROM`, prefix and
//!   chained operators ([`MAX_DEPTH`] levels): parentheses and prefix runs
//!   on the tokens, the rest on the parsed tree;
//! - its queries: subqueries nested at most [`MAX_QUERY_DEPTH`] deep and
//!   [`MAX_QUERIES`] in all (DataFusion's optimizer takes time exponential in
//!   the nesting of subqueries);
//! - its reads: at most [`MAX_TABLE_READS`] table reads once every `WITH`
//!   name is replaced by its query (a chain of `WITH` queries that each read
//!   the previous one twice doubles the plan at every step);
//! - its calls: none that [`super::functions`] refuses.
//!
//! The limits were measured on the debug build, whose frames are largest:
//! planning and running 1,000 nested parentheses or a chain of 1,000 `OR`
//! or `+` fits in the SQL runtime's stack ([`super::runtime::STACK_BYTES`]),
//! so [`MAX_DEPTH`] leaves a margin of four; a tree of 40,000 levels is
//! still walked and dropped within it, twice what [`MAX_TOKENS`] can build.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, ObjectName, Query, Statement, TableFactor, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::SqlError;

/// The longest statement accepted, in bytes (1 MiB).
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;
/// The most tokens (words, numbers, strings, operators) in a statement.
pub const MAX_TOKENS: usize = 20_000;
/// The deepest nesting of expressions and queries.
pub const MAX_DEPTH: usize = 256;
/// The parser's recursion budget: a backstop behind the token and tree
/// checks, which see most nesting first.
pub const PARSER_RECURSION: usize = 2 * MAX_DEPTH;
/// The deepest nesting of subqueries (a subquery in a subquery is depth 2).
pub const MAX_QUERY_DEPTH: usize = 8;
/// The most queries (the statement's and every subquery or `WITH` query).
pub const MAX_QUERIES: usize = 64;
/// The most table reads, once each `WITH` name is replaced by its query.
pub const MAX_TABLE_READS: u64 = 256;

/// The dialect every statement is read with.
pub const DIALECT: GenericDialect = GenericDialect {};

/// Why a statement is refused for its nesting.
pub fn too_deep() -> SqlError {
    SqlError::Refused(format!(
        "the query nests deeper than {MAX_DEPTH} levels (each parenthesis, subquery, \
         function call and chained operator such as `OR` or `+` is a level); write a \
         long chain of `x = a OR x = b ...` as `x IN (a, b, ...)`"
    ))
}

/// Checks the text's length, token count and the nesting its tokens show
/// (parentheses, and runs of prefix operators such as `NOT NOT ...`); its
/// tokens for the parser.
pub fn tokens(sql: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(SqlError::Refused(format!(
            "the statement is {} bytes long; at most {MAX_STATEMENT_BYTES} (1 MiB) are accepted",
            sql.len()
        )));
    }
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    let mut count = 0;
    let mut nesting = Nesting::default();
    let mut previous: Option<&Token> = None;
    for t in &tokens {
        if matches!(t.token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        count += 1;
        if nesting.add(previous, &t.token) > MAX_DEPTH {
            return Err(too_deep());
        }
        previous = Some(&t.token);
    }
    if count > MAX_TOKENS {
        return Err(SqlError::Refused(format!(
            "the statement has {count} tokens (words, numbers, strings, operators); at \
             most {MAX_TOKENS} are accepted"
        )));
    }
    Ok(tokens)
}

/// The nesting that tokens show before they are parsed: the parser builds
/// these by recursing (parentheses, prefix operators, `ARRAY<...>` types)
/// or into deep trees by looping (`INT[][]...`).
#[derive(Default)]
struct Nesting {
    /// Open `(` and `[`.
    brackets: usize,
    /// Open `<` of a type (`ARRAY<`, `MAP<`, `STRUCT<`, ...).
    angles: usize,
    /// The current run of prefix operators (`NOT NOT ...`, `- - ...`).
    prefixes: usize,
    /// The current run of `[...]` suffixes (`INT[][]...`, `a[1][2]...`).
    suffixes: usize,
}

impl Nesting {
    /// Takes `token` (after `previous`): the nesting there.
    fn add(&mut self, previous: Option<&Token>, token: &Token) -> usize {
        match token {
            Token::LParen => self.brackets += 1,
            Token::LBracket => {
                self.brackets += 1;
                if matches!(previous, Some(Token::RBracket)) {
                    self.suffixes += 1;
                }
            }
            Token::RParen | Token::RBracket => self.brackets = self.brackets.saturating_sub(1),
            Token::Lt if previous.is_some_and(opens_type) => self.angles += 1,
            Token::Gt => self.angles = self.angles.saturating_sub(1),
            Token::ShiftRight => self.angles = self.angles.saturating_sub(2),
            _ => {}
        }
        let prefix = match token {
            Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark => true,
            Token::Word(w) => w.keyword == Keyword::NOT,
            _ => false,
        };
        self.prefixes = if prefix { self.prefixes + 1 } else { 0 };
        if matches!(previous, Some(Token::RBracket)) && !matches!(token, Token::LBracket) {
            self.suffixes = 0;
        }
        self.brackets + self.angles + self.prefixes + self.suffixes
    }
}

/// A type name whose parameters come in `<...>`.
fn opens_type(token: &Token) -> bool {
    matches!(token, Token::Word(w) if matches!(
        w.keyword,
        Keyword::ARRAY | Keyword::MAP | Keyword::STRUCT | Keyword::NULLABLE
            | Keyword::LOWCARDINALITY | Keyword::TUPLE | Keyword::UNION
    ))
}

/// Checks the parsed statement's nesting, queries and table reads.
pub fn check(statement: &Statement) -> Result<(), SqlError> {
    let mut shape = Shape::default();
    match statement.visit(&mut shape) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

/// What the walk has seen so far.
#[derive(Default)]
struct Shape {
    /// Current nesting of expressions and queries.
    depth: usize,
    /// Current nesting of queries.
    query_depth: usize,
    queries: usize,
    /// Table reads of each query being walked, innermost last.
    reads: Vec<u64>,
    /// Each `WITH` query's body (by address) and its name.
    with_bodies: HashMap<*const Query, String>,
    /// The table reads of each `WITH` name seen.
    with_reads: HashMap<String, u64>,
    /// Calls of functions that make more than their arguments hold.
    expanding_calls: usize,
    /// Calls of functions that join texts, and `||`.
    joining_calls: usize,
    /// Calls of functions whose work is the product of their texts' lengths.
    comparing_calls: usize,
}

impl Shape {
    fn enter(&mut self) -> ControlFlow<SqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return ControlFlow::Break(too_deep());
        }
        ControlFlow::Continue(())
    }

    fn add_reads(&mut self, n: u64) -> ControlFlow<SqlError> {
        let Some(top) = self.reads.last_mut() else {
            return ControlFlow::Continue(());
        };
        *top = top.saturating_add(n);
        if *top > MAX_TABLE_READS {
            return ControlFlow::Break(SqlError::Refused(format!(
                "the query reads tables more than {MAX_TABLE_READS} times once each `WITH` \
                 name is replaced by its query"
            )));
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for Shape {
    type Break = SqlError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<SqlError> {
        self.enter()?;
        self.query_depth += 1;
        self.queries += 1;
        if self.query_depth > MAX_QUERY_DEPTH {
            return ControlFlow::Break(SqlError::Refused(format!(
                "the query nests subqueries more than {MAX_QUERY_DEPTH} deep"
            )));
        }
        if self.queries > MAX_QUERIES {
            return ControlFlow::Break(SqlError::Refused(format!(
                "the query has more than {MAX_QUERIES} subqueries and `WITH` queries"
            )));
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let body: *const Query = &*cte.query;
                self.with_bodies
                    .insert(body, cte.alias.name.value.to_lowercase());
            }
        }
        self.reads.push(0);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<SqlError> {
        self.depth -= 1;
        self.query_depth -= 1;
        let reads = self.reads.pop().unwrap_or(0);
        match self.with_bodies.get(&(query as *const Query)) {
            // A `WITH` query is read where its name is used.
            Some(name) => {
                self.with_reads.insert(name.clone(), reads.max(1));
                ControlFlow::Continue(())
            }
            None => self.add_reads(reads),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<SqlError> {
        let name = relation.to_string().to_lowercase();
        let reads = self.with_reads.get(&name).copied().unwrap_or(1);
        self.add_reads(reads)
    }

    fn pre_visit_table_factor(&mut self, _factor: &TableFactor) -> ControlFlow<SqlError> {
        self.enter()
    }

    fn post_visit_table_factor(&mut self, _factor: &TableFactor) -> ControlFlow<SqlError> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<SqlError> {
        use super::functions::{
            COMPARING, EXPANDING, JOINING, MAX_COMPARING_CALLS, MAX_EXPANDING_CALLS,
            MAX_JOINING_CALLS, call_name, refused_call,
        };
        let joining = match expr {
            Expr::Function(f) => call_name(f).is_some_and(|n| JOINING.contains(&n.as_str())),
            Expr::BinaryOp { op, .. } => *op == BinaryOperator::StringConcat,
            _ => false,
        };
        if joining {
            self.joining_calls += 1;
            if self.joining_calls > MAX_JOINING_CALLS {
                return ControlFlow::Break(SqlError::Refused(format!(
                    "a statement may call {} and `||` at most {MAX_JOINING_CALLS} times in all: \
                     each can make up to 64 MiB",
                    JOINING.join(", ")
                )));
            }
        }
        if let Expr::Function(f) = expr {
            if let Some(why) = refused_call(f) {
                return ControlFlow::Break(SqlError::Refused(why));
            }
            if call_name(f).is_some_and(|n| COMPARING.contains(&n.as_str())) {
                self.comparing_calls += 1;
                if self.comparing_calls > MAX_COMPARING_CALLS {
                    return ControlFlow::Break(SqlError::Refused(format!(
                        "a statement may call {} at most {MAX_COMPARING_CALLS} times in all: \
                         each can compare up to 100000000 pairs of characters",
                        COMPARING.join(", ")
                    )));
                }
            }
            if call_name(f).is_some_and(|n| EXPANDING.contains(&n.as_str())) {
                self.expanding_calls += 1;
                if self.expanding_calls > MAX_EXPANDING_CALLS {
                    return ControlFlow::Break(SqlError::Refused(format!(
                        "a statement may call {} at most {MAX_EXPANDING_CALLS} times in all: \
                         each can make up to 64 MiB",
                        EXPANDING.join(", ")
                    )));
                }
            }
        }
        self.enter()
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<SqlError> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}
