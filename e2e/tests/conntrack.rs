//! Connection tracking on the real datapath, the probe loaded in-process: an
//! established connection whose counters a flood of new flows evicted keeps
//! its verdict (no second decision, no drop, every byte through), the
//! garbage collection forgets closed connections and keeps open ones, and
//! flows are counted exactly whether they got a slot or went to the LRU table,
//! and the pairs of slots whose flows went there are marked, at once and
//! again by a probe started over the same pinned tables.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use aya::maps::{Array, Map, MapData, ProgramArray};
use e2e::in_process::{enricher_for, watched_netns};
use e2e::{bpf_maps, ips, ports};
use flow_probe::datapath::{Datapath, PolicyNames};
use flow_probe::kernel::config::GcConfig;
use flow_probe::kernel::events::slot_state;
use flow_probe::kernel::events::{Flow4Key, FlowSlot4, FlowStats};
use flow_probe::kernel::features::KernelFeatures;
use flow_probe::kernel::flow_tables::{FlowTables, TableKey};
use flow_probe::kernel::loader::{LoadedProbe, ProbeConfig};
use flow_probe::kernel::sysfs;
use flow_probe::pipeline::Pipeline;
use flow_probe::tables::{self, Collector};
use observe_lab::{Lab, LabOptions, Scenario};
use observer_proto::flow::{Flow, TraceObservationPoint, Verdict};
use observer_proto::observer::get_flows_response::ResponseTypes;
use observer_runtime::store::FlowStore;

/// b accepts everything from a (and nothing from anyone else).
const SCENARIO: &str = r#"
endpoints:
  - {name: a, namespace: t, labels: {app: a}}
  - {name: b, namespace: t, labels: {app: b}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: b-allow-a, namespace: t}
    spec:
      endpointSelector: {matchLabels: {app: b}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: a}}]
"#;

const PORT: u16 = 7000;

struct Setup {
    lab: Lab,
    /// What the probe was started with.
    cfg: ProbeConfig,
    probe: LoadedProbe,
    tables: FlowTables,
    /// b's host-side interface, where its ingress policy is judged.
    b_ifindex: u32,
    names: Arc<PolicyNames>,
}

/// A lab, the probe on node1 with `cfg`, and the lab's policy in force.
fn setup(tag: &str, cfg: ProbeConfig) -> Setup {
    test_support::require_root("it loads eBPF programs into a lab of namespaces");
    let dir = std::env::temp_dir().join(format!("conntrack-{tag}-{}", std::process::id()));
    let lab = Lab::up(
        &Scenario::parse(SCENARIO, "conntrack.yaml").unwrap(),
        &LabOptions::with_state_dir(dir),
    )
    .expect("lab up");
    let file = lab.endpoints_file();
    let cfg = ProbeConfig {
        netns: Some(lab.node_netns("node1").unwrap().to_string()),
        drop_netns: watched_netns(&lab),
        ..cfg
    };
    let ifaces: Vec<String> = file
        .endpoints
        .iter()
        .filter_map(|e| e.interface.clone())
        .collect();
    let mut probe =
        LoadedProbe::start(&cfg, &ifaces, &KernelFeatures::probe()).expect("probe loads");
    let ifindex_of: HashMap<u32, u32> = file
        .endpoints
        .iter()
        .filter_map(|e| {
            let a = probe
                .attached
                .iter()
                .find(|a| Some(&a.ifname) == e.interface.as_ref())?;
            Some((e.id, a.ifindex))
        })
        .collect();
    let b = file.endpoints.iter().find(|e| e.name == "b").unwrap();
    let b_ifindex = ifindex_of[&b.id];
    let names = Arc::new(PolicyNames::default());
    let policies = cluster_spec::policy::load_dir(&lab.policy_dir()).expect("policy files");
    let compiled = cluster_spec::policy::compile(&policies, &file);
    let mut datapath = Datapath::new(probe.take_datapath().unwrap(), ifindex_of, names.clone());
    datapath.sync(&compiled, &file).expect("policy in force");
    let tables = probe.take_flow_tables().unwrap();
    Setup {
        lab,
        cfg,
        probe,
        tables,
        b_ifindex,
        names,
    }
}

/// Flow tables of 256 slots a family: a few hundred flows fill their pairs.
fn small_tables() -> ProbeConfig {
    ProbeConfig {
        flow_table_entries: 256,
        ..ProbeConfig::default()
    }
}

/// A second probe started as `s`'s was, over the same pins (re-adopting its
/// maps and taking over its links), and its flow tables.
fn start_again(s: &Setup) -> (LoadedProbe, FlowTables) {
    let ifaces: Vec<String> = s.probe.attached.iter().map(|i| i.ifname.clone()).collect();
    let mut again =
        LoadedProbe::start(&s.cfg, &ifaces, &KernelFeatures::probe()).expect("probe loads again");
    let tables = again.take_flow_tables().unwrap();
    (again, tables)
}

