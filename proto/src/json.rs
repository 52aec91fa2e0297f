//! protojson output: the canonical JSON mapping of protobuf, with the field names
//! of the .proto files (`node_name`, `source_port`, `IP`), enums by name and
//! 64-bit integers as strings, which is what Hubble's `-o json` prints and what
//! tools written for it parse.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

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

/// Every message in `text`: JSON objects back to back (or none), as `hubble
/// observe --allowlist` reads them. Field names as in the .proto file or in
/// lowerCamelCase, enums by name or number (protojson).
pub fn from_json_stream<M: Message + Default>(
    full_name: &str,
    text: &str,
) -> Result<Vec<M>, JsonError> {
    read_stream(full_name, text, true)
}

/// [`from_json_stream`], but a field or enum value our .proto files do not
/// declare (one a newer Hubble writes, or L7 data we do not hold) is
/// skipped, as Go's protojson skips them with `DiscardUnknown`; the second
/// value names the first such, when there was one (`l7`, `enum value
/// 'DROP_SOMETHING_NEW'`).
pub fn from_json_stream_lenient<M: Message + Default>(
    full_name: &str,
    text: &str,
) -> Result<(Vec<M>, Option<String>), JsonError> {
    const FIELD: &str = "unrecognized field name '";
    const VALUE: &str = "unrecognized enum value '";
    match read_stream(full_name, text, true) {
        Ok(messages) => Ok((messages, None)),
        Err(JsonError::Parse(e)) if e.contains(FIELD) || e.contains(VALUE) => {
            let quoted = |marker: &str| {
                e.split_once(marker)
                    .and_then(|(_, rest)| rest.split_once('\''))
                    .map(|(name, _)| name.to_string())
            };
            let what = quoted(FIELD)
                .or_else(|| quoted(VALUE).map(|v| format!("enum value '{v}'")))
                .unwrap_or_else(|| e.clone());
            Ok((read_stream(full_name, text, false)?, Some(what)))
        }
        Err(e) => Err(e),
    }
}

fn read_stream<M: Message + Default>(
    full_name: &str,
    text: &str,
    deny_unknown_fields: bool,
) -> Result<Vec<M>, JsonError> {
    let desc = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_string()))?;
    let options = DeserializeOptions::new().deny_unknown_fields(deny_unknown_fields);
    let mut de = serde_json::Deserializer::from_str(text);
    let mut out = Vec::new();
    // `end` succeeds once only whitespace is left.
    while de.end().is_err() {
        let dynamic = DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &options)
            .map_err(|e| JsonError::Parse(e.to_string()))?;
        out.push(
            dynamic
                .transcode_to::<M>()
                .map_err(|e| JsonError::Decode(e.to_string()))?,
        );
    }
    Ok(out)
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
    /// The text is not JSON of the message.
    #[error("{0}")]
    Parse(String),
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

    #[test]
    fn a_lenient_read_skips_fields_we_do_not_declare_and_names_the_first() {
        // A hubble L7 flow: `l7` (field 15) is reserved in our flow.proto.
        let line = r#"{"flow":{"verdict":"FORWARDED","Type":"L7","l7":{"type":"REQUEST",
            "http":{"method":"GET"}},"auth_type":"SPIRE"},"node_name":"kind-worker"}"#;
        assert!(matches!(
            from_json_stream::<GetFlowsResponse>("observer.GetFlowsResponse", line),
            Err(JsonError::Parse(e)) if e.contains("unrecognized field name 'l7'")
        ));
        let (read, skipped) =
            from_json_stream_lenient::<GetFlowsResponse>("observer.GetFlowsResponse", line)
                .unwrap();
        assert_eq!(skipped.as_deref(), Some("l7"));
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].node_name, "kind-worker");
        let Some(ResponseTypes::Flow(f)) = &read[0].response_types else {
            panic!("{read:?}")
        };
        assert_eq!(f.verdict, Verdict::Forwarded as i32);
        // An enum value of a newer Hubble is skipped too (the field reads as
        // unset), as protojson's DiscardUnknown does.
        let (read, skipped) = from_json_stream_lenient::<GetFlowsResponse>(
            "observer.GetFlowsResponse",
            r#"{"flow":{"verdict":"DROPPED","drop_reason_desc":"DROP_FROM_THE_FUTURE"}}"#,
        )
        .unwrap();
        assert_eq!(
            skipped.as_deref(),
            Some("enum value 'DROP_FROM_THE_FUTURE'")
        );
        let Some(ResponseTypes::Flow(f)) = &read[0].response_types else {
            panic!("{read:?}")
        };
        assert_eq!(
            (f.verdict, f.drop_reason_desc),
            (Verdict::Dropped as i32, 0)
        );
        // A line we know whole skips nothing; bad JSON stays an error.
        let (_, none) = from_json_stream_lenient::<GetFlowsResponse>(
            "observer.GetFlowsResponse",
            r#"{"node_name":"n"}"#,
        )
        .unwrap();
        assert_eq!(none, None);
        assert!(
            from_json_stream_lenient::<GetFlowsResponse>("observer.GetFlowsResponse", "{").is_err()
        );
    }

    #[test]
    fn reads_filters_back_to_back_by_either_field_name() {
        use crate::flow::FlowFilter;
        let text = r#"{"source_pod":["default/"],"verdict":["DROPPED"]} {"destinationPort":["53"]}
            {"tcp_flags":[{"SYN":true}]}"#;
        let filters: Vec<FlowFilter> = from_json_stream("flow.FlowFilter", text).unwrap();
        assert_eq!(
            filters,
            vec![
                FlowFilter {
                    source_pod: vec!["default/".into()],
                    verdict: vec![Verdict::Dropped as i32],
                    ..Default::default()
                },
                FlowFilter {
                    destination_port: vec!["53".into()],
                    ..Default::default()
                },
                FlowFilter {
                    tcp_flags: vec![TcpFlags {
                        syn: true,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ]
        );
        let none: Vec<FlowFilter> = from_json_stream("flow.FlowFilter", " \n").unwrap();
        assert_eq!(none, vec![]);
        let typo = from_json_stream::<FlowFilter>("flow.FlowFilter", r#"{"source_pods":["a"]}"#);
        assert_eq!(
            typo.unwrap_err().to_string(),
            "unrecognized field name 'source_pods' at line 1 column 14"
        );
        let not_a_list = from_json_stream::<FlowFilter>("flow.FlowFilter", r#"{"source_pod":"a"}"#);
        assert_eq!(
            not_a_list.unwrap_err().to_string(),
            "invalid type: string \"a\", expected a list at line 1 column 17"
        );
    }
}
