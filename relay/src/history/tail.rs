//! The newest flows one node has in history: where a peer's stream was when
//! the relay stopped, so that the flows a peer still buffers, which a
//! restarted relay asks for again, are not stored a second time
//! ([`crate::peer::resume`]).
//!
//! Only the `time`, `node` and `uuid` columns are read, files from the newest
//! back, row groups by their time statistics, and no further once the rest is
//! older than the node's newest flow minus the overlap.

use std::cmp::Reverse;
use std::io;

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::parquet::arrow::ProjectionMask;

use super::scan::{self, Source};
use super::schema;

/// A node's newest flow time in history and the flows near it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTail {
    /// Its newest flow's time (ns since the epoch).
    pub last: i64,
    /// UUIDs of its flows from `last - overlap` to `last`, oldest first.
    pub uuids: Vec<String>,
}

/// Columns read: what finds a node's flows and tells them apart.
const COLUMNS: [&str; 3] = ["time", "node", "uuid"];

/// Collects one node's flows at or after a floor that rises with its
/// newest flow.
struct Collector<'a> {
    node: &'a str,
    from: i64,
    overlap: i64,
    last: Option<i64>,
    found: Vec<(i64, String)>,
}

impl Collector<'_> {
    /// Rows older than this cannot matter any more.
    fn floor(&self) -> i64 {
        self.last
            .map_or(self.from, |l| l.saturating_sub(self.overlap).max(self.from))
    }

    fn take(&mut self, batch: &RecordBatch) {
        let (Some(times), Some(nodes), Some(uuids)) = (
            schema::times(batch),
            strings(batch, "node"),
            strings(batch, "uuid"),
        ) else {
            return;
        };
        for row in 0..batch.num_rows() {
            let t = times.value(row);
            if t < self.floor() || nodes.is_null(row) || nodes.value(row) != self.node {
                continue;
            }
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
            if !uuids.is_null(row) && !uuids.value(row).is_empty() {
                self.found.push((t, uuids.value(row).to_string()));
            }
        }
        let floor = self.floor();
        self.found.retain(|(t, _)| *t >= floor);
    }

    fn finish(mut self) -> Option<NodeTail> {
        let last = self.last?;
        let floor = self.floor();
        self.found.retain(|(t, _)| *t >= floor);
        self.found.sort();
        Some(NodeTail {
            last,
            uuids: self.found.into_iter().map(|(_, u)| u).collect(),
        })
    }
}

fn strings<'b>(batch: &'b RecordBatch, name: &str) -> Option<&'b StringArray> {
    batch.column_by_name(name)?.as_any().downcast_ref()
}

/// `node`'s newest flow at or after `from` in `sources`, and the UUIDs of its
/// flows within `overlap` ns of it; `None` when it has none there.
pub fn node_tail(
    sources: Vec<Source>,
    node: &str,
    from: i64,
    overlap: i64,
) -> io::Result<Option<NodeTail>> {
    let mut by_last: Vec<((i64, i64), Source)> = sources
        .into_iter()
        .filter_map(|s| Some((s.bounds()?, s)))
        .collect();
    by_last.sort_by_key(|((_, last), _)| Reverse(*last));
    let mut c = Collector {
        node,
        from,
        overlap,
        last: None,
        found: Vec::new(),
    };
    for ((_, last), source) in by_last {
        if last < c.floor() {
            break;
        }
        match source {
            Source::Memory(batches) => batches.iter().for_each(|b| c.take(b)),
            Source::File(f) => {
                let floor = c.floor();
                let (groups, builder) = scan::read_file(&f.path, scan::BATCH_ROWS, |t| {
                    t.is_none_or(|(_, hi)| hi >= floor)
                })?;
                let mask = ProjectionMask::columns(builder.parquet_schema(), COLUMNS);
                let reader = builder
                    .with_projection(mask)
                    .with_row_groups(groups.into_iter().map(|(rg, _)| rg).collect())
                    .build()
                    .map_err(|e| scan::err(&f.path, e))?;
                for b in reader {
                    c.take(&b.map_err(|e| scan::err(&f.path, e))?);
                }
            }
        }
    }
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use observer_proto::flow::Flow;
    use observer_proto::observer::GetFlowsResponse;
    use observer_proto::observer::get_flows_response::ResponseTypes;

    use super::*;
    use crate::history::encode;
    use crate::history::recent::to_batch;

    const T: i64 = 1_709_211_600_000_000_000;
    const MS: i64 = 1_000_000;

    /// Rows of `(node, uuid, time)`.
    fn rows(flows: &[(&str, &str, i64)]) -> RecordBatch {
        let staged: Vec<_> = flows
            .iter()
            .map(|(node, uuid, t)| {
                let r = GetFlowsResponse {
                    node_name: node.to_string(),
                    response_types: Some(ResponseTypes::Flow(Flow {
                        uuid: uuid.to_string(),
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                (*t, Arc::new(r))
            })
            .collect();
        to_batch(&staged)
    }

    fn file(root: &std::path::Path, seq: u64, flows: &[(&str, &str, i64)]) -> Source {
        let w = encode::write_file(root, &[rows(flows)], 1).unwrap();
        Source::File(w.publish(seq, seq).unwrap())
    }

    /// Two files and rows in memory (in a scratch directory of their own).
    fn sources() -> (test_support::scratch::ScratchDir, Vec<Source>) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = test_support::scratch::ScratchDir::new(&format!("history-tail-{n}"));
        let root = dir.path();
        let s = vec![
            file(
                root,
                1,
                &[
                    ("n1", "a", T),
                    ("n2", "p", T + 100 * MS),
                    ("n1", "b", T + 200 * MS),
                ],
            ),
            // The newest file has no row of n1: the search goes on past it.
            file(
                root,
                2,
                &[("n2", "q", T + 900 * MS), ("n2", "r", T + 950 * MS)],
            ),
            // Rows in memory, not in time order; "c" is n1's newest.
            Source::Memory(vec![rows(&[
                ("n1", "c", T + 700 * MS),
                ("n1", "d", T + 350 * MS),
                ("n1", "", T + 600 * MS),
            ])]),
        ];
        (dir, s)
    }

    fn tail(node: &str, from: i64, overlap: i64) -> Option<NodeTail> {
        let (_dir, s) = sources();
        node_tail(s, node, from, overlap).unwrap()
    }

    #[test]
    fn a_nodes_newest_flow_and_the_uuids_within_the_overlap() {
        // From T+300 ms: "b" (T+200 ms) is older.
        assert_eq!(
            tail("n1", i64::MIN, 400 * MS),
            Some(NodeTail {
                last: T + 700 * MS,
                uuids: vec!["d".into(), "c".into()],
            })
        );
        let wide = tail("n1", i64::MIN, 10_000 * MS).unwrap();
        assert_eq!(wide.uuids, ["a", "b", "d", "c"]);
        assert_eq!(
            tail("n2", i64::MIN, 0),
            Some(NodeTail {
                last: T + 950 * MS,
                uuids: vec!["r".into()],
            })
        );
    }

    #[test]
    fn rows_before_from_and_other_nodes_are_not_a_tail() {
        assert_eq!(tail("n1", T + 750 * MS, 500 * MS), None);
        // Within the overlap but before `from`: "a" and "b" are left out.
        assert_eq!(
            tail("n1", T + 300 * MS, 10_000 * MS),
            Some(NodeTail {
                last: T + 700 * MS,
                uuids: vec!["d".into(), "c".into()],
            })
        );
        assert_eq!(tail("n3", i64::MIN, 0), None);
    }
}
