//! Latency histograms: HDR histograms of microseconds (3 significant digits,
//! 1 µs to 60 s), their percentiles, and a text form for passing one from a
//! child process to its parent.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// Highest latency recorded; slower requests are recorded as this.
pub const MAX_US: u64 = 60_000_000;

/// An empty latency histogram (µs).
pub fn new() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Percentiles of one histogram, in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The percentiles of `h` (each the highest value equivalent to the recorded
/// value at that quantile, as HdrHistogram reports them).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// Text form: one `hist <value> <count>` line per non-empty bucket.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    for v in h.iter_recorded() {
        out.push_str(&format!(
            "hist {} {}\n",
            v.value_iterated_to(),
            v.count_at_value()
        ));
    }
    out
}

/// Adds the buckets of one `hist <value> <count>` line to `h`.
pub fn decode_line(h: &mut Histogram<u64>, line: &str) -> Result<()> {
    let mut f = line.split_whitespace().skip(1);
    let value: u64 = f.next().context("hist line without value")?.parse()?;
    let count: u64 = f.next().context("hist line without count")?.parse()?;
    h.record_n(value.clamp(1, MAX_US), count)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1..=10000 µs, each once: the q-quantile is q × 10000 µs, reported as the
    /// highest value of the histogram bucket it falls in (3 significant digits:
    /// buckets of 4 µs between 4096 and 8191, 8 µs from 8192 on).
    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut h = new();
        for v in 1..=10_000 {
            h.record(v).unwrap();
        }
        let p = percentiles(&h);
        assert_eq!(p.count, 10_000);
        assert_eq!(p.p50, h.highest_equivalent(5_000));
        assert_eq!(p.p90, h.highest_equivalent(9_000));
        assert_eq!(p.p99, h.highest_equivalent(9_900));
        assert_eq!(p.p999, h.highest_equivalent(9_990));
        assert_eq!(p.max, h.highest_equivalent(10_000));
        // Within the histogram's precision of the exact values.
        for (got, exact) in [
            (p.p50, 5_000),
            (p.p90, 9_000),
            (p.p99, 9_900),
            (p.p999, 9_990),
        ] {
            assert!(
                got >= exact && got - exact < exact / 1_000 + 8,
                "{got} vs {exact}"
            );
        }
    }

    #[test]
    fn text_form_round_trips() {
        let mut h = new();
        for v in [3, 3, 150, 7_777, 2_000_000] {
            h.record(v).unwrap();
        }
        let mut back = new();
        for line in encode(&h).lines() {
            decode_line(&mut back, line).unwrap();
        }
        assert_eq!(percentiles(&h), percentiles(&back));
    }
}
