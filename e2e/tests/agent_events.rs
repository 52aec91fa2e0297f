//! Agent events (`GetAgentEvents`, `observe agent-events`): a real
//! flow-probe on a lab tells its start, its endpoints, their addresses'
//! identities, its policies and services, and then each policy change as it
//! is put in force; the answers decode as Cilium's own messages; the relay
//! merges every node's in time order.

use std::sync::Arc;
use std::time::Duration;

use e2e::in_process::{serve_probe, serve_probe_at};
use e2e::probe_metrics::POLICY_GENERATION;
use e2e::relay_harness::RelayUnderTest;
use observe_lab::Scenario;
use observer_proto::flow::agent_event::Notification;
use observer_proto::flow::{AgentEvent, AgentEventType, TimeNotification};
use observer_proto::observer::{GetAgentEventsRequest, GetAgentEventsResponse};
use observer_runtime::agent_events::AgentEventLog;
use observer_runtime::store::FlowStore;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

const SCENARIO: &str = r#"
endpoints:
  - {name: client, namespace: default, labels: {app: client}}
  - {name: api-1, namespace: default, labels: {app: api}}
  - {name: api-2, namespace: default, labels: {app: api}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: api-allow-client, namespace: default}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: client}}]
services:
  - name: api
    namespace: default
    vip: {ipv4: 198.18.100.10}
    ports: [{port: 80, protocol: TCP, targetPort: 8080}]
    selector: {app: api}
traffic: []
"#;

const DENY_CLIENT: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-deny-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: client}}]
"#;

