//! `GetFlowsRequest.field_mask`, as Hubble applies it: only the listed Flow
//! fields (dotted paths into nested messages, e.g. `source.pod_name`) come
//! back; a path that names no Flow field is refused.
//!
//! Paths are checked against our Flow descriptor; Cilium's Flow fields that
//! we never fill (`l7`, `trace_context`, ...) are accepted too, as Hubble
//! accepts them, and come back empty.

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage};

use observer_proto::flow::Flow;

/// Top-level fields of Cilium's Flow that our Flow does not declare.
const CILIUM_ONLY: &[&str] = &[
    "auth_type",
    "l7",
    "debug_capture_point",
    "proxy_port",
    "trace_context",
    "tunnel",
    "file",
    "ip_trace_id",
    "emitter",
    "policy_log",
    "aggregate",
    "extensions",
];

/// Our Flow's descriptor.
fn flow_descriptor() -> MessageDescriptor {
    observer_proto::json::pool()
        .get_message_by_name("flow.Flow")
        .expect("flow.Flow is in the descriptor set")
}

/// Paths a mask may list: more than Flow has fields, nested ones included.
pub const MAX_PATHS: usize = 256;
/// Bytes a path may have; a longer one is shown cut in its error.
pub const MAX_PATH_BYTES: usize = 256;

/// Why a mask is refused: a path that names no field of Flow, or too many
/// paths. An error quotes at most [`MAX_PATH_BYTES`] of a path: an error
/// echoing a client's 20 KB path twice outgrew gRPC's metadata limit, and the
/// client got a transport error instead of this one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldMaskError {
    #[error("field_mask: invalid path {path:?}: {reason}")]
    Path { path: String, reason: String },
    #[error("field_mask: {0} paths; at most {MAX_PATHS} are accepted")]
    TooMany(usize),
}

/// `path` as an error quotes it: cut at [`MAX_PATH_BYTES`] bytes.
fn quoted(path: &str) -> String {
    if path.len() <= MAX_PATH_BYTES {
        return path.to_string();
    }
    let mut end = MAX_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// A checked field mask: the tree of fields to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMask {
    /// (field name, the sub-fields to keep of it; empty: all of it).
    fields: Vec<(String, FieldMask)>,
}

impl FieldMask {
    /// Checks `paths` against Flow; `None` for an empty mask (everything).
    pub fn parse(paths: &[String]) -> Result<Option<Self>, FieldMaskError> {
        if paths.is_empty() {
            return Ok(None);
        }
        if paths.len() > MAX_PATHS {
            return Err(FieldMaskError::TooMany(paths.len()));
        }
        let flow = flow_descriptor();
        let mut mask = FieldMask::default();
        for path in paths {
            let bad = |reason: String| FieldMaskError::Path {
                path: quoted(path),
                reason,
            };
            if path.len() > MAX_PATH_BYTES {
                return Err(bad(format!(
                    "{} bytes long; at most {MAX_PATH_BYTES}",
                    path.len()
                )));
            }
            let parts: Vec<&str> = path.split('.').collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(bad("an empty field name".into()));
            }
            if CILIUM_ONLY.contains(&parts[0]) {
                continue;
            }
            check(&flow, &parts).map_err(bad)?;
            mask.add(&parts);
        }
        Ok(Some(mask))
    }

    fn add(&mut self, parts: &[&str]) {
        let Some((first, rest)) = parts.split_first() else {
            return;
        };
        let pos = match self.fields.iter().position(|(n, _)| n == first) {
            Some(p) => p,
            None => {
                self.fields.push((first.to_string(), FieldMask::default()));
                self.fields.len() - 1
            }
        };
        let (_, sub) = &mut self.fields[pos];
        if rest.is_empty() {
            // The whole field: wider than any sub-path of it.
            sub.fields.clear();
            sub.fields.push((String::new(), FieldMask::default()));
        } else if !sub.is_whole() {
            sub.add(rest);
        }
    }

    fn is_whole(&self) -> bool {
        self.fields.iter().any(|(n, _)| n.is_empty())
    }

    /// `flow` with only the masked fields set.
    pub fn apply(&self, flow: &Flow) -> Flow {
        let Ok(src) = DynamicMessage::decode(flow_descriptor(), flow.encode_to_vec().as_slice())
        else {
            return flow.clone();
        };
        let mut dst = DynamicMessage::new(src.descriptor());
        self.copy(&src, &mut dst);
        Flow::decode(dst.encode_to_vec().as_slice()).unwrap_or_default()
    }

    fn copy(&self, src: &DynamicMessage, dst: &mut DynamicMessage) {
        for (name, sub) in &self.fields {
            let Some(field) = src.descriptor().get_field_by_name(name) else {
                continue;
            };
            if !src.has_field(&field) {
                continue;
            }
            if sub.is_whole() || sub.fields.is_empty() {
                dst.set_field(&field, src.get_field(&field).into_owned());
                continue;
            }
            let Some(inner) = src.get_field(&field).as_message().cloned() else {
                continue;
            };
            let mut out = DynamicMessage::new(inner.descriptor());
            sub.copy(&inner, &mut out);
            dst.set_field(&field, prost_reflect::Value::Message(out));
        }
    }
}

