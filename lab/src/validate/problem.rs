//! One validation failure: the field path it is about and what is wrong there.

/// One validation failure: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

/// A [`Problem`] at `field`, as an `Err`.
pub fn fail<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        field: field.into(),
        problem: problem.into(),
    })
}
