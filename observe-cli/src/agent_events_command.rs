//! `observe agent-events`: what changed in the agents (flow-probe): their
//! start, policies, endpoints, ipcache entries and services, as `hubble
//! observe agent-events` prints them: compact lines `TIME [NODE]: TYPE
//! (details)`, dict blocks, a table, or each response as a protojson line
//! (`-o json` and `-o jsonpb`, as `observe flows`). Through the relay, every
//! connected node's, in time order.

use std::time::SystemTime;

use observer_proto::flow::agent_event::Notification;
use observer_proto::flow::{AgentEvent, AgentEventType, ServiceUpsertNotificationAddr};
use observer_proto::observer::{GetAgentEventsRequest, GetAgentEventsResponse};
use observer_proto::time::nanos;

use crate::connect::ConnectArgs;
use crate::flows::output::{Columns, SEPARATOR, TimeFormat, escape_controls, timestamp_as};
use crate::flows::request::{DEFAULT_SERVERS, check_counts, parse_time};

/// How `observe agent-events` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentEventsFormat {
    /// One line per event.
    #[default]
    Compact,
    /// A block per event.
    Dict,
    /// Aligned columns (buffered to fit, or as they come with --follow).
    #[value(alias = "tab")]
    Table,
    /// Each response (event, node, time) as protojson, a line each.
    Json,
    /// As json.
    Jsonpb,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AgentEventsArgs {
    /// The server (default localhost:4245, the relay, then localhost:4244,
    /// a probe) and TLS.
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t)]
    pub output: AgentEventsFormat,
    /// The last N events (without --since or --until: the last 20, also
    /// before a --follow, as hubble's).
    #[arg(long, allow_negative_numbers = true)]
    pub last: Option<u64>,
    /// The first N events (hubble takes the flag and sends the last 20).
    #[arg(long, allow_negative_numbers = true)]
    pub first: Option<u64>,
    /// Every event the server holds.
    #[arg(long)]
    pub all: bool,
    /// Keep printing events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Events since a time: a duration ago (`30s`, `5m`) or a time, as
    /// `observe flows --since` takes it.
    #[arg(long, allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Events until a time, as --since (not with --follow, as hubble's).
    #[arg(long, allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Print the node name in each line.
    #[arg(long)]
    pub print_node_name: bool,
    /// Nothing on stderr but a fatal error: not the nodes a relay cannot
    /// reach (hubble's -s).
    #[arg(long, short = 's')]
    pub silent_errors: bool,
    /// Taken for hubble's flag; agent events carry no node status to tell.
    #[arg(long, short = 'D')]
    pub debug: bool,
    /// Layout of times in compact and dict output (UTC).
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    pub time_format: TimeFormat,
}

impl AgentEventsArgs {
    /// The request the flags make; bad flags are named.
    pub fn request(&self, now: SystemTime) -> anyhow::Result<GetAgentEventsRequest> {
        check_counts(self.first, self.last, self.all, self.follow)?;
        // As hubble's: following, --until is not sent.
        let until_given = self.until.as_deref().filter(|_| !self.follow);
        let window = self.since.is_some() || until_given.is_some();
        let (number, first) = match (self.first.filter(|n| *n > 0), self.last.filter(|n| *n > 0)) {
            (Some(n), _) => (n, true),
            (None, Some(n)) => (n, false),
            (None, None) if self.all && !window => (u64::MAX, false),
            // Without a window (neither end), the last 20, and a follow
            // too starts with them, as `hubble observe agent-events` does
            // (`hubble observe` flows does not).
            (None, None) if !window => (20, false),
            (None, None) => (0, false),
        };
        let since = (self.since.as_deref())
            .map(|s| parse_time("since", s, now))
            .transpose()?;
        let until = until_given
            .map(|s| parse_time("until", s, now))
            .transpose()?;
        if let (Some(s), Some(u)) = (&since, &until) {
            anyhow::ensure!(
                nanos(s) <= nanos(u),
                "--since {} is after --until {}: no event can be between them",
                self.since.as_deref().unwrap_or_default(),
                self.until.as_deref().unwrap_or_default()
            );
        }
        Ok(GetAgentEventsRequest {
            number,
            first,
            follow: self.follow,
            since,
            until,
        })
    }
}

