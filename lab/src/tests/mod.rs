//! Lab tests. Scenario and plan tests run anywhere; kernel tests need root and a
//! real kernel (they skip themselves otherwise) and are parallel-safe: every lab
//! has its own prefix and state directory.

mod kernel;
mod scenario;
