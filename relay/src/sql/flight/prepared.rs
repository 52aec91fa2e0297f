//! Prepared statements: the text (checked and planned when created, again
//! at each run) and the values a client bound with DoPut, under a handle
//! no other client can guess (it holds a random token). At most
//! [`MAX_OPEN`] stay open, holding at most [`MAX_OPEN_BYTES`] of text and
//! values; past either, the oldest statement of the client (by address)
//! holding the most is closed, so a client that never closes its statements
//! can neither fill the relay nor close other clients' statements. Clients
//! behind one address (a port-forward, a NAT, a proxy) count as one.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use datafusion::arrow::ipc::{MessageHeader, root_as_message};
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use prost::bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::Status;

/// Prepared statements open at once.
pub const MAX_OPEN: usize = 256;

/// Bytes of text and bound values the open statements hold together.
pub const MAX_OPEN_BYTES: usize = 64 << 20;

const PREFIX: &str = "observe-prepared-";

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    /// Bound by the last DoPut; none bound yet is no values.
    pub values: Vec<ScalarValue>,
}

impl Prepared {
    fn bytes(&self) -> usize {
        self.sql.len() + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }
}

/// An open statement, the token its handle must carry, and the address of
/// the client that opened it (if the connection has one).
struct Entry {
    token: u64,
    client: Option<IpAddr>,
    prepared: Prepared,
}

/// The open prepared statements, oldest first.
#[derive(Default)]
struct Open {
    next: u64,
    statements: BTreeMap<u64, Entry>,
    bytes: usize,
}

impl Open {
    /// Closes statements (but `keep`, being opened or bound) until within
    /// the bounds: each time the oldest of the client holding the most of the
    /// others (statements when over the count, bytes when over the bytes;
    /// the longest-held on a tie).
    fn evict(&mut self, keep: u64) {
        while self.statements.len() > MAX_OPEN || self.bytes > MAX_OPEN_BYTES {
            let by_bytes = self.statements.len() <= MAX_OPEN;
            // Per client: (statements or bytes, its oldest statement); the
            // map is in age order, so the first seen is the oldest.
            let mut held: HashMap<Option<IpAddr>, (usize, u64)> = HashMap::new();
            for (&n, e) in self.statements.iter().filter(|(n, _)| **n != keep) {
                let h = held.entry(e.client).or_insert((0, n));
                h.0 += if by_bytes { e.prepared.bytes() } else { 1 };
            }
            let Some((_, (_, victim))) = held
                .into_iter()
                .max_by_key(|(_, (amount, oldest))| (*amount, std::cmp::Reverse(*oldest)))
            else {
                return;
            };
            if let Some(e) = self.statements.remove(&victim) {
                self.bytes -= e.prepared.bytes();
            }
        }
    }
}

/// The open prepared statements.
pub struct PreparedStatements {
    open: Mutex<Open>,
    random: SystemRandom,
}

impl Default for PreparedStatements {
    fn default() -> Self {
        PreparedStatements {
            open: Mutex::default(),
            random: SystemRandom::new(),
        }
    }
}

impl PreparedStatements {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens `sql` for `client`: its handle.
    pub fn open(&self, sql: String, client: Option<IpAddr>) -> Result<Bytes, Status> {
        let mut token = [0u8; 8];
        self.random
            .fill(&mut token)
            .map_err(|_| Status::internal("no random token for a prepared statement handle"))?;
        let token = u64::from_le_bytes(token);
        let prepared = Prepared {
            sql,
            values: Vec::new(),
        };
        let mut open = self.lock();
        open.next += 1;
        let n = open.next;
        open.bytes += prepared.bytes();
        open.statements.insert(
            n,
            Entry {
                token,
                client,
                prepared,
            },
        );
        open.evict(n);
        Ok(Bytes::from(format!("{PREFIX}{n}-{token:016x}")))
    }