fn addr(lab: &Lab, name: &str) -> IpAddr {
    IpAddr::V4(lab.endpoint(name).unwrap().ipv4)
}

/// A TCP connection a → b:PORT whose ends the test drives: `send` writes from
/// a, and b answers how many bytes it has read in all.
struct Conn {
    client: TcpStream,
    sent: usize,
    read_total: mpsc::Receiver<usize>,
    server: std::thread::JoinHandle<()>,
}

impl Conn {
    fn open(lab: &Lab, port: u16) -> Conn {
        let dst = SocketAddr::new(addr(lab, "b"), port);
        let (server_ns, client_ns) = (
            lab.endpoint("b").unwrap().netns.clone(),
            lab.endpoint("a").unwrap().netns.clone(),
        );
        let (ready_tx, ready_rx) = mpsc::channel();
        let (total_tx, read_total) = mpsc::channel();
        let server = std::thread::spawn(move || {
            sysfs::enter_netns(&server_ns).unwrap();
            let listener = TcpListener::bind(dst).unwrap();
            ready_tx.send(()).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let (mut buf, mut total) = (vec![0u8; 4096], 0);
            loop {
                match conn.read(&mut buf).unwrap() {
                    0 => return, // the client closed; closing ours sends our FIN
                    n => total += n,
                }
                total_tx.send(total).unwrap();
            }
        });
        ready_rx.recv().unwrap();
        let client = std::thread::spawn(move || {
            sysfs::enter_netns(&client_ns).unwrap();
            TcpStream::connect_timeout(&dst, Duration::from_secs(5)).unwrap()
        })
        .join()
        .unwrap();
        Conn {
            client,
            sent: 0,
            read_total,
            server,
        }
    }

    /// Sends `n` bytes; returns what b has read in all once it has them.
    fn send(&mut self, n: usize) -> usize {
        self.client.write_all(&vec![7u8; n]).unwrap();
        self.sent += n;
        let mut total = 0;
        while total < self.sent {
            total = self
                .read_total
                .recv_timeout(e2e::WAIT)
                .expect("b reads what a sent");
        }
        total
    }

    fn port(&self) -> u16 {
        self.client.local_addr().unwrap().port()
    }

