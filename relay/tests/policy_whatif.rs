//! The policy what-if in SQL over a known history: a recorded policy state
//! (api admits frontend on 8080/TCP), flows stamped with it, part in files
//! and part in memory; `policy_replay`, `policy_whatif` and `policy_states`
//! must answer exactly, and the guard lets these through and nothing more.

mod common;

use std::path::Path;
use std::sync::Arc;

use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::policy::{PolicyFile, PolicyState};
use common::{engine, ingest, scratch, table};
use observer_proto::flow::layer4::Protocol;
use observer_proto::flow::{
    CiliumEventType, DropReason, Flow, IcmPv6, TraceObservationPoint, TraceReason,
    TrafficDirection, Verdict,
};
use observer_proto::observe::v1::PolicyStamp;
use relay::history::History;
use relay::history::policies::InForce;
use relay::sql::SqlError;
use test_support::flows::{endpoint, flags, ip, l4, tcp, with_deployment};

const ENDPOINTS: &str = "endpoints:
- {id: 1, name: frontend, namespace: default, labels: {app: frontend}, ipv4: 10.0.0.1, node: n1}
- {id: 2, name: api, namespace: default, labels: {app: api}, ipv4: 10.0.0.2, ipv6: 'fd00::2', node: n1}
- {id: 3, name: client, namespace: other, labels: {app: client}, ipv4: 10.0.0.3, node: n2}
";

const IN_FORCE: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow-frontend}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
";

/// Replaces api-allow-frontend: client instead of frontend.
const DRAFT: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow-frontend}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client, io.kubernetes.pod.namespace: other}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
";

const T0: i64 = 1_714_557_600_000_000_000; // 2024-05-01T10:00:00Z

fn state() -> PolicyState {
    PolicyState {
        files: vec![PolicyFile {
            name: "api.yaml".into(),
            text: IN_FORCE.into(),
        }],
        endpoints: EndpointsFile::parse(ENDPOINTS, "e").unwrap(),
    }
}

/// The trace of a first packet at `api`'s interface (one no policy judged)
/// at `T0 + secs`, stamped with `version`.
fn at_api(secs: i64, uuid: &str, from: (&str, &str), version: &str) -> Flow {
    let (pod, addr) = from;
    let ns = if pod == "client" { "other" } else { "default" };
    Flow {
        time: Some(prost_types::Timestamp {
            seconds: (T0 / 1_000_000_000) + secs,
            nanos: 0,
        }),
        uuid: uuid.into(),
        node_name: "n1".into(),
        verdict: Verdict::Forwarded as i32,
        ip: ip(addr, "10.0.0.2"),
        l4: tcp(40000, 8080, flags("SYN")),
        source: Some(with_deployment(
            endpoint(ns, pod, 300, &[&format!("k8s:app={pod}")]),
            pod,
        )),
        destination: Some(with_deployment(
            endpoint("default", "api", 301, &["k8s:app=api"]),
            "api",
        )),
        event_type: event_type(4, 0),
        trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
        traffic_direction: TrafficDirection::Ingress as i32,
        trace_reason: TraceReason::New as i32,
        is_reply: Some(false),
        policy_in_force: Some(PolicyStamp {
            generation: 1,
            version: version.into(),
        }),
        ..Default::default()
    }
}

