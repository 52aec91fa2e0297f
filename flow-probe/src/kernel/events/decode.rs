//! Ring-buffer records to events, and back for tests and benchmarks.
//!
//! The only place that reinterprets bytes. Decoding is length (the header's
//! `len` against the bytes received), then version, then type and the struct's
//! size, then fields; each refusal is a typed error.

use std::mem::size_of;

use super::{
    EVENT_FLOW, EVENT_SOCK_XLATE, EVENT_TCP_LIFECYCLE, EVENT_VERSION, EventHeader, FlowEvent,
    SockXlateEvent, TcpLifecycleEvent,
};

/// A decoded ring-buffer record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Flow(FlowEvent),
    SockXlate(SockXlateEvent),
    TcpLifecycle(TcpLifecycleEvent),
}

const HEADER: usize = size_of::<EventHeader>();

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record cannot even hold the event header.
    #[error("record of {got} bytes is shorter than the {HEADER}-byte event header")]
    ShortHeader { got: usize },
    /// The header's `len` is not the number of bytes the ring buffer delivered.
    #[error("record header says {len} bytes but {got} arrived")]
    Len { len: u16, got: usize },
    /// The record's version is not the one this build understands.
    #[error("event version {got}, expected {EVENT_VERSION}: probe and flow-probe were built apart")]
    Version { got: u8 },
    /// The record's type is unknown.
    #[error("unknown event type {0}")]
    UnknownType(u8),
    /// The record's length is not the size of its type's struct.
    #[error("{what} record of {len} bytes, but the struct has {need}")]
    Size {
        what: &'static str,
        len: usize,
        need: usize,
    },
}

/// Decodes one record: length, then version, then type and size, then fields.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < HEADER {
        return Err(DecodeError::ShortHeader { got: bytes.len() });
    }
    let hdr: EventHeader = read_pod(&bytes[..HEADER]);
    if usize::from(hdr.len) != bytes.len() {
        return Err(DecodeError::Len {
            len: hdr.len,
            got: bytes.len(),
        });
    }
    if hdr.version != EVENT_VERSION {
        return Err(DecodeError::Version { got: hdr.version });
    }
    match hdr.r#type {
        EVENT_FLOW => Ok(Event::Flow(fields(bytes, "flow_event")?)),
        EVENT_SOCK_XLATE => Ok(Event::SockXlate(fields(bytes, "sock_xlate_event")?)),
        EVENT_TCP_LIFECYCLE => Ok(Event::TcpLifecycle(fields(bytes, "tcp_lifecycle_event")?)),
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// Marker for the plain-data structs: every bit pattern is a valid value.
trait Pod: Copy {}
impl Pod for EventHeader {}
impl Pod for FlowEvent {}
impl Pod for SockXlateEvent {}
impl Pod for TcpLifecycleEvent {}

fn fields<T: Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() != need {
        return Err(DecodeError::Size {
            what,
            len: bytes.len(),
            need,
        });
    }
    Ok(read_pod(bytes))
}

/// Reads a `T` from exactly `size_of::<T>()` bytes.
fn read_pod<T: Pod>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), size_of::<T>(), "callers check the length");
    // SAFETY: the length is checked above, `T` is plain data (integers and byte
    // arrays only, so any bit pattern is valid) and the read is unaligned-safe.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