    /// Closes both ends: returns once a has b's FIN (so both FINs passed).
    fn close(mut self) {
        self.client.shutdown(std::net::Shutdown::Write).unwrap();
        self.server.join().unwrap();
        let mut rest = Vec::new();
        self.client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}

/// Whether `key` is the connection (a, a_port) ↔ (b, PORT) at `ifindex`.
fn is_conn(key: &TableKey, lab: &Lab, a_port: u16, port: u16, ifindex: u32) -> bool {
    let ends = [(key.addr(0), key.port(0)), (key.addr(1), key.port(1))];
    let (a, b) = ((addr(lab, "a"), a_port), (addr(lab, "b"), port));
    key.ifindex() == ifindex && key.proto() == 6 && (ends == [a, b] || ends == [b, a])
}

/// Sends `n` datagrams from a to distinct ports of b: each a new flow, allowed.
fn flood(lab: &Lab, n: u16) {
    let src = lab.endpoint("a").unwrap().netns.clone();
    let dst = addr(lab, "b");
    std::thread::spawn(move || {
        sysfs::enter_netns(&src).unwrap();
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        for port in 0..n {
            sock.send_to(b"flood", (dst, 20_000 + port)).unwrap();
        }
    })
    .join()
    .unwrap();
}

/// Every flow the kernel reported so far, read from the ring and enriched.
fn drain(s: &mut Setup) -> Vec<Flow> {
    let mut ring = s.probe.take_ring().expect("ring");
    let store = Arc::new(FlowStore::new(100_000));
    let enricher = enricher_for(&s.probe, &s.lab).with_policy_names(s.names.clone());
    let mut pipeline = Pipeline::new(enricher, store.clone());
    while let Some(record) = ring.next() {
        pipeline.ingest(&record);
    }
    assert_eq!(pipeline.decode_errors, 0);
    store
        .snapshot()
        .iter()
        .filter_map(|e| match &e.response.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_established_connection_whose_counters_a_flood_evicted_is_judged_once() {
    // A flow table of 256 entries: the flood churns through it.
    let mut s = setup("flood", small_tables());
    let mut conn = Conn::open(&s.lab, PORT);
    let a_port = conn.port();
    assert_eq!(conn.send(1000), 1000);
    let long = |k: &TableKey| is_conn(k, &s.lab, a_port, PORT, s.b_ifindex);
    assert!(s.tables.tracked().unwrap().iter().any(|(k, _)| long(k)));
    assert!(s.tables.flows().unwrap().iter().any(|(k, _)| long(k)));

    flood(&s.lab, 5000);
    // The kernel's LRU may keep an active entry through a flood; eviction
    // is forced here (for both veths), so what follows is certain.
    let mine: Vec<TableKey> = s
        .tables
        .flows()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| {
            s.probe
                .attached
                .iter()
                .any(|i| is_conn(k, &s.lab, a_port, PORT, i.ifindex))
        })
        .collect();
    assert_eq!(s.tables.delete_flows(&mine).unwrap(), mine.len());
    assert!(!s.tables.flows().unwrap().iter().any(|(k, _)| long(k)));
    assert!(
        s.tables.tracked().unwrap().iter().any(|(k, _)| long(k)),
        "tracking stays through the flood"
    );
    assert_eq!(conn.send(1000), 2000, "every byte passes after the flood");
    let again = s.tables.flows().unwrap();
    let (_, st) = again.iter().find(|(k, _)| long(k)).expect("counted again");
    assert_eq!(st.resumed, 1, "made again from tracking, not as a new flow");
    conn.close();

    let counters = s.probe.counters().unwrap();
    assert_eq!((counters.events_lost, counters.ct_full), (0, 0));
    let flows = drain(&mut s);
    let (a, b) = (addr(&s.lab, "a"), addr(&s.lab, "b"));
    let of_long: Vec<&Flow> = flows
        .iter()
        .filter(|f| {
            let (src, dst) = ips(f);
            let p = ports(f);
            (src, dst, p) == (a, b, Some((a_port, PORT)))
                || (src, dst, p) == (b, a, Some((PORT, a_port)))
        })
        .collect();
    let verdicts: Vec<&&Flow> = of_long
        .iter()
        .filter(|f| f.event_type.as_ref().is_some_and(|e| e.r#type == 5))
        .collect();
    assert_eq!(verdicts.len(), 1, "judged once: {of_long:#?}");
    assert_eq!(
        verdicts[0].trace_observation_point,
        TraceObservationPoint::ToEndpoint as i32
    );
    assert_eq!(verdicts[0].verdict, Verdict::Forwarded as i32);
    assert!(verdicts[0].summary.starts_with("TCP Flags: SYN"));
    // Every packet event forwarded (the sockets' lifecycle reports carry
    // no verdict).
    assert!(
        of_long
            .iter()
            .filter(|f| f.tcp_lifecycle.is_none())
            .all(|f| f.verdict == Verdict::Forwarded as i32),
        "never dropped"
    );
    // The flood was judged and allowed too: a verdict per datagram at b.
    let flood_verdicts = flows
        .iter()
        .filter(|f| ips(f) == (a, b) && ports(f).is_some_and(|(_, d)| d >= 20_000))
        .filter(|f| f.event_type.as_ref().is_some_and(|e| e.r#type == 5))
        .count();
    assert_eq!(flood_verdicts, 5000);
}

#[test]
fn garbage_collection_forgets_closed_connections_and_keeps_open_ones() {
    let mut s = setup("gc", ProbeConfig::default());
    let mut open = Conn::open(&s.lab, PORT);
    let mut closed = Conn::open(&s.lab, PORT + 1);
    let (open_port, closed_port) = (open.port(), closed.port());
    assert_eq!(open.send(100), 100);
    assert_eq!(closed.send(100), 100);
    closed.close();
    // (tracking entries, counter entries) of the open and the closed
    // connection: tracking only at b's veth (the one with policy), counters
    // at both.
    let state = |s: &Setup| {
        let (tracked, counted) = (s.tables.tracked().unwrap(), s.tables.flows().unwrap());
        let of = |port, dport| {
            let at = |k: &TableKey, ifindex| is_conn(k, &s.lab, port, dport, ifindex);
            let t = tracked.iter().filter(|(k, _)| at(k, s.b_ifindex)).count();
            let c = counted
                .iter()
                .filter(|(k, _)| s.probe.attached.iter().any(|i| at(k, i.ifindex)))
                .count();
            (t, c)
        };
        (of(open_port, PORT), of(closed_port, PORT + 1))
    };
    assert_eq!(state(&s), ((1, 2), (1, 2)));

    // No grace: closed means gone at the first collection.
    let mut collector = Collector::new(GcConfig {
        close_grace: Duration::ZERO,
        ..GcConfig::default()
    });
    let collected = tables::collect(&s.tables, &mut collector);
    assert_eq!(
        (collected.forgotten, collected.deleted),
        (1, 2),
        "the closed connection, at both veths"
    );
    // Their counters as last read, for the connection's last report.
    let ended_at: Vec<bool> = collected
        .ended
        .iter()
        .map(|(k, st)| {
            let here = s
                .probe
                .attached
                .iter()
                .any(|i| is_conn(k, &s.lab, closed_port, PORT + 1, i.ifindex));
            here && st.packets[0] + st.packets[1] > 2
        })
        .collect();
    assert_eq!(ended_at, [true, true], "{:?}", collected.ended);
    assert_eq!(state(&s), ((1, 2), (0, 0)));
    // The open connection still passes on its tracking.
    assert_eq!(open.send(100), 200);
    open.close();
    let _ = drain(&mut s);
}

#[test]
fn flows_are_counted_exactly_in_their_slots_and_beyond_them() {
    // 256 slots a family: 200 new flows (100 at each veth) fill some pairs,
    // so some flows go to the LRU table.
    let mut s = setup("slots", small_tables());
    assert_eq!(s.tables.spill_marks(), NONE_MARKED, "nothing spilled yet");
    let spilled_once = udp_beyond_slots(&s, Family::V4);
    // IPv6's slots and marks are their own (its words follow IPv4's).
    udp_beyond_slots(&s, Family::V6);
    // Deleting every flow (the ICMP errors too) empties the LRU tables: every
    // pair's mark is cleared, and new flows stop looking there.
    let all: Vec<TableKey> = s
        .tables
        .flows()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    s.tables.delete_flows(&all).unwrap();
    assert_eq!(s.tables.spill_marks(), NONE_MARKED, "marks cleared");
    // The same again: flows go beyond their slots again, set the mark again
    // and are found there again, each counted exactly.
    let spilled_twice = udp_beyond_slots(&s, Family::V4);
    assert!(spilled_twice > spilled_once);
    let _ = drain(&mut s);
}

#[test]
fn a_restarted_probe_marks_the_pairs_of_flows_it_finds_in_the_lru_tables() {
    let s = setup("restart", small_tables());
    // 200 flows in 256 slots: some go to the LRU table.
    send_udp(&s, Family::V4, 100, 40);
    let spilled = marks_match_the_flows_beyond_their_pairs(&s.tables);
    assert!(!spilled[0].is_empty(), "flows went to the LRU table");
    // The marks gone, as a build with one mark per family leaves them.
    let netns = s.lab.node_netns("node1").unwrap().to_string();
    let pinned = flow_probe::kernel::pins::pin_dir(Some(&netns)).join("SLOT_SPILLS");
    let mut bits: Array<MapData, u64> =
        Array::try_from(Map::Array(MapData::from_pin(&pinned).unwrap())).unwrap();
    for word in 0..bits.len() {
        bits.set(word, 0, 0).unwrap();
    }
    assert_eq!(s.tables.spill_marks(), NONE_MARKED);
    // A probe started again re-adopts the pinned tables and marks them.
    let (_again, tables) = start_again(&s);
    let marks = marks_match_the_flows_beyond_their_pairs(&tables);
    assert!(
        spilled[0].iter().all(|p| marks[0].contains(p)),
        "{spilled:?} marked again: {marks:?}"
    );
}

/// The UDP payload of the slot tests' datagrams, and its IPv4 frame.
const PAYLOAD: usize = 40;
const FRAME4: u64 = (14 + 20 + 8 + PAYLOAD) as u64;
/// a's port of the slot tests' flows that need a fixed one.
const FROM: u16 = 41_000;

/// One UDP flow of three datagrams from a new socket of a to b:30000,
/// which has a socket there (kept here), so no ICMP error flow appears.
struct UdpFlow {
    _sinks: Vec<UdpSocket>,
    a: IpAddr,
    a_port: u16,
    /// `FLOW_SLOTS4`, and the flow's two used slots (one at each veth).
    slots: Array<MapData, FlowSlot4>,
    entries: Vec<(u32, FlowSlot4)>,
}

fn one_udp_flow(s: &Setup) -> UdpFlow {
    let _sinks = udp_sinks(s, &[30_000]);
    let (a, a_port, _) = send_udp(s, Family::V4, 1, PAYLOAD);
    let (slots, entries) = udp_slots4(s);
    assert_eq!(entries.len(), 2, "{entries:?}");
    UdpFlow {
        _sinks,
        a,
        a_port,
        slots,
        entries,
    }
}

/// The used slots of `FLOW_SLOTS4` holding UDP flows, with their indexes,
/// read from its pin.
fn udp_slots4(s: &Setup) -> (Array<MapData, FlowSlot4>, Vec<(u32, FlowSlot4)>) {
    let netns = s.lab.node_netns("node1").unwrap();
    let pinned = flow_probe::kernel::pins::pin_dir(Some(netns)).join("FLOW_SLOTS4");
    let slots: Array<MapData, FlowSlot4> =
        Array::try_from(Map::Array(MapData::from_pin(&pinned).unwrap())).unwrap();
    let udp = (0..slots.len())
        .map(|i| (i, slots.get(&i, 0).unwrap()))
        .filter(|(_, slot)| slot.state == slot_state::USED && slot.key.proto == 17)
        .collect();
    (slots, udp)
}

/// Sockets at b on `ports` (kept while they live), so that its datagrams
/// raise no ICMP error flows, which could hash to a pair a test watches.
fn udp_sinks(s: &Setup, ports: &[u16]) -> Vec<UdpSocket> {
    let b_ns = s.lab.endpoint("b").unwrap().netns.clone();
    let b = addr(&s.lab, "b");
    let ports = ports.to_vec();
    std::thread::spawn(move || {
        sysfs::enter_netns(&b_ns).unwrap();
        ports
            .iter()
            .map(|&p| UdpSocket::bind((b, p)).unwrap())
            .collect()
    })
    .join()
    .unwrap()
}

/// The IPv4 flow table key of UDP between a:`from` and b:`to`, made as
/// `key4` in ebpf-probes/src/lib/flow_key.h makes it (the ifindex left 0).
fn udp_key4(s: &Setup, from: u16, to: u16) -> Flow4Key {
    let (IpAddr::V4(a), IpAddr::V4(b)) = (addr(&s.lab, "a"), addr(&s.lab, "b")) else {
        unreachable!("addr gives IPv4")
    };
    // The program compares the addresses as loaded: network order bytes in a
    // native-endian word.
    let (wa, wb) = (
        u32::from_ne_bytes(a.octets()),
        u32::from_ne_bytes(b.octets()),
    );
    let b_first = wa > wb || (wa == wb && from > to);
    let (ends, port) = if b_first {
        ([b.octets(), a.octets()], [to, from])
    } else {
        ([a.octets(), b.octets()], [from, to])
    };
    Flow4Key {
        addr: ends,
        port,
        proto: 17,
        ..Flow4Key::default()
    }
}

#[test]
fn a_flow_whose_pair_is_taken_goes_to_the_neighbouring_pair() {
    let s = setup("neighbour", small_tables());
    // Two ports of b whose flows from a:FROM hash to the same pair.
    let pair_of = |to| s.tables.pair_of(&TableKey::V4(udp_key4(&s, FROM, to)));
    let pair = pair_of(30_000);
    let second = (30_001..40_000)
        .find(|&to| pair_of(to) == pair)
        .expect("two ports in one pair");
    let _sinks = udp_sinks(&s, &[30_000, second]);
    send_udp_from(&s, Family::V4, FROM, &[30_000], PAYLOAD);
    send_udp_from(&s, Family::V4, FROM, &[second], PAYLOAD);
    // The first flow's entries (one at each veth) take its pair, the
    // second's the neighbouring one; none goes to the LRU table.
    let (_, udp) = udp_slots4(&s);
    let at = |to: u16| -> Vec<u32> {
        let mut at: Vec<u32> = udp
            .iter()
            .filter(|(_, slot)| slot.key.port.contains(&to))
            .map(|(i, _)| *i)
            .collect();
        at.sort_unstable();
        at
    };
    let neighbour = pair ^ 1;
    assert_eq!(at(30_000), [2 * pair, 2 * pair + 1]);
    assert_eq!(at(second), [2 * neighbour, 2 * neighbour + 1]);
    assert_eq!(s.probe.counters().unwrap().slots_taken, 0);
    for (_, slot) in &udp {
        let side = usize::from(slot.key.port[1] == FROM);
        assert_eq!(
            (slot.st.packets[side], slot.st.bytes[side]),
            (3, 3 * FRAME4)
        );
    }
    // Its pair is marked, so the programs look beyond it: three more
    // datagrams of the second flow are counted where it is.
    assert_eq!(s.tables.spill_marks()[0], [pair]);
    assert_eq!(s.tables.spilled_pairs().unwrap()[0], [pair]);
    send_udp_from(&s, Family::V4, FROM, &[second], PAYLOAD);
    let (_, again) = udp_slots4(&s);
    assert_eq!(again.len(), 4, "no new entry: {again:?}");
    for (i, slot) in again.iter().filter(|(i, _)| i >> 1 == neighbour) {
        let side = usize::from(slot.key.port[1] == FROM);
        assert_eq!(
            (slot.st.packets[side], slot.st.bytes[side]),
            (6, 6 * FRAME4),
            "slot {i}"
        );
    }
    // Deleting the second flow frees the neighbouring pair and the mark.
    let seconds: Vec<TableKey> = again
        .iter()
        .filter(|(i, _)| i >> 1 == neighbour)
        .map(|(_, slot)| TableKey::V4(slot.key))
        .collect();
    assert_eq!(s.tables.delete_flows(&seconds).unwrap(), 2);
    assert_eq!(s.tables.spill_marks(), NONE_MARKED);
    assert_eq!(udp_slots4(&s).1.len(), 2);
}

#[test]
fn deleting_a_flow_frees_every_slot_it_holds() {
    let s = setup("twice", small_tables());
    let UdpFlow {
        _sinks,
        a,
        mut slots,
        entries: udp,
        ..
    } = one_udp_flow(&s);
    // A second entry of the first key in the neighbouring pair, where a
    // second CPU that missed the first one's claim would have put it.
    let (first_index, first) = udp[0];
    let neighbour = (first_index / 2) ^ 1;
    let copy_at = (2 * neighbour..2 * neighbour + 2)
        .find(|i| slots.get(i, 0).unwrap().state == slot_state::FREE)
        .expect("a free slot in the neighbouring pair");
    slots.set(copy_at, first, 0).unwrap();
    // That CPU marked the pair first, as flows_insert does beyond a pair.
    let pair = first_index / 2;
    let netns = s.lab.node_netns("node1").unwrap();
    let pin = flow_probe::kernel::pins::pin_dir(Some(netns)).join("SLOT_SPILLS");
    let mut spills: Array<MapData, u64> =
        Array::try_from(Map::Array(MapData::from_pin(&pin).unwrap())).unwrap();
    let word = spills.get(&(pair / 64), 0).unwrap();
    spills.set(pair / 64, word | 1 << (pair % 64), 0).unwrap();
    assert_eq!(s.tables.spill_marks()[0], [pair]);
    assert_eq!(s.tables.spilled_pairs().unwrap()[0], [pair]);
    let key = TableKey::V4(first.key);
    let side = usize::from(key.addr(1) == a);
    let flows = s.tables.flows().unwrap();
    let (_, st) = flows.iter().find(|(k, _)| *k == key).unwrap();
    assert_eq!(
        (st.packets[side], st.bytes[side]),
        (6, 6 * FRAME4),
        "both entries added up"
    );
    // Deleting the flow's keys frees all three slots, the copy too, and
    // with nothing left beyond the pair its mark goes.
    let keys: Vec<TableKey> = udp.iter().map(|(_, slot)| TableKey::V4(slot.key)).collect();
    assert_eq!(s.tables.delete_flows(&keys).unwrap(), 3);
    let (_, left) = udp_slots4(&s);
    assert!(left.is_empty(), "every slot freed: {left:?}");
    assert!(
        !s.tables
            .flows()
            .unwrap()
            .iter()
            .any(|(k, _)| keys.contains(k))
    );
    assert_eq!(s.tables.spill_marks(), NONE_MARKED);
}

#[test]
fn tc_egress_runs_tc_ingress_and_its_own_copy_once_the_jump_is_gone() {
    let mut s = setup("jump", ProbeConfig::default());
    let _sinks = udp_sinks(&s, &[30_000, 30_001]);
    send_udp_from(&s, Family::V4, FROM, &[30_000], PAYLOAD);
    assert_eq!(own_copy_runs(&s), 0, "tc_egress jumped into tc_ingress");
    // The kernel empties TC_BODY once no fd or pin holds it (flow-probe
    // exited, its pinned links still attached); emptied here by hand.
    let mut body = ProgramArray::try_from(Map::ProgramArray(probe_map(&s, "TC_BODY"))).unwrap();
    body.clear_index(&0).unwrap();
    send_udp_from(&s, Family::V4, FROM, &[30_001], PAYLOAD);
    assert!(
        own_copy_runs(&s) >= 3,
        "its own copy for each datagram at b's veth"
    );
    // Either way: three datagrams counted at both veths, a trace where a
    // sends and b's ingress policy's verdict where b receives.
    let (a, b) = (addr(&s.lab, "a"), addr(&s.lab, "b"));
    let flows = s.tables.flows().unwrap();
    let flows_events = drain(&mut s);
    for to in [30_000, 30_001] {
        let entries: Vec<&FlowStats> = flows
            .iter()
            .filter(|(k, _)| {
                let ports = [k.port(0), k.port(1)];
                k.proto() == 17 && ports.contains(&FROM) && ports.contains(&to)
            })
            .map(|(_, st)| st)
            .collect();
        assert_eq!(entries.len(), 2, "one entry at each veth");
        for st in entries {
            let side = usize::from(st.packets[1] > 0);
            assert_eq!((st.packets[side], st.bytes[side]), (3, 3 * FRAME4));
            assert_eq!(st.packets[side ^ 1], 0);
        }
        let mut seen: Vec<(i32, u32, i32)> = flows_events
            .iter()
            .filter(|f| ips(f) == (a, b) && ports(f) == Some((FROM, to)))
            .map(|f| {
                (
                    f.trace_observation_point,
                    f.event_type.as_ref().map_or(0, |e| e.r#type as u32),
                    f.verdict,
                )
            })
            .collect();
        seen.sort_unstable();
        let forwarded = Verdict::Forwarded as i32;
        assert_eq!(
            seen,
            [
                (TraceObservationPoint::FromEndpoint as i32, 4, forwarded),
                (TraceObservationPoint::ToEndpoint as i32, 5, forwarded),
            ],
            "to port {to}"
        );
    }
}

/// A map of the probe's tc programs by name, opened by its kernel id.
fn probe_map(s: &Setup, name: &str) -> MapData {
    s.probe
        .program_ids
        .iter()
        .find_map(|(_, id)| bpf_maps::map_of_program(*id, name))
        .unwrap_or_else(|| panic!("no map {name} in the probe's programs"))
}

/// Runs of tc_egress that ran its own copy of the body, all CPUs.
fn own_copy_runs(s: &Setup) -> u64 {
    bpf_maps::own_copy_runs(probe_map(s, "EGRESS_JUMP"))
}

#[test]
fn a_flow_seen_at_both_veths_takes_both_slots_of_one_pair() {
    let s = setup("pair", small_tables());
    let (_, a_port, _) = send_udp(&s, Family::V4, 1, 40);
    let (_, udp) = udp_slots4(&s);
    // The flow is a's first: nothing else took its pair before it.
    assert_eq!(udp.len(), 2, "{udp:?}");
    let pair = s.tables.pair_of(&TableKey::V4(udp[0].1.key));
    assert_eq!(
        udp.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [2 * pair, 2 * pair + 1],
        "both at the pair flow-probe computes"
    );
    let mut ifindexes: Vec<u32> = udp.iter().map(|(_, slot)| slot.key.ifindex).collect();
    let mut veths: Vec<u32> = s.probe.attached.iter().map(|i| i.ifindex).collect();
    ifindexes.sort_unstable();
    veths.sort_unstable();
    assert_eq!(ifindexes, veths, "one entry at each veth");
    assert!(udp.iter().all(|(_, slot)| slot.key.port.contains(&a_port)));
}

#[test]
fn a_restarted_probe_moves_flows_it_finds_outside_their_pair_to_the_lru_tables() {
    let s = setup("rehome", small_tables());
    let UdpFlow {
        _sinks,
        a,
        a_port,
        mut slots,
        entries: udp,
    } = one_udp_flow(&s);
    let pair = udp[0].0 / 2;
    // Both entries moved by hand to a free pair other than their own and
    // its neighbour, where a build that hashed otherwise would have put them.
    let free = (0..slots.len() / 2)
        .find(|&p| {
            p >> 1 != pair >> 1
                && (0..2).all(|c| slots.get(&(2 * p + c), 0).unwrap().state == slot_state::FREE)
        })
        .expect("a free pair");
    for (c, (index, slot)) in udp.iter().enumerate() {
        slots.set(2 * free + c as u32, slot, 0).unwrap();
        slots.set(*index, FlowSlot4::default(), 0).unwrap();
    }
    // The flow's two entries, each with `datagrams` from a counted.
    let counted_at_both = |tables: &FlowTables, datagrams: u64| {
        let udp: Vec<(TableKey, FlowStats)> = tables
            .flows()
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.proto() == 17 && (0..2).any(|side| k.port(side) == a_port))
            .collect();
        assert_eq!(udp.len(), 2, "{udp:?}");
        for (k, st) in &udp {
            let side = usize::from(k.addr(1) == a);
            let counted = (st.packets[side], st.bytes[side]);
            assert_eq!(counted, (datagrams, datagrams * FRAME4), "{k:?}");
        }
    };
    counted_at_both(&s.tables, 3);
    assert_eq!(s.tables.spill_marks(), NONE_MARKED);

    // A probe started again over the same pins moves them to the LRU table;
    // its programs count what follows.
    let (_again, tables) = start_again(&s);
    let (_, in_slots) = udp_slots4(&s);
    assert!(in_slots.is_empty(), "no longer in slots: {in_slots:?}");
    assert_eq!(
        tables.spilled_pairs().unwrap()[0],
        [pair],
        "both in the LRU table"
    );
    assert!(tables.spill_marks()[0].contains(&pair));
    counted_at_both(&tables, 3);
    // The programs find them there: three more datagrams of the same flow
    // are counted in those entries, and no slot takes the flow again.
    send_udp_from(&s, Family::V4, a_port, &[30_000], PAYLOAD);
    let (_, in_slots) = udp_slots4(&s);
    assert!(in_slots.is_empty(), "counted where they are: {in_slots:?}");
    counted_at_both(&tables, 6);
}

/// Checks that the marked pairs of slots are those with flows beyond them
/// (in the neighbouring pair or the LRU tables) and returns them. Read
/// between two reads of those flows, in case a packet of the lab spills
/// meanwhile: each family's marks hold every pair of the first read and none
/// missing from the second.
fn marks_match_the_flows_beyond_their_pairs(tables: &FlowTables) -> [Vec<u32>; 2] {
    let before = tables.spilled_pairs().unwrap();
    let marks = tables.spill_marks();
    let after = tables.spilled_pairs().unwrap();
    for family in 0..2 {
        assert!(
            before[family].iter().all(|p| marks[family].contains(p)),
            "a pair with a flow beyond it unmarked: {before:?}, marked {marks:?}"
        );
        assert!(
            marks[family].iter().all(|p| after[family].contains(p)),
            "a pair marked without a flow beyond it: {after:?}, marked {marks:?}"
        );
    }
    marks
}

/// No pair of slots marked as spilled, in either family.
const NONE_MARKED: [Vec<u32>; 2] = [Vec::new(), Vec::new()];

#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

/// Sends three datagrams to each of 100 ports of b from a new socket of a
/// over `family` (each a new flow at both veths, 200 in 256 slots), checks
/// that each flow is counted exactly and that the pairs of slots marked as
/// spilled are exactly those of the flows in the LRU tables, then deletes
/// them where flow-probe's hash says they are (their slot or the LRU table);
/// returns `slots_taken` after.
fn udp_beyond_slots(s: &Setup, family: Family) -> u64 {
    const FLOWS: u16 = 100;
    let taken_before = s.probe.counters().unwrap().slots_taken;
    let (a, a_port, ip_header) = send_udp(s, family, FLOWS, PAYLOAD);
    // b has no sockets there: it answers each datagram with an ICMP error,
    // a flow of its own; only the UDP flows are counted here.
    let udp: Vec<(TableKey, _)> = s
        .tables
        .flows()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| {
            k.proto() == 17 && (0..2).any(|side| k.addr(side) == a && k.port(side) == a_port)
        })
        .collect();
    assert_eq!(udp.len(), 2 * usize::from(FLOWS), "each flow at both veths");
    let frame = (14 + ip_header + 8 + PAYLOAD) as u64;
    for (k, st) in &udp {
        let side = usize::from(k.addr(1) == a);
        assert_eq!(st.packets[side], 3, "{k:?}");
        assert_eq!(st.bytes[side], 3 * frame, "{k:?}");
        assert_eq!((st.packets[side ^ 1], st.bytes[side ^ 1]), (0, 0), "{k:?}");
    }
    let taken = s.probe.counters().unwrap().slots_taken;
    assert!(
        taken > taken_before && taken - taken_before < 2 * u64::from(FLOWS),
        "some flows in slots, some beyond them: {} beyond",
        taken - taken_before
    );
    // Marked are exactly the pairs of slots whose flows went to the LRU
    // table: a new flow of any other pair is not looked for there.
    let marks = marks_match_the_flows_beyond_their_pairs(&s.tables);
    let index = usize::from(family == Family::V6);
    assert!(!marks[index].is_empty(), "flows went to the LRU table");
    // Deleting finds every flow where it is: in the slot flow-probe computes
    // for it (the kernel's hash, mirrored), or in the LRU table.
    let keys: Vec<TableKey> = udp.iter().map(|(k, _)| *k).collect();
    assert_eq!(s.tables.delete_flows(&keys).unwrap(), keys.len());
    let left = s.tables.flows().unwrap();
    assert!(!left.iter().any(|(k, _)| keys.contains(k)), "all deleted");
    taken
}

/// Sends three datagrams of `payload` bytes to each of `flows` ports of b
/// from one new socket of a over `family`; returns a's address and port, and
/// the IP header's length.
fn send_udp(s: &Setup, family: Family, flows: u16, payload: usize) -> (IpAddr, u16, usize) {
    let to: Vec<u16> = (30_000..30_000 + flows).collect();
    send_udp_from(s, family, 0, &to, payload)
}

/// As `send_udp`, from a's port `from` (0: any) to b's ports `to`.
fn send_udp_from(
    s: &Setup,
    family: Family,
    from: u16,
    to: &[u16],
    payload: usize,
) -> (IpAddr, u16, usize) {
    let src = s.lab.endpoint("a").unwrap().netns.clone();
    let (a, b, bind, ip_header) = match family {
        Family::V4 => (addr(&s.lab, "a"), addr(&s.lab, "b"), "0.0.0.0", 20),
        Family::V6 => (
            IpAddr::V6(s.lab.endpoint("a").unwrap().ipv6),
            IpAddr::V6(s.lab.endpoint("b").unwrap().ipv6),
            "::",
            40,
        ),
    };
    let bind: IpAddr = bind.parse().unwrap();
    let to = to.to_vec();
    let a_port = std::thread::spawn(move || {
        sysfs::enter_netns(&src).unwrap();
        // This test bound the same port a moment ago.
        let sock = observe_lab::bind_when_free((bind, from).into(), UdpSocket::bind).unwrap();
        let data = vec![1u8; payload];
        for _ in 0..3 {
            for &port in &to {
                sock.send_to(&data, (b, port)).unwrap();
            }
        }
        sock.local_addr().unwrap().port()
    })
    .join()
    .unwrap();
    (a, a_port, ip_header)
}