fn event_type(r#type: i32, sub_type: i32) -> Option<CiliumEventType> {
    Some(CiliumEventType { r#type, sub_type })
}

/// `flow` as the PolicyVerdict of the datapath's judgement: no trace reason.
fn verdict(flow: Flow) -> Flow {
    Flow {
        event_type: event_type(5, 0),
        trace_reason: TraceReason::Unknown as i32,
        ..flow
    }
}

/// `flow` denied by default deny: its PolicyVerdict and its Drop, neither
/// with an observation point or a reply bit, as Hubble's.
fn denial(flow: Flow, drop_uuid: &str) -> [Flow; 2] {
    let policy_verdict = Flow {
        verdict: Verdict::Dropped as i32,
        drop_reason: DropReason::PolicyDenied as u32,
        drop_reason_desc: DropReason::PolicyDenied as i32,
        trace_observation_point: TraceObservationPoint::UnknownPoint as i32,
        is_reply: None,
        ..verdict(flow)
    };
    let drop = Flow {
        uuid: drop_uuid.into(),
        event_type: event_type(1, DropReason::PolicyDenied as i32),
        ..policy_verdict.clone()
    };
    [policy_verdict, drop]
}

/// The flows (four in a file, four in memory) and the state they name: a
/// judged first packet (u1), a denial (u2 and its Drop u2d, which is not
/// replayed), a reply and a later packet (not first ones), an unjudged
/// neighbour solicitation, and two first packets that cannot be replayed.
fn history(dir: &Path) -> Arc<History> {
    let s = state();
    let version = s.version().unwrap();
    let v = version.as_str();
    let frontend = ("frontend", "10.0.0.1");
    let client = ("client", "10.0.0.3");
    let [denied, dropped] = denial(at_api(2, "u2", client, v), "u2d");
    let mut reply = at_api(3, "u3", frontend, v);
    reply.is_reply = Some(true);
    reply.trace_reason = TraceReason::Reply as i32;
    let mut later = at_api(4, "u4", frontend, v);
    later.trace_reason = TraceReason::Established as i32;
    let mut nd = at_api(5, "u5", ("frontend", "fd00::1"), v);
    nd.ip = ip("fd00::1", "fd00::2");
    nd.l4 = l4(Protocol::IcmPv6(IcmPv6 {
        r#type: 135,
        code: 0,
    }));
    let unknown = at_api(6, "u6", frontend, "00000000000000ff");
    let mut unstamped = at_api(7, "u7", frontend, v);
    unstamped.policy_in_force = None;
    let flows = [
        verdict(at_api(1, "u1", frontend, v)),
        denied,
        dropped,
        reply,
        later,
        nd,
        unknown,
        unstamped,
    ];
    let h = ingest(dir, flows.to_vec(), 4);
    let at = InForce {
        node: "n1".into(),
        run: 7,
        generation: 1,
        version: version.clone(),
        applied_ns: T0 - 1_000_000_000,
    };
    h.policies().record(at, s).unwrap();
    h
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[tokio::test]
async fn every_first_packet_is_replayed_against_the_policy_it_passed_under() {
    let dir = scratch("policy-replay");
    let e = engine(&history(&dir));
    let sql = "SELECT uuid, edge, direction, verdict, verdict_before, rule_before, \
               verdict_after, rule_after, change, problem FROM policy_replay('') ORDER BY uuid";
    assert_eq!(
        table(&e, sql).await,
        "+------+-------------------------------+-----------+-----------+----------------+----------------------------+---------------+----------------------------+------------+---------------------------------------------------+
| uuid | edge                          | direction | verdict   | verdict_before | rule_before                | verdict_after | rule_after                 | change     | problem                                           |
+------+-------------------------------+-----------+-----------+----------------+----------------------------+---------------+----------------------------+------------+---------------------------------------------------+
| u1   | default/frontend->default/api | INGRESS   | FORWARDED | FORWARDED      | default/api-allow-frontend | FORWARDED     | default/api-allow-frontend | UNCHANGED  |                                                   |
| u2   | other/client->default/api     | INGRESS   | DROPPED   | DROPPED        | default deny               | DROPPED       | default deny               | UNCHANGED  |                                                   |
| u5   | default/frontend->default/api | INGRESS   | FORWARDED | FORWARDED      |                            | FORWARDED     |                            | UNCHANGED  |                                                   |
| u6   | default/frontend->default/api |           | FORWARDED |                |                            |               |                            | UNREPLAYED | policy version 00000000000000ff is not in history |
| u7   | default/frontend->default/api |           | FORWARDED |                |                            |               |                            | UNREPLAYED | the flow names no policy version                  |
+------+-------------------------------+-----------+-----------+----------------+----------------------------+---------------+----------------------------+------------+---------------------------------------------------+"
    );
    let sql = format!(
        "SELECT uuid, verdict_before, verdict_after, rule_after, change FROM policy_whatif({}) \
         WHERE time >= '2024-05-01T10:00:00Z' AND time <= '2024-05-01T10:00:06Z' ORDER BY uuid",
        quoted(DRAFT)
    );
    assert_eq!(
        table(&e, &sql).await,
        "+------+----------------+---------------+----------------------------+-------------------+
| uuid | verdict_before | verdict_after | rule_after                 | change            |
+------+----------------+---------------+----------------------------+-------------------+
| u1   | FORWARDED      | DROPPED       | default deny               | ALLOWED_TO_DENIED |
| u2   | DROPPED        | FORWARDED     | default/api-allow-frontend | DENIED_TO_ALLOWED |
| u6   |                |               |                            | UNREPLAYED        |
+------+----------------+---------------+----------------------------+-------------------+"
    );
    // The same draft in audit mode: frontend's first packet would be a
    // would-be drop (AUDIT), not a drop.
    let audit = DRAFT.replace(
        "metadata: {name: api-allow-frontend}",
        "metadata: {name: api-allow-frontend, annotations: {observe.io/audit: 'true'}}",
    );
    let sql = format!(
        "SELECT uuid, verdict_before, verdict_after, rule_after, change FROM policy_whatif({}) \
         WHERE time >= '2024-05-01T10:00:00Z' AND time <= '2024-05-01T10:00:06Z' ORDER BY uuid",
        quoted(&audit)
    );
    assert_eq!(
        table(&e, &sql).await,
        "+------+----------------+---------------+----------------------------+-------------------+
| uuid | verdict_before | verdict_after | rule_after                 | change            |
+------+----------------+---------------+----------------------------+-------------------+
| u1   | FORWARDED      | AUDIT         | default deny               | ALLOWED_TO_AUDIT  |
| u2   | DROPPED        | FORWARDED     | default/api-allow-frontend | DENIED_TO_ALLOWED |
| u6   |                |               |                            | UNREPLAYED        |
+------+----------------+---------------+----------------------------+-------------------+"
    );
    assert_eq!(
        table(
            &e,
            "SELECT node, run, generation, policies, files, endpoints FROM policy_states"
        )
        .await,
        "+------+-----+------------+----------------------------+----------+-----------+
| node | run | generation | policies                   | files    | endpoints |
+------+-----+------------+----------------------------+----------+-----------+
| n1   | 7   | 1          | default/api-allow-frontend | api.yaml | 3         |
+------+-----+------------+----------------------------+----------+-----------+"
    );
}

#[tokio::test]
async fn only_our_table_functions_pass_and_a_bad_draft_is_named() {
    let dir = scratch("policy-whatif-refused");
    let e = engine(&history(&dir));
    for (sql, want) in [
        (
            "SELECT * FROM generate_series(1, 3)",
            "not `generate_series`",
        ),
        ("SELECT * FROM read_parquet('/etc')", "not `read_parquet`"),
    ] {
        let err = e.query(sql).await.unwrap_err();
        assert!(matches!(err, SqlError::Refused(_)), "{sql}: {err:?}");
        assert!(err.to_string().contains(want), "{sql}: {err}");
    }
    for (sql, want) in [
        (
            "SELECT * FROM policy_whatif(1)".to_string(),
            "policy_whatif takes the draft policies as string constants",
        ),
        (
            "SELECT * FROM policy_whatif()".to_string(),
            "policy_whatif needs the draft policies",
        ),
        (
            "SELECT * FROM policy_replay('kind: Nope')".to_string(),
            "policy_replay: policy draft: kind: expected CiliumNetworkPolicy, got \"Nope\"",
        ),
        (
            format!(
                "SELECT * FROM policy_whatif({}, {})",
                quoted(DRAFT),
                quoted(DRAFT)
            ),
            "is already defined in draft 1",
        ),
        (
            "SELECT * FROM policy_whatif('') WHERE time <> '2024-05-01T10:00:00Z'".to_string(),
            "so it must compare `time` with a constant",
        ),
        (
            "SELECT nope FROM policy_whatif('')".to_string(),
            "the columns of `policy_whatif` are: time, node, uuid",
        ),
    ] {
        let err = e.query(&sql).await.unwrap_err().to_string();
        assert!(err.contains(want), "{sql}: {err}");
    }
    // Said as it is, without DataFusion's "Error during planning: ".
    let err = e
        .query(&format!(
            "SELECT * FROM policy_whatif({}, {})",
            quoted(DRAFT),
            quoted(DRAFT)
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("policy_whatif: policy draft 2: "), "{err}");
}

/// A history file written before the what-if's columns existed (no
/// `trace_reason`, `icmp_*`, `policy_*`): SQL reads them null, so its traces
/// are not known first packets and its verdicts name no policy version to
/// replay against, and GetFlows' scan reads it too.
#[tokio::test]
async fn a_file_written_before_the_what_if_columns_reads_with_them_null() {
    use datafusion::parquet::arrow::ArrowWriter;
    use relay::history::schema::{self, Rec};
    use relay::history::{files, scan};

    let dir = scratch("policy-whatif-old-file");
    let flow = at_api(1, "old", ("frontend", "10.0.0.1"), "0123456789abcdef");
    let judged = verdict(at_api(
        1,
        "old-verdict",
        ("frontend", "10.0.0.1"),
        "0123456789abcdef",
    ));
    let time = T0 + 1_000_000_000;
    let batch = schema::to_batch(&[
        Rec {
            node: "n1",
            time,
            flow: &flow,
        },
        Rec {
            node: "n1",
            time,
            flow: &judged,
        },
    ]);
    let new = [
        "icmp_type",
        "icmp_code",
        "trace_reason",
        "policy_generation",
        "policy_version",
    ];
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|i| !new.contains(&batch.schema().field(*i).name().as_str()))
        .collect();
    let old = batch.project(&keep).unwrap();
    let partition = files::partition_dir(&dir, time);
    files::create_dir(&partition).unwrap();
    let path = partition.join(files::file_name(time, time, 0, 0));
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), old.schema(), None).unwrap();
    w.write(&old).unwrap();
    w.close().unwrap();

    let h = History::open(common::config(&dir)).unwrap();
    let e = engine(&h);
    assert_eq!(
        table(
            &e,
            "SELECT uuid, trace_reason, policy_version FROM flows ORDER BY uuid"
        )
        .await,
        "+-------------+--------------+----------------+
| uuid        | trace_reason | policy_version |
+-------------+--------------+----------------+
| old         |              |                |
| old-verdict |              |                |
+-------------+--------------+----------------+"
    );
    assert_eq!(
        table(&e, "SELECT uuid, change, problem FROM policy_replay('')").await,
        "+-------------+------------+----------------------------------+
| uuid        | change     | problem                          |
+-------------+------------+----------------------------------+
| old-verdict | UNREPLAYED | the flow names no policy version |
+-------------+------------+----------------------------------+"
    );
    let snap = h.snapshot().unwrap();
    let sources = snap.files.into_iter().map(scan::Source::File).collect();
    let rows: Vec<_> = scan::Merge::new(sources, scan::Range::ALL, 16)
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert_eq!(rows[0].schema(), schema::schema());
}