/// Asks the server and prints what it answers, as it comes.
pub async fn run(args: AgentEventsArgs) -> anyhow::Result<()> {
    let request = args.request(SystemTime::now())?;
    let target = args.connect.target(&DEFAULT_SERVERS)?;
    let (mut client, address) = target.observer().await?;
    let mut answer = client
        .get_agent_events(request)
        .await
        .map_err(|s| target.status_error(s))?
        .into_inner();
    if args.follow && !args.silent_errors {
        tell_unavailable(&mut client).await;
    }
    let mut table = (args.output == AgentEventsFormat::Table).then(|| table(&args));
    let mut printed = 0usize;
    // Ctrl-C ends the answer as its end would, as in `observe flows`: a
    // table held is printed, and the exit is a success.
    let interrupted = crate::flows::first_interrupt();
    crate::flows::second_interrupt_exits();
    tokio::pin!(interrupted);
    loop {
        let message = tokio::select! {
            message = answer.message() => message,
            () = &mut interrupted => break,
        };
        let r = match message {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(s) => {
                if let Some(t) = &mut table {
                    crate::pipe::print(&t.finish())?;
                }
                return Err(target.stream_error(s, address));
            }
        };
        let text = match &mut table {
            Some(t) => t.push(cells(&r, &args)),
            None => render(&r, &args, printed)?,
        };
        crate::pipe::print(&text)?;
        printed += 1;
    }
    if let Some(t) = &mut table {
        crate::pipe::print(&t.finish())?;
    }
    if !args.silent_errors {
        tell_unavailable(&mut client).await;
    }
    Ok(())
}

/// Through a relay: the nodes it cannot reach, whose events the answer
/// lacks, on stderr as hubble words unavailable nodes. Nothing when the
/// server is a probe or does not say.
async fn tell_unavailable(
    client: &mut observer_proto::observer::observer_client::ObserverClient<
        tonic::transport::Channel,
    >,
) {
    let asked = client
        .server_status(observer_proto::observer::ServerStatusRequest {})
        .await;
    let Ok(status) = asked.map(tonic::Response::into_inner) else {
        return;
    };
    if let Some(n) = status.num_unavailable_nodes.filter(|n| *n > 0) {
        crate::pipe::eprint(&format!(
            "{n} nodes are unavailable: {}\n",
            status.unavailable_nodes.join(", ")
        ));
    }
}

/// The table `-o table` prints: buffered, or row by row with --follow.
pub fn table(args: &AgentEventsArgs) -> Columns {
    let mut header = vec!["TIMESTAMP"];
    let mut start = vec![19];
    if args.print_node_name {
        header.push("NODE");
        start.push(12);
    }
    header.extend(["TYPE", "DETAILS"]);
    start.push(20);
    let header = header.into_iter().map(str::to_string).collect();
    if args.follow {
        Columns::followed(header, start)
    } else {
        Columns::buffered(header)
    }
}

/// An event's cells in [`table`].
pub fn cells(r: &GetAgentEventsResponse, args: &AgentEventsArgs) -> Vec<String> {
    let event = r.agent_event.clone().unwrap_or_default();
    let mut out = vec![timestamp_as(r.time.as_ref(), args.time_format)];
    if args.print_node_name {
        out.push(escape_controls(&r.node_name).into_owned());
    }
    out.push(type_name(&event));
    out.push(escape_controls(&details(&event, args.time_format)).into_owned());
    out
}

/// One event as `args.output` prints it (a table's row: [`cells`]);
/// `before`: how many were printed before it (a dict block after another
/// is separated from it).
pub fn render(
    r: &GetAgentEventsResponse,
    args: &AgentEventsArgs,
    before: usize,
) -> anyhow::Result<String> {
    let event = r.agent_event.clone().unwrap_or_default();
    let time = timestamp_as(r.time.as_ref(), args.time_format);
    Ok(match args.output {
        AgentEventsFormat::Table => {
            let mut t = table(args);
            t.push(cells(r, args)) + &t.finish()
        }
        AgentEventsFormat::Json | AgentEventsFormat::Jsonpb => format!(
            "{}\n",
            observer_proto::json::to_json("observer.GetAgentEventsResponse", r)?
        ),
        AgentEventsFormat::Compact => {
            let node = if args.print_node_name {
                format!(" [{}]", r.node_name)
            } else {
                String::new()
            };
            let line = format!(
                "{time}{node}: {} ({})",
                type_name(&event),
                details(&event, args.time_format)
            );
            format!("{}\n", escape_controls(&line))
        }
        AgentEventsFormat::Dict => {
            let mut text = String::new();
            if before > 0 {
                text += SEPARATOR;
                text += "\n";
            }
            text += &format!("  TIMESTAMP: {time}\n");
            if args.print_node_name {
                text += &format!("       NODE: {}\n", r.node_name);
            }
            text += &format!("       TYPE: {}\n", type_name(&event));
            text += &format!("    DETAILS: {}\n", details(&event, args.time_format));
            escape_controls(text.trim_end_matches('\n')).into_owned() + "\n"
        }
    })
}

