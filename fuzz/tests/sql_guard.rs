//! The relay's read-only SQL guard as a fuzz target (see `targets.rs` for
//! how targets run). A test binary of its own: a stack overflow, which no
//! test can catch, aborts only this one. `crashes/` holds the inputs that
//! once overflowed the stack, kept as regression inputs.

use std::time::Duration;

use bolero::check;
use fuzz::clear;

/// Random inputs on `cargo test`, after the corpus and the crashes.
const BUDGET: Duration = Duration::from_secs(1);

/// SQL text through the relay's read-only guard, before any planning, on a
/// thread with the stack the relay's SQL runtime gives every statement.
#[test]
fn sql_guard() {
    std::thread::Builder::new()
        .name("sql_guard".into())
        .stack_size(relay::sql::runtime::STACK_BYTES)
        .spawn(|| {
            check!(name = "sql_guard")
                .with_test_time(BUDGET)
                .for_each(|bytes: &[u8]| {
                    let text = String::from_utf8_lossy(bytes);
                    if let Err(e) = relay::sql::guard::check(&text) {
                        clear(&e);
                    }
                });
        })
        .expect("a thread for the guard")
        .join()
        .expect("the guard never panics");
}
