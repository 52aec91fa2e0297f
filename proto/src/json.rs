//! protojson output: the canonical JSON mapping of protobuf, with the field names
//! of the .proto files (`node_name`, `source_port`, `IP`), enums by name and
//! 64-bit integers as strings, which is what Hubble's `-o json` prints and what
//! tools written for it parse.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use crate::observer::GetFlowsResponse;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// The descriptors of every message of our packages (also what field masks
/// are checked against).
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).expect("descriptor set written by build.rs")
    })
}

/// Encodes any message of our packages, named by its full protobuf name.
pub fn to_json<M: Message>(full_name: &str, msg: &M) -> Result<String, JsonError> {
    let desc = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_string()))?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| JsonError::Decode(e.to_string()))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true);
    let mut out = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(&mut out, &options)
        .map_err(|e| JsonError::Encode(e.to_string()))?;
    String::from_utf8(out.into_inner()).map_err(|e| JsonError::Encode(e.to_string()))
}

/// One `GetFlowsResponse` as a JSON line, as `hubble observe -o json` prints it.
pub fn response_to_json(resp: &GetFlowsResponse) -> Result<String, JsonError> {
    to_json("observer.GetFlowsResponse", resp)
}

/// Why a message could not become JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The message name is not in our descriptor set.
    #[error("no protobuf message named {0}")]
    UnknownMessage(String),
    /// Re-decoding through the descriptor failed.
    #[error("decoding for JSON: {0}")]
    Decode(String),
    /// Serializing failed.
    #[error("encoding JSON: {0}")]
    Encode(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Flow, Ip, IpVersion, Layer4, Tcp, TcpFlags, Verdict, layer4::Protocol};
    use crate::observer::get_flows_response::ResponseTypes;

    #[test]
    fn uses_proto_field_names_enum_names_and_wrappers() {
        let flow = Flow {
            time: Some(prost_types::Timestamp {
                seconds: 1_795_705_445,
                nanos: 0,
            }),
            verdict: Verdict::Forwarded as i32,
            ip: Some(Ip {
                source: "198.18.1.2".into(),
                destination: "198.18.1.3".into(),
                ip_version: IpVersion::IPv4 as i32,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    source_port: 40000,
                    destination_port: 8080,
                    flags: Some(TcpFlags {
                        syn: true,
                        ..Default::default()
                    }),
                })),
            }),
            node_name: "node1".into(),
            is_reply: Some(false),
            ..Default::default()
        };
        let resp = GetFlowsResponse {
            node_name: "node1".into(),
            time: flow.time,
            response_types: Some(ResponseTypes::Flow(flow)),
        };
        let v: serde_json::Value = serde_json::from_str(&response_to_json(&resp).unwrap()).unwrap();
        assert_eq!(v["node_name"], "node1");
        assert_eq!(v["time"], "2026-11-26T15:04:05Z");
        let f = &v["flow"];
        assert_eq!(f["verdict"], "FORWARDED");
        assert_eq!(f["IP"]["source"], "198.18.1.2");
        assert_eq!(f["IP"]["ipVersion"], "IPv4");
        assert_eq!(f["l4"]["TCP"]["destination_port"], 8080);
        assert_eq!(f["l4"]["TCP"]["flags"]["SYN"], true);
        assert_eq!(f["is_reply"], false);
    }
}