/// The event's type as Hubble names it; a number it does not know, as the
/// number.
fn type_name(e: &AgentEvent) -> String {
    AgentEventType::try_from(e.r#type)
        .map_or_else(|_| e.r#type.to_string(), |t| t.as_str_name().to_string())
}

/// As Go's `net.JoinHostPort`: the address as received, in brackets when
/// it has a `:` (IPv6, with a zone or not).
fn address(a: &ServiceUpsertNotificationAddr) -> String {
    if a.ip.contains(':') {
        format!("[{}]:{}", a.ip, a.port)
    } else {
        format!("{}:{}", a.ip, a.port)
    }
}

/// What the event says, as `hubble observe agent-events` words it;
/// `UNKNOWN` when its notification does not go with its type.
fn details(e: &AgentEvent, time: TimeFormat) -> String {
    use AgentEventType as T;
    let kind = AgentEventType::try_from(e.r#type).unwrap_or(T::AgentEventUnknown);
    match (kind, &e.notification) {
        (T::AgentEventUnknown, Some(Notification::Unknown(u))) => {
            format!("type: {}, notification: {}", u.r#type, u.notification)
        }
        (T::AgentStarted, Some(Notification::AgentStart(s))) => {
            format!("start time: {}", timestamp_as(s.time.as_ref(), time))
        }
        (T::PolicyUpdated | T::PolicyDeleted, Some(Notification::PolicyUpdate(p))) => format!(
            "labels: [{}], revision: {}, count: {}",
            p.labels.join(","),
            p.revision,
            p.rule_count
        ),
        (
            T::EndpointRegenerateSuccess | T::EndpointRegenerateFailure,
            Some(Notification::EndpointRegenerate(r)),
        ) => {
            let mut text = format!("id: {}, labels: [{}]", r.id, r.labels.join(","));
            if !r.error.is_empty() {
                text += &format!(", error: {}", r.error);
            }
            text
        }
        (T::EndpointCreated | T::EndpointDeleted, Some(Notification::EndpointUpdate(ep))) => {
            let mut text = format!("id: {}", ep.id);
            if !ep.namespace.is_empty() {
                text += &format!(", namespace: {}", ep.namespace);
            }
            if !ep.pod_name.is_empty() {
                text += &format!(", pod name: {}", ep.pod_name);
            }
            text
        }
        (T::IpcacheUpserted | T::IpcacheDeleted, Some(Notification::IpcacheUpdate(i))) => {
            let mut text = format!("cidr: {}, identity: {}", i.cidr, i.identity);
            if let Some(old) = i.old_identity {
                text += &format!(", old identity: {old}");
            }
            if !i.host_ip.is_empty() {
                text += &format!(", host ip: {}", i.host_ip);
            }
            if !i.old_host_ip.is_empty() {
                text += &format!(", old host ip: {}", i.old_host_ip);
            }
            text + &format!(", encrypt key: {}", i.encrypt_key)
        }
        (T::ServiceUpserted, Some(Notification::ServiceUpsert(s))) => {
            let mut text = format!("id: {}", s.id);
            if let Some(front) = &s.frontend_address {
                text += &format!(", frontend: {}", address(front));
            }
            if !s.backend_addresses.is_empty() {
                let backends: Vec<String> = s.backend_addresses.iter().map(address).collect();
                text += &format!(", backends: [{}]", backends.join(","));
            }
            if !s.r#type.is_empty() {
                text += &format!(", type: {}", s.r#type);
            }
            if !s.namespace.is_empty() {
                text += &format!(", namespace: {}", s.namespace);
            }
            if !s.name.is_empty() {
                text += &format!(", name: {}", s.name);
            }
            text
        }
        (T::ServiceDeleted, Some(Notification::ServiceDelete(s))) => format!("id: {}", s.id),
        _ => "UNKNOWN".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use observer_proto::flow::{
        AgentEventUnknown, EndpointRegenNotification, EndpointUpdateNotification,
        IpCacheNotification, PolicyUpdateNotification, ServiceDeleteNotification,
        ServiceUpsertNotification, TimeNotification,
    };
    use observer_proto::time::timestamp;

    use super::*;

    const T: i128 = 1_796_659_253_123_000_000; // Dec  7 2026 16:00:53.123 UTC

    fn args(output: AgentEventsFormat, node: bool) -> AgentEventsArgs {
        AgentEventsArgs {
            connect: ConnectArgs::default(),
            output,
            last: None,
            first: None,
            all: false,
            follow: false,
            since: None,
            until: None,
            print_node_name: node,
            silent_errors: false,
            debug: false,
            time_format: TimeFormat::default(),
        }
    }

    fn response(kind: AgentEventType, n: Notification) -> GetAgentEventsResponse {
        GetAgentEventsResponse {
            agent_event: Some(AgentEvent {
                r#type: kind as i32,
                notification: Some(n),
            }),
            node_name: "node1".into(),
            time: Some(timestamp(T)),
        }
    }

    /// Each kind flow-probe tells, as hubble prints it.
    #[test]
    fn compact_lines_read_as_hubbles() {
        let line = |r: &GetAgentEventsResponse| {
            render(r, &args(AgentEventsFormat::Compact, false), 0).unwrap()
        };
        let cases = [
            (
                response(
                    AgentEventType::AgentStarted,
                    Notification::AgentStart(TimeNotification {
                        time: Some(timestamp(T - 2_000_000)),
                    }),
                ),
                "Dec  7 16:00:53.123: AGENT_STARTED (start time: Dec  7 16:00:53.121)\n",
            ),
            (
                response(
                    AgentEventType::PolicyUpdated,
                    Notification::PolicyUpdate(PolicyUpdateNotification {
                        labels: vec!["k8s:a=b".into(), "k8s:c=d".into()],
                        revision: 3,
                        rule_count: 1,
                    }),
                ),
                "Dec  7 16:00:53.123: POLICY_UPDATED (labels: [k8s:a=b,k8s:c=d], revision: 3, count: 1)\n",
            ),
            (
                response(
                    AgentEventType::EndpointDeleted,
                    Notification::EndpointUpdate(EndpointUpdateNotification {
                        id: 12,
                        namespace: "default".into(),
                        pod_name: "api-1".into(),
                        ..Default::default()
                    }),
                ),
                "Dec  7 16:00:53.123: ENDPOINT_DELETED (id: 12, namespace: default, pod name: api-1)\n",
            ),
            (
                response(
                    AgentEventType::IpcacheUpserted,
                    Notification::IpcacheUpdate(IpCacheNotification {
                        cidr: "198.18.1.10/32".into(),
                        identity: 4242,
                        old_identity: Some(4241),
                        ..Default::default()
                    }),
                ),
                "Dec  7 16:00:53.123: IPCACHE_UPSERTED (cidr: 198.18.1.10/32, identity: 4242, old identity: 4241, encrypt key: 0)\n",
            ),
            (
                response(
                    AgentEventType::ServiceUpserted,
                    Notification::ServiceUpsert(ServiceUpsertNotification {
                        id: 7,
                        frontend_address: Some(ServiceUpsertNotificationAddr {
                            ip: "fd42::100".into(),
                            port: 80,
                        }),
                        backend_addresses: vec![
                            // As received, bracketed as Go's JoinHostPort
                            // does (a Cilium agent's text, a zone).
                            ServiceUpsertNotificationAddr {
                                ip: "FD42::11".into(),
                                port: 8080,
                            },
                            ServiceUpsertNotificationAddr {
                                ip: "fe80::1%eth0".into(),
                                port: 8080,
                            },
                        ],
                        r#type: "ClusterIP".into(),
                        name: "api".into(),
                        namespace: "default".into(),
                        ..Default::default()
                    }),
                ),
                "Dec  7 16:00:53.123: SERVICE_UPSERTED (id: 7, frontend: [fd42::100]:80, backends: [[FD42::11]:8080,[fe80::1%eth0]:8080], type: ClusterIP, namespace: default, name: api)\n",
            ),
            (
                response(
                    AgentEventType::ServiceDeleted,
                    Notification::ServiceDelete(ServiceDeleteNotification { id: 7 }),
                ),
                "Dec  7 16:00:53.123: SERVICE_DELETED (id: 7)\n",
            ),
            (
                response(
                    AgentEventType::ServiceDeleted,
                    Notification::AgentStart(TimeNotification::default()),
                ),
                "Dec  7 16:00:53.123: SERVICE_DELETED (UNKNOWN)\n",
            ),
            // A Cilium agent's, through our relay.
            (
                response(
                    AgentEventType::EndpointRegenerateFailure,
                    Notification::EndpointRegenerate(EndpointRegenNotification {
                        id: 3,
                        labels: vec!["k8s:a=b".into()],
                        error: "no space".into(),
                    }),
                ),
                "Dec  7 16:00:53.123: ENDPOINT_REGENERATE_FAILURE (id: 3, labels: [k8s:a=b], error: no space)\n",
            ),
            (
                response(
                    AgentEventType::AgentEventUnknown,
                    Notification::Unknown(AgentEventUnknown {
                        r#type: "x".into(),
                        notification: "y".into(),
                    }),
                ),
                "Dec  7 16:00:53.123: AGENT_EVENT_UNKNOWN (type: x, notification: y)\n",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(line(&r), want);
        }
    }

    #[test]
    fn node_names_dict_blocks_and_json() {
        let r = response(
            AgentEventType::ServiceDeleted,
            Notification::ServiceDelete(ServiceDeleteNotification { id: 7 }),
        );
        assert_eq!(
            render(&r, &args(AgentEventsFormat::Compact, true), 0).unwrap(),
            "Dec  7 16:00:53.123 [node1]: SERVICE_DELETED (id: 7)\n"
        );
        assert_eq!(
            render(&r, &args(AgentEventsFormat::Dict, true), 1).unwrap(),
            "------------\n  TIMESTAMP: Dec  7 16:00:53.123\n       NODE: node1\n       TYPE: SERVICE_DELETED\n    DETAILS: id: 7\n"
        );
        let mut t = table(&args(AgentEventsFormat::Table, true));
        t.push(cells(&r, &args(AgentEventsFormat::Table, true)));
        let mut r2 = r.clone();
        r2.node_name = "node-with-a-long-name".into();
        t.push(cells(&r2, &args(AgentEventsFormat::Table, true)));
        assert_eq!(
            t.finish(),
            "TIMESTAMP             NODE                    TYPE              DETAILS\n\
             Dec  7 16:00:53.123   node1                   SERVICE_DELETED   id: 7\n\
             Dec  7 16:00:53.123   node-with-a-long-name   SERVICE_DELETED   id: 7\n"
        );
        let json = render(&r, &args(AgentEventsFormat::Json, false), 0).unwrap();
        let jsonpb = render(&r, &args(AgentEventsFormat::Jsonpb, false), 0).unwrap();
        assert!(
            jsonpb.starts_with("{\"agent_event\":{\"type\":\"SERVICE_DELETED\"")
                && jsonpb.contains("\"node_name\":\"node1\"")
                && jsonpb.contains("\"time\":\"2026-12-07T16:00:53.123Z\""),
            "{jsonpb}"
        );
        assert_eq!(json, jsonpb);
    }

    #[test]
    fn flags_make_the_request_and_bad_ones_are_named() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let a = args(AgentEventsFormat::Compact, false);
        let req = a.request(now).unwrap();
        assert_eq!((req.number, req.first, req.follow), (20, false, false));
        // As hubble's: a follow starts with the last 20 too, and drops
        // --until; --all is every event held, but in a window.
        let follow = AgentEventsArgs {
            follow: true,
            until: Some("2000-01-01T00:00:00Z".into()),
            ..a.clone()
        };
        let req = follow.request(now).unwrap();
        assert_eq!((req.number, req.follow, req.until), (20, true, None));
        let all = AgentEventsArgs {
            all: true,
            last: Some(0),
            ..a.clone()
        };
        assert_eq!(all.request(now).unwrap().number, u64::MAX);
        let all_since = AgentEventsArgs {
            since: Some("5m".into()),
            ..all.clone()
        };
        assert_eq!(all_since.request(now).unwrap().number, 0);
        let clash = AgentEventsArgs {
            last: Some(5),
            ..all
        };
        assert_eq!(
            clash.request(now).unwrap_err().to_string(),
            "cannot set both --last and --all"
        );
        let first = AgentEventsArgs {
            first: Some(3),
            ..a.clone()
        };
        let req = first.request(now).unwrap();
        assert_eq!((req.number, req.first), (3, true));
        let window = AgentEventsArgs {
            since: Some("1h".into()),
            until: Some("2h".into()),
            ..a.clone()
        };
        assert_eq!(
            window.request(now).unwrap_err().to_string(),
            "--since 1h is after --until 2h: no event can be between them"
        );
        let since = AgentEventsArgs {
            since: Some("10s".into()),
            ..a.clone()
        };
        let req = since.request(now).unwrap();
        assert_eq!(req.number, 0, "a window: every event in it");
        assert_eq!(req.since.unwrap().seconds, 1_000_000 - 10);
        let until = AgentEventsArgs {
            until: Some("10s".into()),
            ..a
        };
        assert_eq!(
            until.request(now).unwrap().number,
            0,
            "every event up to then"
        );
    }
}