    pub fn get(&self, handle: &[u8]) -> Result<Prepared, Status> {
        let (n, token) = id(handle)?;
        let open = self.lock();
        match open.statements.get(&n) {
            Some(e) if e.token == token => Ok(e.prepared.clone()),
            _ => Err(gone(handle)),
        }
    }

    pub fn bind(&self, handle: &[u8], values: Vec<ScalarValue>) -> Result<(), Status> {
        let (n, token) = id(handle)?;
        let mut open = self.lock();
        let entry = match open.statements.get_mut(&n) {
            Some(e) if e.token == token => e,
            _ => return Err(gone(handle)),
        };
        let before = entry.prepared.bytes();
        entry.prepared.values = values;
        let after = entry.prepared.bytes();
        open.bytes = open.bytes - before + after;
        open.evict(n);
        Ok(())
    }

    /// Closes the statement; closing one that is not open is no error.
    pub fn close(&self, handle: &[u8]) -> Result<(), Status> {
        let (n, token) = id(handle)?;
        let mut open = self.lock();
        if open.statements.get(&n).is_some_and(|e| e.token == token)
            && let Some(e) = open.statements.remove(&n)
        {
            open.bytes -= e.prepared.bytes();
        }
        Ok(())
    }
}

/// The number and token of a handle.
fn id(handle: &[u8]) -> Result<(u64, u64), Status> {
    std::str::from_utf8(handle)
        .ok()
        .and_then(|h| h.strip_prefix(PREFIX))
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(n, token)| Some((n.parse().ok()?, u64::from_str_radix(token, 16).ok()?)))
        .ok_or_else(|| Status::invalid_argument("not a prepared statement handle of this relay"))
}

fn gone(handle: &[u8]) -> Status {
    Status::not_found(format!(
        "prepared statement {} is closed (or was closed to make room: past {MAX_OPEN} open, or \
         {} MiB of text and values, the oldest statement of the client holding the most is \
         closed)",
        String::from_utf8_lossy(handle),
        MAX_OPEN_BYTES >> 20
    ))
}

/// Bytes one DoPut may send: a row of parameter values, each a constant of
/// at most 4 KiB (`super::super::guard`), needs far fewer.
pub const MAX_PUT_BYTES: usize = 1 << 20;

/// The one row of values a DoPut binds (none: no values). Each message is
/// looked at before Arrow decodes it ([`admit`]); a message that still
/// makes Arrow's decoder panic (it asserts some lengths rather than
/// checking them) is refused as not valid, the relay unharmed.
pub async fn values(
    stream: impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Vec<ScalarValue>, Status> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(decode_values(stream))
        .catch_unwind()
        .await
        .unwrap_or_else(|_panic| {
            Err(Status::invalid_argument(
                "parameter values are not valid Arrow IPC (their lengths do not add up)",
            ))
        })
}