/// Whether `parts` walks fields of `msg`, through singular messages.
fn check(msg: &MessageDescriptor, parts: &[&str]) -> Result<(), String> {
    let Some((first, rest)) = parts.split_first() else {
        return Ok(());
    };
    let field = msg
        .get_field_by_name(first)
        .ok_or_else(|| format!("{} has no field {first:?}", msg.full_name()))?;
    if rest.is_empty() {
        return Ok(());
    }
    match field.kind().as_message() {
        Some(inner) if !field.is_list() && !field.is_map() => check(inner, rest),
        _ => Err(format!("{first:?} has no sub-fields")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_proto::flow::{Endpoint, Ip, Verdict};

    fn flow() -> Flow {
        Flow {
            uuid: "u".into(),
            verdict: Verdict::Dropped as i32,
            node_name: "n1".into(),
            ip: Some(Ip {
                source: "198.18.1.1".into(),
                destination: "198.18.1.2".into(),
                ..Default::default()
            }),
            source: Some(Endpoint {
                pod_name: "a".into(),
                namespace: "ns".into(),
                identity: 300,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_listed_fields_come_back() {
        let mask = FieldMask::parse(&paths(&["verdict", "source.pod_name", "IP"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            mask.apply(&flow()),
            Flow {
                verdict: Verdict::Dropped as i32,
                ip: flow().ip,
                source: Some(Endpoint {
                    pod_name: "a".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        );
        // A whole field wins over a sub-path of it, in either order.
        let mask = FieldMask::parse(&paths(&["source.pod_name", "source", "IP.source"]))
            .unwrap()
            .unwrap();
        let got = mask.apply(&flow());
        assert_eq!(got.source, flow().source);
        assert_eq!(got.ip.unwrap().destination, "");
        assert_eq!(FieldMask::parse(&[]).unwrap(), None);
    }

    #[test]
    fn a_path_to_no_field_is_refused_by_name() {
        let err = FieldMask::parse(&paths(&["verdict", "source.pod"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field_mask: invalid path \"source.pod\": flow.Endpoint has no field \"pod\""
        );
        assert!(FieldMask::parse(&paths(&["verdict.x"])).is_err());
        assert!(FieldMask::parse(&paths(&["source..id"])).is_err());
        // A 20 KB path is quoted cut; more paths than Flow has fields are
        // refused by their number.
        let long = "x".repeat(20_000);
        assert_eq!(
            FieldMask::parse(&[long]).unwrap_err().to_string(),
            format!(
                "field_mask: invalid path \"{}…\": 20000 bytes long; at most 256",
                "x".repeat(256)
            )
        );
        let many: Vec<String> = (0..257).map(|_| "verdict".to_string()).collect();
        assert_eq!(
            FieldMask::parse(&many).unwrap_err().to_string(),
            "field_mask: 257 paths; at most 256 are accepted"
        );
        assert!(FieldMask::parse(&many[..256]).is_ok());
        // Cilium's fields we never fill are valid, and empty.
        let mask = FieldMask::parse(&paths(&["l7"])).unwrap().unwrap();
        assert_eq!(mask.apply(&flow()), Flow::default());
    }
}