/// An event as one comparable line.
fn summary(r: &GetAgentEventsResponse) -> String {
    let e = r.agent_event.as_ref().expect("an event");
    let kind = AgentEventType::try_from(e.r#type)
        .expect("a known type")
        .as_str_name();
    match &e.notification {
        Some(Notification::AgentStart(_)) | None => kind.to_string(),
        Some(Notification::EndpointUpdate(u)) => {
            format!("{kind} {} {}/{}", u.id, u.namespace, u.pod_name)
        }
        Some(Notification::IpcacheUpdate(i)) => format!(
            "{kind} {} {} {}/{}",
            i.cidr, i.identity, i.namespace, i.pod_name
        ),
        Some(Notification::PolicyUpdate(p)) => format!(
            "{kind} [{}] revision {} count {}",
            p.labels.join(","),
            p.revision,
            p.rule_count
        ),
        Some(Notification::ServiceUpsert(s)) => {
            let fe = s.frontend_address.clone().unwrap_or_default();
            let backends: Vec<String> = (s.backend_addresses.iter())
                .map(|b| format!("{}:{}", b.ip, b.port))
                .collect();
            format!(
                "{kind} {}/{} {}:{} -> {}",
                s.namespace,
                s.name,
                fe.ip,
                fe.port,
                backends.join(",")
            )
        }
        Some(Notification::ServiceDelete(s)) => format!("{kind} {}", s.id),
        Some(other) => format!("{kind} {other:?}"),
    }
}

fn policy_labels(name: &str) -> String {
    cluster_spec::policy::policy_labels(name, "default").join(",")
}

/// Every event an answer to `req` holds (not following).
async fn events(
    client: &mut observer_proto::observer::observer_client::ObserverClient<
        tonic::transport::Channel,
    >,
    req: GetAgentEventsRequest,
) -> Vec<GetAgentEventsResponse> {
    let mut answer = client.get_agent_events(req).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(r) = answer.message().await.unwrap() {
        got.push(r);
    }
    got
}

/// The next event of a follow, within 10 s.
async fn next(answer: &mut tonic::Streaming<GetAgentEventsResponse>) -> GetAgentEventsResponse {
    tokio::time::timeout(Duration::from_secs(10), answer.message())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .expect("the follow goes on")
}

/// `r` as Cilium's own `observer.GetAgentEventsResponse` reads it.
fn as_cilium(r: &GetAgentEventsResponse) -> DynamicMessage {
    let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/cilium_api.bin"));
    let pool = DescriptorPool::decode(bytes.as_ref()).expect("Cilium's descriptor set");
    let desc = pool
        .get_message_by_name("observer.GetAgentEventsResponse")
        .expect("Cilium's API has it");
    DynamicMessage::decode(desc, r.encode_to_vec().as_slice()).expect("decodes as Cilium's")
}

/// Field path `path` (dot-separated) of `m`, by Cilium's field names.
fn at(m: &DynamicMessage, path: &str) -> Value {
    let mut value = Value::Message(m.clone());
    for name in path.split('.') {
        let m = value.as_message().expect("a message on the way").clone();
        let field = m
            .descriptor()
            .get_field_by_name(name)
            .unwrap_or_else(|| panic!("Cilium's {} has no {name}", m.descriptor().full_name()));
        value = m.get_field(&field).into_owned();
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_tells_its_start_endpoints_policies_and_services_then_each_change() {
    let scenario = Scenario::parse(SCENARIO, "agent-events.yaml").expect("scenario parses");
    let env = e2e::start(&scenario, &[]);
    let mut client = env.client().await;
    let all = events(&mut client, GetAgentEventsRequest::default()).await;
    assert_eq!(summary(&all[0]), "AGENT_STARTED", "the start first");
    let Some(Notification::AgentStart(TimeNotification { time: Some(_) })) =
        &all[0].agent_event.as_ref().unwrap().notification
    else {
        panic!("the start's time: {:?}", all[0]);
    };
    assert!(all.iter().all(|r| r.node_name == "node1"));

    // What the probe read: the lab's endpoints file.
    let file = env.lab.endpoints_file();
    let identities = file.identities();
    let mut want = vec![
        format!(
            "POLICY_UPDATED [{}] revision 1 count 1",
            policy_labels("api-allow-client")
        ),
        format!(
            "SERVICE_UPSERTED default/api 198.18.100.10:80 -> {}",
            ["api-1", "api-2"]
                .map(|name| {
                    let e = file.endpoints.iter().find(|e| e.name == name).unwrap();
                    format!("{}:8080", e.ipv4.unwrap())
                })
                .join(",")
        ),
    ];
    for e in &file.endpoints {
        want.push(format!("ENDPOINT_CREATED {} default/{}", e.id, e.name));
        let identity = identities[&e.identity_labels()];
        let addrs = (e.ipv4.map(|a| format!("{a}/32")).into_iter())
            .chain(e.ipv6.map(|a| format!("{a}/128")));
        for cidr in addrs {
            want.push(format!(
                "IPCACHE_UPSERTED {cidr} {identity} default/{}",
                e.name
            ));
        }
    }
    want.sort();
    let mut got: Vec<String> = all[1..].iter().map(summary).collect();
    got.sort();
    assert_eq!(got, want);

    // As a Hubble client reads them: Cilium's field names and numbers.
    let policy = all
        .iter()
        .find(|r| summary(r).starts_with("POLICY_UPDATED"))
        .unwrap();
    let cilium = as_cilium(policy);
    assert_eq!(at(&cilium, "agent_event.type"), Value::EnumNumber(3));
    assert_eq!(
        at(&cilium, "agent_event.policy_update.revision"),
        Value::U64(1)
    );
    assert_eq!(
        at(&cilium, "agent_event.policy_update.rule_count"),
        Value::I64(1)
    );
    let labels = at(&cilium, "agent_event.policy_update.labels");
    let labels: Vec<&str> = (labels.as_list().unwrap().iter())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(labels.join(","), policy_labels("api-allow-client"));
    assert_eq!(at(&cilium, "node_name"), Value::String("node1".into()));
    let service = all
        .iter()
        .find(|r| summary(r).starts_with("SERVICE_UPSERTED"))
        .unwrap();
    let cilium = as_cilium(service);
    assert_eq!(
        at(&cilium, "agent_event.service_upsert.frontend_address.ip"),
        Value::String("198.18.100.10".into())
    );
    assert_eq!(
        at(&cilium, "agent_event.service_upsert.frontend_address.port"),
        Value::U32(80)
    );
    assert_eq!(
        at(&cilium, "agent_event.service_upsert.name"),
        Value::String("api".into())
    );

    // A follow sees a policy put in force, then taken out, each once, with
    // the policy generation it made.
    let mut follow = client
        .get_agent_events(GetAgentEventsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let deny = env.lab.policy_dir().join("50-deny.yaml");
    std::fs::write(&deny, DENY_CLIENT).unwrap();
    let added = summary(&next(&mut follow).await);
    let generation = tokio::task::block_in_place(|| env.wait_for_metric(POLICY_GENERATION, 2));
    assert_eq!(
        added,
        format!(
            "POLICY_UPDATED [{}] revision {generation} count 1",
            policy_labels("api-deny-client")
        )
    );
    std::fs::remove_file(&deny).unwrap();
    let removed = summary(&next(&mut follow).await);
    let generation =
        tokio::task::block_in_place(|| env.wait_for_metric(POLICY_GENERATION, generation + 1));
    let deleted = format!(
        "POLICY_DELETED [{}] revision {generation} count 1",
        policy_labels("api-deny-client")
    );
    assert_eq!(removed, deleted);
    // Each once in the probe's log too.
    let told: Vec<String> = (events(&mut client, GetAgentEventsRequest::default())
        .await
        .iter())
    .map(summary)
    .filter(|s| s.contains("api-deny-client"))
    .collect();
    assert_eq!(told, [added, removed]);

    // `observe agent-events`, as hubble prints them.
    let mut args: Vec<String> = ["agent-events", "--last", "1", "--print-node-name"]
        .map(String::from)
        .into();
    args.extend(env.server_args(env.probe.addr));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = e2e::observe(&args);
    let want = format!(
        " [node1]: POLICY_DELETED (labels: [{}], revision: {generation}, count: 1)\n",
        policy_labels("api-deny-client")
    );
    assert!(text.ends_with(&want) && text.lines().count() == 1, "{text}");
}

fn service_deleted(id: u32) -> AgentEvent {
    AgentEvent {
        r#type: AgentEventType::ServiceDeleted as i32,
        notification: Some(Notification::ServiceDelete(
            observer_proto::flow::ServiceDeleteNotification { id },
        )),
    }
}

/// A node and a service id, of each event.
fn sources(answer: &[GetAgentEventsResponse]) -> Vec<(String, u32)> {
    answer
        .iter()
        .map(|r| match &r.agent_event.as_ref().unwrap().notification {
            Some(Notification::ServiceDelete(s)) => (r.node_name.clone(), s.id),
            other => panic!("not a made-up event: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_merges_every_nodes_agent_events_in_time_order() {
    let (log1, log2) = (AgentEventLog::new("n1", 100), AgentEventLog::new("n2", 100));
    // Alternately on the two nodes, each stamped later than the one before.
    for id in 1..=4 {
        let log = if id % 2 == 1 { &log1 } else { &log2 };
        log.push([service_deleted(id)]);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (a1, stop1) = serve_probe("n1", Arc::new(FlowStore::new(16)), Some(log1.clone())).await;
    let (a2, stop2) = serve_probe("n2", Arc::new(FlowStore::new(16)), Some(log2.clone())).await;
    let relay = RelayUnderTest::start(vec![a1, a2.clone()]).await;
    relay
        .wait_status("both nodes", |s| s.num_connected_nodes == Some(2))
        .await;
    let mut client = relay.client().await;
    let all = events(&mut client, GetAgentEventsRequest::default()).await;
    let n = |node: &str, id| (node.to_string(), id);
    assert_eq!(
        sources(&all),
        [n("n1", 1), n("n2", 2), n("n1", 3), n("n2", 4)]
    );
    let last2 = GetAgentEventsRequest {
        number: 2,
        ..Default::default()
    };
    assert_eq!(
        sources(&events(&mut client, last2).await),
        [n("n1", 3), n("n2", 4)],
        "the last two of all nodes"
    );
    let window = GetAgentEventsRequest {
        since: all[1].time,
        until: all[2].time,
        ..Default::default()
    };
    assert_eq!(
        sources(&events(&mut client, window).await),
        [n("n2", 2), n("n1", 3)]
    );
    let refused = client
        .get_agent_events(GetAgentEventsRequest {
            first: true,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(refused.message(), "first cannot be combined with follow");

    // Following: the last one held, then each node's new ones.
    let mut follow = client
        .get_agent_events(GetAgentEventsRequest {
            number: 1,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sources(&[next(&mut follow).await]), [n("n2", 4)]);
    log2.push([service_deleted(5)]);
    assert_eq!(sources(&[next(&mut follow).await]), [n("n2", 5)]);
    log1.push([service_deleted(6)]);
    assert_eq!(sources(&[next(&mut follow).await]), [n("n1", 6)]);

    // n2 restarts where it served, with a new log: the follow asks it
    // again, for what it told since its follow ended (its start, here).
    let _ = stop2.send(true);
    relay
        .wait_status("n2 gone", |s| s.num_connected_nodes == Some(1))
        .await;
    let restarted = AgentEventLog::new("n2", 100);
    restarted.push([service_deleted(7)]);
    let (_, stop2) = serve_probe_at(
        &a2,
        "n2",
        Arc::new(FlowStore::new(16)),
        Some(restarted.clone()),
    )
    .await;
    assert_eq!(sources(&[next(&mut follow).await]), [n("n2", 7)]);
    restarted.push([service_deleted(8)]);
    assert_eq!(sources(&[next(&mut follow).await]), [n("n2", 8)]);
    drop(follow);
    relay.shutdown().await;
    let _ = (stop1.send(true), stop2.send(true));
}

/// Through the relay, a node it cannot reach is named on stderr, as hubble
/// names unavailable nodes: the answer lacks its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_relay_an_unavailable_node_is_named_on_stderr() {
    let log = AgentEventLog::new("n1", 10);
    log.push([service_deleted(1)]);
    let (a1, stop) = serve_probe("n1", Arc::new(FlowStore::new(16)), Some(log)).await;
    let dead = e2e::REFUSING_PEER.to_string();
    let relay = RelayUnderTest::start(vec![a1, dead.clone()]).await;
    relay
        .wait_status("n1 up, the other not", |s| {
            (s.num_connected_nodes, s.num_unavailable_nodes) == (Some(1), Some(1))
        })
        .await;
    let server = relay.addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(e2e::observe_binary())
            .args(["agent-events", "--server", &server])
            .output()
            .expect("run observe")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.ends_with(": SERVICE_DELETED (id: 1)\n") && stdout.lines().count() == 1,
        "{stdout}"
    );
    assert_eq!(stderr, format!("1 nodes are unavailable: {dead}\n"));

    // Following, as hubble's: the last events first, then Ctrl-C ends it
    // with a success and the table's rows printed; `-s` leaves out the
    // unavailable node. Before, a follow began with no event and SIGINT
    // killed it (exit 130).
    let server = relay.addr().to_string();
    let mut child = std::process::Command::new(e2e::observe_binary())
        .args([
            "agent-events",
            "--server",
            &server,
            "-f",
            "-o",
            "table",
            "-s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run observe");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let first_rows = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut rows = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read observe's output");
            rows.push(line);
        }
        (rows, stdout)
    });
    let (rows, mut stdout) = tokio::time::timeout(e2e::WAIT, first_rows)
        .await
        .expect("the held event is printed before the follow")
        .unwrap();
    assert!(rows[0].starts_with("TIMESTAMP "), "{rows:?}");
    assert!(
        rows[1].contains(" SERVICE_DELETED ") && rows[1].ends_with("id: 1\n"),
        "{rows:?}"
    );
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        (child.wait_with_output().expect("observe ends"), rest)
    });
    let (out, rest) = tokio::time::timeout(e2e::WAIT, out)
        .await
        .expect("observe ends at Ctrl-C")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!((rest.as_str(), out.stderr.as_slice()), ("", &b""[..]));
    relay.shutdown().await;
    let _ = stop.send(true);
}
