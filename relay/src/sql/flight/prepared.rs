//! Prepared statements: the text (checked and planned when created, again
//! at each run) and the values a client bound with DoPut, under an opaque
//! handle. At most [`MAX_OPEN`] stay open; past that the oldest is closed,
//! so a client that never closes its statements cannot fill the relay.

use std::collections::BTreeMap;
use std::sync::Mutex;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use prost::bytes::Bytes;
use tonic::Status;

/// Prepared statements open at once.
pub const MAX_OPEN: usize = 256;

const PREFIX: &str = "observe-prepared-";

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    /// Bound by the last DoPut; none bound yet is no values.
    pub values: Vec<ScalarValue>,
}

/// The open prepared statements.
#[derive(Default)]
pub struct PreparedStatements {
    open: Mutex<(u64, BTreeMap<u64, Prepared>)>,
}

impl PreparedStatements {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Prepared>)> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens `sql`: its handle.
    pub fn open(&self, sql: String) -> Bytes {
        let mut open = self.lock();
        let (next, statements) = &mut *open;
        *next += 1;
        statements.insert(
            *next,
            Prepared {
                sql,
                values: Vec::new(),
            },
        );
        while statements.len() > MAX_OPEN {
            statements.pop_first();
        }
        Bytes::from(format!("{PREFIX}{next}"))
    }

    pub fn get(&self, handle: &[u8]) -> Result<Prepared, Status> {
        let id = id(handle)?;
        self.lock().1.get(&id).cloned().ok_or_else(|| gone(handle))
    }

    pub fn bind(&self, handle: &[u8], values: Vec<ScalarValue>) -> Result<(), Status> {
        let id = id(handle)?;
        let mut open = self.lock();
        let statement = open.1.get_mut(&id).ok_or_else(|| gone(handle))?;
        statement.values = values;
        Ok(())
    }

    /// Closes the statement; closing one that is not open is no error.
    pub fn close(&self, handle: &[u8]) -> Result<(), Status> {
        let id = id(handle)?;
        self.lock().1.remove(&id);
        Ok(())
    }
}

fn id(handle: &[u8]) -> Result<u64, Status> {
    std::str::from_utf8(handle)
        .ok()
        .and_then(|h| h.strip_prefix(PREFIX))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Status::invalid_argument("not a prepared statement handle of this relay"))
}

fn gone(handle: &[u8]) -> Status {
    Status::not_found(format!(
        "prepared statement {} is closed (or was the oldest of more than {MAX_OPEN} open)",
        String::from_utf8_lossy(handle)
    ))
}

/// The one row of values a DoPut binds (none: no values).
pub async fn values(stream: PeekableFlightDataStream) -> Result<Vec<ScalarValue>, Status> {
    let data = stream.map_err(|s| FlightError::Tonic(Box::new(s)));
    let mut batches = FlightRecordBatchStream::new_from_flight_data(data).boxed();
    let mut row: Option<Vec<ScalarValue>> = None;
    while let Some(batch) = batches.try_next().await.map_err(Status::from)? {
        match (batch.num_rows(), &row) {
            (0, _) => {}
            (1, None) => {
                let values = batch
                    .columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, 0))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::invalid_argument(e.strip_backtrace()))?;
                row = Some(values);
            }
            _ => {
                return Err(Status::invalid_argument(
                    "bind one row of parameter values to a query (more were sent)",
                ));
            }
        }
    }
    Ok(row.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_closed_past_the_limit() {
        let p = PreparedStatements::default();
        let first = p.open("SELECT 1".into());
        assert_eq!(&first[..], b"observe-prepared-1");
        for _ in 0..MAX_OPEN {
            p.open("SELECT 2".into());
        }
        assert_eq!(p.get(&first).unwrap_err().code(), tonic::Code::NotFound);
        let last = Bytes::from(format!("{PREFIX}{}", MAX_OPEN + 1));
        p.bind(&last, vec![ScalarValue::Int64(Some(7))]).unwrap();
        let got = p.get(&last).unwrap();
        assert_eq!(got.sql, "SELECT 2");
        assert_eq!(got.values, vec![ScalarValue::Int64(Some(7))]);
        p.close(&last).unwrap();
        assert_eq!(p.get(&last).unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(
            p.get(b"nope").unwrap_err().message(),
            "not a prepared statement handle of this relay"
        );
    }
}