async fn decode_values(
    stream: impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Vec<ScalarValue>, Status> {
    let mut sent = 0;
    let data = stream
        .and_then(move |d| std::future::ready(admit(d, &mut sent)))
        .map_err(|s| FlightError::Tonic(Box::new(s)));
    let mut batches = FlightRecordBatchStream::new_from_flight_data(data).boxed();
    let mut row: Option<Vec<ScalarValue>> = None;
    while let Some(batch) = batches.try_next().await.map_err(not_ipc)? {
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

/// Why Arrow's decoder refused the values: the client's fault, unlike what
/// arrow-flight makes of it (`INTERNAL`).
fn not_ipc(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(status) => *status,
        e => Status::invalid_argument(format!("parameter values are not valid Arrow IPC: {e}")),
    }
}

/// Passes a DoPut message on to Arrow's decoder, or refuses it: past
/// [`MAX_PUT_BYTES`] in all, or a compressed body. Arrow takes a compressed
/// buffer's stated length on trust and allocates it before it decompresses,
/// and a failed allocation ends the process: a 600-byte message stating
/// 2^60 bytes did.
fn admit(d: FlightData, sent: &mut usize) -> Result<FlightData, Status> {
    *sent += d.data_header.len() + d.data_body.len() + d.app_metadata.len();
    if *sent > MAX_PUT_BYTES {
        return Err(Status::invalid_argument(format!(
            "parameter values over {} KiB: bind one row of values",
            MAX_PUT_BYTES >> 10
        )));
    }
    if d.data_header.is_empty() {
        return Ok(d);
    }
    let message = root_as_message(&d.data_header)
        .map_err(|e| Status::invalid_argument(format!("not an Arrow IPC message: {e}")))?;
    let batch = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => {
            message.header_as_dictionary_batch().and_then(|b| b.data())
        }
        _ => None,
    };
    let Some(batch) = batch else {
        return Ok(d);
    };
    if batch.compression().is_some() {
        return Err(Status::invalid_argument(
            "compressed Arrow IPC parameter values are not taken: send them uncompressed",
        ));
    }
    // Arrow slices each buffer out of the body with an assert.
    let body = d.data_body.len() as u64;
    let outside = batch.buffers().into_iter().flatten().any(|b| {
        let (Ok(offset), Ok(length)) = (u64::try_from(b.offset()), u64::try_from(b.length()))
        else {
            return true;
        };
        offset.checked_add(length).is_none_or(|end| end > body)
    });
    if outside {
        return Err(Status::invalid_argument(
            "parameter values are not valid Arrow IPC: a buffer lies outside the message body",
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_over_its_bytes_is_refused() {
        let half = || FlightData {
            data_body: vec![0u8; MAX_PUT_BYTES / 2].into(),
            ..Default::default()
        };
        let mut sent = 0;
        assert!(admit(half(), &mut sent).is_ok());
        assert!(admit(half(), &mut sent).is_ok());
        let err = admit(half(), &mut sent).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "parameter values over 1024 KiB: bind one row of values"
        );
    }

    /// Arrow slices a record batch's buffers out of the body with an
    /// assert: a message whose buffers lie past its body is refused first.
    #[tokio::test]
    async fn a_buffer_outside_the_body_is_refused_not_a_panic() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::record_batch::RecordBatch;
        let batch = RecordBatch::try_from_iter([(
            "v",
            std::sync::Arc::new(Int64Array::from(vec![7])) as _,
        )])
        .unwrap();
        let data =
            arrow_flight::utils::batches_to_flight_data(&batch.schema(), vec![batch]).unwrap();
        // Whole, it binds its value.
        let whole = futures::stream::iter(data.clone().into_iter().map(Ok));
        assert_eq!(values(whole).await.unwrap(), [ScalarValue::Int64(Some(7))]);
        // The batch without the schema before it.
        let headless = data[1..].to_vec();
        // Its body cut off: the buffers point past it.
        let mut cut = data;
        let last = cut.last_mut().unwrap();
        last.data_body = Bytes::new();
        let err = values(futures::stream::iter(cut.into_iter().map(Ok)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "parameter values are not valid Arrow IPC: a buffer lies outside the message body"
        );
        // Without its schema, the batch cannot be read: the client's fault.
        let err = values(futures::stream::iter(headless.into_iter().map(Ok)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "parameter values are not valid Arrow IPC: Protocol error: Received RecordBatch prior to Schema"
        );
    }

    #[test]
    fn a_statement_is_bound_got_and_closed() {
        let p = PreparedStatements::default();
        let handle = p.open("SELECT $1".into(), None).unwrap();
        assert!(handle.starts_with(b"observe-prepared-1-"), "{handle:?}");
        p.bind(&handle, vec![ScalarValue::Int64(Some(7))]).unwrap();
        let got = p.get(&handle).unwrap();
        assert_eq!(got.sql, "SELECT $1");
        assert_eq!(got.values, vec![ScalarValue::Int64(Some(7))]);
        p.close(&handle).unwrap();
        assert_eq!(p.get(&handle).unwrap_err().code(), tonic::Code::NotFound);
        assert_eq!(
            p.get(b"nope").unwrap_err().message(),
            "not a prepared statement handle of this relay"
        );
    }

    #[test]
    fn a_handle_works_only_with_its_token() {
        let p = PreparedStatements::default();
        let handle = p.open("SELECT 1".into(), None).unwrap();
        assert_eq!(p.get(&handle).unwrap().sql, "SELECT 1");
        // The same number with another token: another client's guess.
        let text = String::from_utf8(handle.to_vec()).unwrap();
        let (number, _) = text.rsplit_once('-').unwrap();
        let guess = format!("{number}-0000000000000001");
        assert_eq!(
            p.get(guess.as_bytes()).unwrap_err().code(),
            tonic::Code::NotFound
        );
        p.close(guess.as_bytes()).unwrap();
        assert!(p.get(&handle).is_ok(), "a guessed handle closes nothing");
        assert_eq!(
            p.get(b"observe-prepared-1").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn the_oldest_goes_past_the_count_or_the_bytes() {
        let p = PreparedStatements::default();
        let first = p.open("SELECT 1".into(), None).unwrap();
        let rest: Vec<Bytes> = (0..MAX_OPEN)
            .map(|i| p.open(format!("SELECT {i}"), None).unwrap())
            .collect();
        assert!(
            p.get(&first).is_err(),
            "the oldest of {} went",
            MAX_OPEN + 1
        );
        assert!(rest.iter().all(|h| p.get(h).is_ok()));
        // Values that fill the bytes close the oldest others, not their own.
        let big = ScalarValue::Utf8(Some("x".repeat(MAX_OPEN_BYTES - 1024)));
        let last = rest.last().unwrap();
        p.bind(last, vec![big]).unwrap();
        assert!(p.get(last).is_ok());
        let still = rest.iter().filter(|h| p.get(h).is_ok()).count();
        assert!(still < MAX_OPEN, "{still} left open");
        assert!(p.lock().bytes <= MAX_OPEN_BYTES);
    }

    #[test]
    fn a_client_that_never_closes_closes_only_its_own() {
        let (a, b) = (
            Some(IpAddr::from([198, 18, 0, 1])),
            Some(IpAddr::from([198, 18, 0, 2])),
        );
        let p = PreparedStatements::default();
        let open = |n: usize, client| -> Vec<Bytes> {
            (0..n)
                .map(|i| p.open(format!("SELECT {i}"), client).unwrap())
                .collect()
        };
        let early = open(200, a);
        let others = open(10, b);
        let late = open(100, a);
        // 310 opened, 256 kept: the 54 that went were a's oldest.
        assert!(others.iter().all(|h| p.get(h).is_ok()));
        let closed: Vec<usize> = (0..early.len())
            .filter(|&i| p.get(&early[i]).is_err())
            .collect();
        assert_eq!(closed, (0..54).collect::<Vec<_>>());
        assert!(late.iter().all(|h| p.get(h).is_ok()));
        // The closed handle says why.
        assert_eq!(
            p.get(&early[0]).unwrap_err().message(),
            format!(
                "prepared statement {} is closed (or was closed to make room: past 256 open, or \
                 64 MiB of text and values, the oldest statement of the client holding the most \
                 is closed)",
                String::from_utf8_lossy(&early[0])
            )
        );
        // Bytes: b binds 8 MiB to each of its statements. Past 64 MiB in all
        // b holds the most bytes, so b's oldest go (not the one being bound),
        // none of a's.
        let big = ScalarValue::Utf8(Some("x".repeat(8 << 20)));
        for h in &others {
            p.bind(h, vec![big.clone()]).unwrap();
        }
        assert!(p.lock().bytes <= MAX_OPEN_BYTES);
        let b_open: Vec<bool> = others.iter().map(|h| p.get(h).is_ok()).collect();
        assert_eq!(b_open, [[false; 3].as_slice(), &[true; 7]].concat());
        let a_open = early
            .iter()
            .chain(&late)
            .filter(|h| p.get(h).is_ok())
            .count();
        assert_eq!(a_open, 246);
    }
}