fn encode_header(out: &mut Vec<u8>, h: &EventHeader) {
    out.extend([h.r#type, h.version]);
    out.extend(h.len.to_ne_bytes());
    out.extend(h._pad0.to_ne_bytes());
}

/// Encodes an event as the kernel would; for tests and benchmarks.
pub fn encode_flow(ev: &FlowEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_of::<FlowEvent>());
    encode_header(&mut out, &ev.hdr);
    out.extend(ev.ktime_ns.to_ne_bytes());
    let k = &ev.key;
    out.extend(k.saddr);
    out.extend(k.daddr);
    out.extend(k.sport.to_ne_bytes());
    out.extend(k.dport.to_ne_bytes());
    out.extend([k.proto, k.family, k.hook, k._pad0]);
    out.extend(k.ifindex.to_ne_bytes());
    out.extend(k._pad1.to_ne_bytes());
    for v in [ev.packets, ev.bytes, ev.rev_packets, ev.rev_bytes] {
        out.extend(v.to_ne_bytes());
    }
    out.extend(ev.pkt_len.to_ne_bytes());
    out.extend([
        ev.tcp_flags,
        ev.reason,
        ev.is_reply,
        ev.icmp_type,
        ev.icmp_code,
        ev.verdict,
        ev.kind,
        ev.policy_match,
    ]);
    out.extend(ev.drop_reason.to_ne_bytes());
    out.extend([ev.policy_dir, ev._pad0]);
    out.extend(ev.policy_id.to_ne_bytes());
    out.extend(ev.remote_identity.to_ne_bytes());
    out.extend(ev.dmac);
    out.extend(ev.smac);
    out.extend(ev._pad1);
    out
}

/// Encodes a translation event as the kernel would; for tests.
pub fn encode_sock_xlate(ev: &SockXlateEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_of::<SockXlateEvent>());
    encode_header(&mut out, &ev.hdr);
    for v in [ev.ktime_ns, ev.socket_cookie, ev.cgroup_id] {
        out.extend(v.to_ne_bytes());
    }
    out.extend(ev.vip);
    out.extend(ev.backend);
    out.extend(ev.vip_port.to_ne_bytes());
    out.extend(ev.backend_port.to_ne_bytes());
    out.extend([ev.family, ev.proto, ev.xlate_point, ev.no_backend]);
    out.extend(ev.service_id.to_ne_bytes());
    out.extend(ev.src);
    out.extend(ev.src_port.to_ne_bytes());
    out.extend([ev.hook, ev._pad0]);
    out.extend(ev.netns_cookie.to_ne_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::super::{FlowKey, hook, kind, reason, sock_hook, verdict, xlate_point};
    use super::*;

    fn xlate_sample() -> SockXlateEvent {
        SockXlateEvent {
            hdr: EventHeader {
                r#type: EVENT_SOCK_XLATE,
                version: EVENT_VERSION,
                len: 104,
                _pad0: 0,
            },
            ktime_ns: 7,
            socket_cookie: 0x1234,
            cgroup_id: 99,
            vip: [198, 18, 100, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            backend: [198, 18, 1, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vip_port: 80,
            backend_port: 8080,
            family: 4,
            proto: 6,
            xlate_point: xlate_point::POST_DIRECTION_FWD,
            service_id: 5,
            src_port: 40000,
            netns_cookie: 0x4000_0001,
            hook: sock_hook::CONNECT,
            ..Default::default()
        }
    }

    fn sample() -> FlowEvent {
        FlowEvent {
            hdr: EventHeader {
                r#type: EVENT_FLOW,
                version: EVENT_VERSION,
                len: 136,
                _pad0: 0,
            },
            ktime_ns: 42,
            key: FlowKey {
                sport: 40000,
                dport: 8080,
                proto: 6,
                family: 4,
                hook: hook::TC_INGRESS,
                ifindex: 7,
                ..Default::default()
            },
            packets: 3,
            bytes: 300,
            tcp_flags: 0x02,
            reason: reason::NEW_FLOW,
            verdict: verdict::DROPPED,
            kind: kind::DROP,
            drop_reason: 133,
            policy_id: 7,
            remote_identity: 300,
            ..Default::default()
        }
    }

    #[test]
    fn decodes_what_encode_wrote() {
        let ev = sample();
        assert_eq!(decode(&encode_flow(&ev)), Ok(Event::Flow(ev)));
        let ev = xlate_sample();
        assert_eq!(decode(&encode_sock_xlate(&ev)), Ok(Event::SockXlate(ev)));
    }

    #[test]
    fn a_record_shorter_than_the_header_is_refused() {
        let bytes = encode_flow(&sample());
        let err = decode(&bytes[..3]).unwrap_err();
        assert_eq!(err, DecodeError::ShortHeader { got: 3 });
        assert_eq!(
            err.to_string(),
            "record of 3 bytes is shorter than the 8-byte event header"
        );
    }

    #[test]
    fn a_record_cut_short_or_padded_is_refused_by_its_len() {
        let bytes = encode_flow(&sample());
        let err = decode(&bytes[..100]).unwrap_err();
        assert_eq!(err, DecodeError::Len { len: 136, got: 100 });
        assert_eq!(
            err.to_string(),
            "record header says 136 bytes but 100 arrived"
        );
        let mut long = bytes.clone();
        long.extend([0; 8]);
        assert_eq!(decode(&long), Err(DecodeError::Len { len: 136, got: 144 }));
    }

    #[test]
    fn a_len_that_is_not_the_struct_size_is_refused() {
        // Header and bytes agree, but a flow event is 136 bytes.
        let mut short = encode_flow(&sample());
        short.truncate(112);
        short[2..4].copy_from_slice(&112u16.to_ne_bytes());
        let err = decode(&short).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Size {
                what: "flow_event",
                len: 112,
                need: 136
            }
        );
        assert_eq!(
            err.to_string(),
            "flow_event record of 112 bytes, but the struct has 136"
        );
        let mut long = encode_sock_xlate(&xlate_sample());
        long.extend([0; 8]);
        long[2..4].copy_from_slice(&112u16.to_ne_bytes());
        assert_eq!(
            decode(&long),
            Err(DecodeError::Size {
                what: "sock_xlate_event",
                len: 112,
                need: 104
            })
        );
    }

    #[test]
    fn a_record_of_another_version_is_refused_before_its_fields() {
        let mut v4 = encode_flow(&sample());
        v4[1] = 4;
        let err = decode(&v4).unwrap_err();
        assert_eq!(err, DecodeError::Version { got: 4 });
        assert_eq!(
            err.to_string(),
            "event version 4, expected 7: probe and flow-probe were built apart"
        );
        // The version is judged before the size: an older, longer layout says so.
        v4.extend([0; 8]);
        v4[2..4].copy_from_slice(&144u16.to_ne_bytes());
        assert_eq!(decode(&v4), Err(DecodeError::Version { got: 4 }));
    }

    #[test]
    fn an_unknown_type_is_refused() {
        let mut t9 = encode_flow(&sample());
        t9[0] = 9;
        let err = decode(&t9).unwrap_err();
        assert_eq!(err, DecodeError::UnknownType(9));
        assert_eq!(err.to_string(), "unknown event type 9");
    }
}
