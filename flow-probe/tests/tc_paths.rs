//! The tc programs in the kernel without a lab: loaded from the real object,
//! they run crafted frames with `BPF_PROG_TEST_RUN`.
//! - Path timing (`time_paths`): `PATH_TIMES` must count each run of
//!   `tc_ingress` on the path it took: a frame that is not IP, a new flow, its
//!   first answer and a new FIN (events), plain packets of the flow. Loaded
//!   without `time_paths`, nothing is counted there at all (the verifier
//!   prunes the timing).
//! - The hook of a run: egress only when `tc_egress` jumped into
//!   `tc_ingress` (or ran its own copy, `TC_BODY` empty), whatever another
//!   program left in the control block.
//! - Where runs stop (`cost_stop`, the cost benchmark's rungs): after
//!   parsing, after the flow's lookup (in empty tables and in tables that
//!   hold the flow), before sending events (a denied packet still dropped);
//!   what each leaves behind (return values, paths, entries, events) is
//!   exactly what it says.
//! - A frame the bridge flooded: going out to an endpoint that shares the
//!   destination's identity but not its address (a replica, here or on
//!   another node), it is neither counted nor judged there; flow-probe's
//!   sync writes where each endpoint address is, and forgets what went.
//! - The sync's room: a policy past the rule table changes nothing, and a
//!   change whose old and new rules would not fit together still goes in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use cluster_spec::endpoints::EndpointsFile;
use cluster_spec::policy::compile;
use flow_probe::datapath::Datapath;
use flow_probe::kernel::events::{
    self, EGRESS_JUMP_MARK, EgressJump, EndpointAddr, EndpointInfo, Event, IpcacheAddr,
    IpcacheValue, PathTime, cost_stop, enforcement, hook, reason, tc_path,
};
use flow_probe::kernel::flow_tables::FlowTables;
use flow_probe::kernel::loader::DatapathMaps;
use flow_probe::kernel::loader::read_path_times;
use flow_probe::kernel::objects::FLOW_OBJECT;
use flow_probe::kernel::pins;
use test_support::frames::{self, End};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const CLIENT: End = ([198, 18, 7, 2], 40_000);
const SERVER: End = ([198, 18, 7, 3], 8080);

fn tcp(src: End, dst: End, flags: u8, payload: usize) -> Vec<u8> {
    frames::ipv4_tcp(src, dst, flags, 0, payload)
}

/// The probe object's maps pinned in a folder of their own, removed on drop.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_dir(pins::PIN_ROOT); // only if nothing else is there
    }
}

/// A pin folder for `case`, unique to this process.
fn pins_for(case: &str) -> Pins {
    let dir = Pins(Path::new(pins::PIN_ROOT).join(format!("{case}-{}", std::process::id())));
    pins::create_dir(&dir.0).unwrap();
    dir
}

/// The maps flow-probe's policy sync writes, taken from `ebpf`.
fn datapath_maps(ebpf: &mut Ebpf) -> DatapathMaps {
    let mut take = |name: &str| ebpf.take_map(name).unwrap();
    DatapathMaps {
        endpoints: aya::maps::HashMap::try_from(take("ENDPOINTS")).unwrap(),
        ipcache: LpmTrie::try_from(take("IPCACHE")).unwrap(),
        endpoint_addrs: aya::maps::HashMap::try_from(take("ENDPOINT_ADDRS")).unwrap(),
        policy: aya::maps::HashMap::try_from(take("POLICY")).unwrap(),
    }
}

fn load(dir: &Path, time_paths: u32) -> Ebpf {
    load_stopped(dir, time_paths, cost_stop::NOWHERE)
}

fn load_stopped(dir: &Path, time_paths: u32, stop: u32) -> Ebpf {
    let mut ebpf = EbpfLoader::new()
        .override_global("time_paths", &time_paths, true)
        .override_global("cost_stop", &stop, true)
        .default_map_pin_directory(dir)
        .load(FLOW_OBJECT)
        .expect("the tc object loads");
    let prog: &mut SchedClassifier = ebpf.program_mut("tc_ingress").unwrap().try_into().unwrap();
    prog.load().expect("the verifier accepts tc_ingress");
    ebpf
}

/// Runs each frame through `tc_ingress` once, in order; returns what each
/// run returned.
fn run(ebpf: &Ebpf, frames: &[Vec<u8>]) -> Vec<i32> {
    run_program(ebpf, "tc_ingress", frames)
}

fn run_program(ebpf: &Ebpf, name: &str, frames: &[Vec<u8>]) -> Vec<i32> {
    let prog: &SchedClassifier = ebpf.program(name).unwrap().try_into().unwrap();
    frames
        .iter()
        .map(|frame| {
            let out = prog
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat: 1,
                    ..Default::default()
                })
                .expect("test run");
            out.return_value as i32
        })
        .collect()
}

/// `PATH_TIMES` summed over CPUs.
fn path_times(ebpf: &Ebpf) -> Vec<PathTime> {
    let map: PerCpuArray<&MapData, PathTime> =
        PerCpuArray::try_from(ebpf.map("PATH_TIMES").unwrap()).unwrap();
    read_path_times(&map).unwrap().to_vec()
}

/// The frames of one short connection as the client's veth sees them, and ARP.
fn connection() -> Vec<Vec<u8>> {
    vec![
        frames::arp_request(),             // not IP
        tcp(CLIENT, SERVER, SYN, 0),       // new flow: an event
        tcp(SERVER, CLIENT, SYN | ACK, 0), // its first answer: an event
        tcp(CLIENT, SERVER, ACK, 0),       // counted
        tcp(CLIENT, SERVER, ACK, 100),     // counted
        tcp(CLIENT, SERVER, FIN | ACK, 0), // FIN new from the client: an event
        tcp(CLIENT, SERVER, FIN | ACK, 0), // the same FIN again: counted
    ]
}

#[test]
fn each_run_is_counted_on_the_path_it_took() {
    test_support::require_root("it loads eBPF programs");
    let dir = pins_for("tc-paths");
    let mut ebpf = load(&dir.0, 1);
    run(&ebpf, &connection());

    let times = path_times(&ebpf);
    let runs: Vec<u64> = times.iter().map(|t| t.runs).collect();
    assert_eq!(
        runs,
        by_path(1, 3, 2, 1),
        "runs by path: untracked, counted, event, miss"
    );
    for (path, t) in times.iter().enumerate() {
        assert!(t.ns > 0, "path {path}: {} runs took some time", t.runs);
    }

    // The events those paths emitted: the new flow, its first answer, the FIN.
    let mut ring = RingBuf::try_from(ebpf.take_map("EVENTS").unwrap()).unwrap();
    let mut reasons = Vec::new();
    while let Some(record) = ring.next() {
        match events::decode(&record).expect("decodes") {
            Event::Flow(f) => reasons.push((f.reason, f.tcp_flags)),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(
        reasons,
        [
            (reason::NEW_FLOW, SYN),
            (reason::NEW_FLOW, SYN | ACK),
            (reason::TCP_FLAGS, FIN | ACK)
        ]
    );
}

#[test]
fn without_time_paths_nothing_is_timed() {
    test_support::require_root("it loads eBPF programs");
    let dir = pins_for("tc-paths-off");
    let ebpf = load(&dir.0, 0);
    run(&ebpf, &connection());
    assert_eq!(
        path_times(&ebpf),
        vec![PathTime::default(); tc_path::MAX as usize]
    );
}

/// `struct __sk_buff` up to the end of `cb`, with `cb[0]` = `cb0`: the
/// context a test run may set (the rest must be zero).
fn ctx_with_cb0(cb0: u32) -> [u8; 68] {
    const CB: usize = 48; // offsetof(struct __sk_buff, cb)
    let mut ctx = [0u8; 68];
    ctx[CB..CB + 4].copy_from_slice(&cb0.to_ne_bytes());
    ctx
}

#[test]
fn a_run_is_egress_only_when_tc_egress_jumped_into_tc_ingress() {
    test_support::require_root("it loads eBPF programs");
    let dir = pins_for("tc-hooks");
    let mut ebpf = load(&dir.0, 0);
    let egress: &mut SchedClassifier = ebpf.program_mut("tc_egress").unwrap().try_into().unwrap();
    egress.load().expect("the verifier accepts tc_egress");
    let ingress: &SchedClassifier = ebpf.program("tc_ingress").unwrap().try_into().unwrap();
    let body = ingress.fd().unwrap().try_clone().unwrap();
    let mut bodies = ProgramArray::try_from(ebpf.take_map("TC_BODY").unwrap()).unwrap();
    bodies.set(0, &body, 0).unwrap();

    // Each run a SYN of a flow of its own, so each emits a new-flow event.
    let syn = |port| tcp((CLIENT.0, port), SERVER, SYN, 0);
    // Runs `name` on a SYN from `port` with `cb0` in the control block;
    // returns the control block's first word after the run.
    let run_as = |name: &str, port: u16, cb0: u32| -> u32 {
        let prog: &SchedClassifier = ebpf.program(name).unwrap().try_into().unwrap();
        let ctx = ctx_with_cb0(cb0);
        // The kernel writes back all of struct __sk_buff, or fails.
        let mut out = [0u8; 256];
        prog.test_run(TestRunOptions {
            data_in: Some(&syn(port)),
            ctx_in: Some(&ctx),
            ctx_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        })
        .expect("test run");
        u32::from_ne_bytes(out[48..52].try_into().unwrap())
    };
    // tc_ingress with the mark another program could have left: ingress.
    assert_eq!(
        run_as("tc_ingress", 41_001, EGRESS_JUMP_MARK),
        EGRESS_JUMP_MARK
    );
    // tc_egress, jumping into tc_ingress: egress, and the control block
    // as it found it.
    assert_eq!(run_as("tc_egress", 41_002, 0x1234), 0x1234);
    // tc_ingress after it: ingress again (the jump's flag is cleared).
    run_as("tc_ingress", 41_003, EGRESS_JUMP_MARK);
    // TC_BODY emptied (as the kernel does once no fd or pin holds it):
    // tc_egress runs its own copy, still egress.
    bodies.clear_index(&0).unwrap();
    assert_eq!(run_as("tc_egress", 41_004, 0x5678), 0x5678);
    run_as("tc_ingress", 41_005, EGRESS_JUMP_MARK);

    let jumps: PerCpuArray<&MapData, EgressJump> =
        PerCpuArray::try_from(ebpf.map("EGRESS_JUMP").unwrap()).unwrap();
    let jumps = jumps.get(&0, 0).unwrap();
    assert!(jumps.iter().all(|j| j.egress == 0), "no flag left set");
    assert_eq!(jumps.iter().map(|j| j.own_copy_runs).sum::<u64>(), 1);
    let mut ring = RingBuf::try_from(ebpf.take_map("EVENTS").unwrap()).unwrap();
    let mut hooks = Vec::new();
    while let Some(record) = ring.next() {
        match events::decode(&record).expect("decodes") {
            Event::Flow(f) => hooks.push((f.key.sport, f.key.hook)),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(
        hooks,
        [
            (41_001, hook::TC_INGRESS),
            (41_002, hook::TC_EGRESS),
            (41_003, hook::TC_INGRESS),
            (41_004, hook::TC_EGRESS),
            (41_005, hook::TC_INGRESS),
        ]
    );
}

const TC_ACT_UNSPEC: i32 = -1;
const TC_ACT_SHOT: i32 = 2;

/// What runs of `tc_ingress` left behind.
#[derive(Debug, PartialEq)]
struct Left {
    /// What each run returned.
    returned: Vec<i32>,
    /// Runs by `tc_path`.
    paths: Vec<u64>,
    /// Each flow entry's (packets, bytes), the client's side first.
    counters: Vec<([u64; 2], [u64; 2])>,
    /// The reason of each event in the ring not read before.
    reasons: Vec<u8>,
}

fn left(ebpf: &mut Ebpf, returned: Vec<i32>) -> Left {
    let paths = path_times(ebpf).iter().map(|t| t.runs).collect();
    let counters = FlowTables::take_from(ebpf)
        .unwrap()
        .flows()
        .unwrap()
        .into_iter()
        .map(|(key, st)| {
            // The key's sides are in the order key4 put them: client first.
            let (c, s) = if key.addr(0) == std::net::IpAddr::from(CLIENT.0) {
                (0, 1)
            } else {
                (1, 0)
            };
            ([st.packets[c], st.packets[s]], [st.bytes[c], st.bytes[s]])
        })
        .collect();
    let mut ring = RingBuf::try_from(ebpf.take_map("EVENTS").unwrap()).unwrap();
    let mut reasons = Vec::new();
    while let Some(record) = ring.next() {
        match events::decode(&record).expect("decodes") {
            Event::Flow(f) => reasons.push(f.reason),
            other => panic!("unexpected event {other:?}"),
        }
    }
    Left {
        returned,
        paths,
        counters,
        reasons,
    }
}

fn by_path(untracked: u64, counted: u64, event: u64, miss: u64) -> Vec<u64> {
    let mut v = vec![0u64; tc_path::MAX as usize];
    v[tc_path::UNTRACKED as usize] = untracked;
    v[tc_path::COUNTED as usize] = counted;
    v[tc_path::EVENT as usize] = event;
    v[tc_path::MISS as usize] = miss;
    v
}

#[test]
fn each_cost_stop_ends_the_run_where_it_says() {
    test_support::require_root("it loads eBPF programs");
    let frames = connection();
    let len = |i: usize| frames[i].len() as u64;
    // The client sent frames 1, 3, 4, 5 and 6; the server frame 2.
    let counted = vec![([5, 1], [len(1) + len(3) + len(4) + len(5) + len(6), len(2)])];
    let passed = vec![TC_ACT_UNSPEC; frames.len()];
    let alone = |stop: u32| {
        let dir = pins_for(&format!("tc-stop-{stop}"));
        let mut ebpf = load_stopped(&dir.0, 1, stop);
        let returned = run(&ebpf, &frames);
        left(&mut ebpf, returned)
    };

    // Parsed, then passed: every run untracked, nothing made, nothing sent.
    assert_eq!(
        alone(cost_stop::PARSED),
        Left {
            returned: passed.clone(),
            paths: by_path(7, 0, 0, 0),
            counters: vec![],
            reasons: vec![]
        }
    );
    // Looked up, nothing more: with nothing ever inserted, the IP runs miss.
    assert_eq!(
        alone(cost_stop::LOOKED_UP),
        Left {
            returned: passed.clone(),
            paths: by_path(1, 0, 0, 6),
            counters: vec![],
            reasons: vec![]
        }
    );
    // Everything but events: the same paths and counters as the whole run.
    assert_eq!(
        alone(cost_stop::BEFORE_EVENTS),
        Left {
            returned: passed.clone(),
            paths: by_path(1, 3, 2, 1),
            counters: counted.clone(),
            reasons: vec![]
        }
    );
    assert_eq!(
        alone(cost_stop::NOWHERE),
        Left {
            returned: passed.clone(),
            paths: by_path(1, 3, 2, 1),
            counters: counted.clone(),
            reasons: vec![reason::NEW_FLOW, reason::NEW_FLOW, reason::TCP_FLAGS],
        }
    );

    // Looked up in tables that hold the flow (pinned, so a second object
    // shares them): found, and not counted.
    let dir = pins_for("tc-stop-found");
    let mut whole = load_stopped(&dir.0, 1, cost_stop::NOWHERE);
    let returned = run(&whole, &frames);
    assert_eq!(left(&mut whole, returned).counters, counted);
    let mut looking = load_stopped(&dir.0, 1, cost_stop::LOOKED_UP);
    let returned = run(&looking, &frames);
    assert_eq!(
        left(&mut looking, returned),
        Left {
            returned: passed,
            paths: by_path(1, 6, 0, 0),
            counters: counted,
            reasons: vec![]
        }
    );
}

#[test]
fn before_events_a_denied_packet_is_still_dropped_only_not_reported() {
    test_support::require_root("it loads eBPF programs");
    // A test run's packet comes in on the loopback device.
    const LOOPBACK: u32 = 1;
    // Denies all the endpoint sends (default deny, no rule): its SYN.
    let denied = |stop: u32| {
        let dir = pins_for(&format!("tc-stop-deny-{stop}"));
        let mut ebpf = load_stopped(&dir.0, 1, stop);
        let mut endpoints: aya::maps::HashMap<&mut MapData, u32, EndpointInfo> =
            aya::maps::HashMap::try_from(ebpf.map_mut("ENDPOINTS").unwrap()).unwrap();
        let info = EndpointInfo {
            endpoint_id: 7,
            identity: 70_007,
            ingress: enforcement::NONE,
            egress: enforcement::ON,
            _pad0: [0; 2],
        };
        endpoints.insert(LOOPBACK, info, 0).unwrap();
        let returned = run(&ebpf, &[tcp(CLIENT, SERVER, SYN, 0)]);
        left(&mut ebpf, returned)
    };
    let dropped = |reasons| Left {
        returned: vec![TC_ACT_SHOT],
        paths: by_path(0, 0, 0, 1),
        counters: vec![],
        reasons,
    };
    assert_eq!(denied(cost_stop::NOWHERE), dropped(vec![reason::NEW_FLOW]));
    assert_eq!(denied(cost_stop::BEFORE_EVENTS), dropped(vec![]));
}

/// One SYN for SERVER through `tc_egress` (what an endpoint receives) of an
/// endpoint that has SERVER's identity, ingress enforced without a rule (so
/// all it receives is denied): SERVER is that endpoint, or a replica of it
/// whose frame the bridge flooded here. `place`: SERVER's entry in
/// `ENDPOINT_ADDRS` (None: none yet).
fn syn_to_an_endpoint_of_its_identity(place: Option<u32>) -> Left {
    const LOOPBACK: u32 = 1;
    const IDENTITY: u32 = 70_007;
    let dir = pins_for(&format!("tc-flooded-{}", place.map_or(-1, i64::from)));
    let mut ebpf = load(&dir.0, 1);
    let egress: &mut SchedClassifier = ebpf.program_mut("tc_egress").unwrap().try_into().unwrap();
    egress.load().expect("the verifier accepts tc_egress");
    let mut endpoints: aya::maps::HashMap<&mut MapData, u32, EndpointInfo> =
        aya::maps::HashMap::try_from(ebpf.map_mut("ENDPOINTS").unwrap()).unwrap();
    let info = EndpointInfo {
        endpoint_id: 7,
        identity: IDENTITY,
        ingress: enforcement::ON,
        egress: enforcement::NONE,
        _pad0: [0; 2],
    };
    endpoints.insert(LOOPBACK, info, 0).unwrap();
    let addr = |a: [u8; 4]| {
        let mut k = EndpointAddr {
            family: 4,
            ..Default::default()
        };
        k.addr[..4].copy_from_slice(&a);
        k
    };
    let mut ipcache: LpmTrie<&mut MapData, IpcacheAddr, IpcacheValue> =
        LpmTrie::try_from(ebpf.map_mut("IPCACHE").unwrap()).unwrap();
    for (a, identity) in [(SERVER.0, IDENTITY), (CLIENT.0, IDENTITY + 1)] {
        let value = IpcacheValue { identity };
        ipcache.insert(&Key::new(64, addr(a)), value, 0).unwrap();
    }
    if let Some(place) = place {
        let mut places: aya::maps::HashMap<&mut MapData, EndpointAddr, u32> =
            aya::maps::HashMap::try_from(ebpf.map_mut("ENDPOINT_ADDRS").unwrap()).unwrap();
        places.insert(addr(SERVER.0), place, 0).unwrap();
    }
    let returned = run_program(&ebpf, "tc_egress", &[tcp(CLIENT, SERVER, SYN, 0)]);
    left(&mut ebpf, returned)
}

#[test]
fn a_frame_flooded_to_a_replica_is_neither_counted_nor_judged_there() {
    test_support::require_root("it loads eBPF programs");
    const LOOPBACK: u32 = 1;
    let judged = Left {
        returned: vec![TC_ACT_SHOT],
        paths: by_path(0, 0, 0, 1),
        counters: vec![],
        reasons: vec![reason::NEW_FLOW],
    };
    let passed_by = Left {
        returned: vec![TC_ACT_UNSPEC],
        paths: by_path(0, 0, 0, 1),
        counters: vec![],
        reasons: vec![],
    };
    // SERVER is this interface's endpoint: judged (and denied).
    assert_eq!(syn_to_an_endpoint_of_its_identity(Some(LOOPBACK)), judged);
    // SERVER is a replica on another node (0), or behind another
    // interface of this node: not this endpoint's frame.
    assert_eq!(syn_to_an_endpoint_of_its_identity(Some(0)), passed_by);
    assert_eq!(
        syn_to_an_endpoint_of_its_identity(Some(LOOPBACK + 4)),
        passed_by
    );
    // Not known yet (flow-probe has not written it): by identity, which a
    // replica shares: judged, as before the addresses were known.
    assert_eq!(syn_to_an_endpoint_of_its_identity(None), judged);
}

/// The rule table holds 65,536: a policy that compiles to more is refused
/// before anything is written (it filled the table midway, leaving old and
/// new rules mixed), and a change whose old and new rules do not fit
/// together removes the old first.
#[test]
fn a_policy_past_the_rule_table_changes_nothing_and_a_big_change_fits() {
    use cluster_spec::policy::{Action, Direction, PolicyKey, PolicyValue};
    test_support::require_root("it loads eBPF programs");
    let dir = pins_for("tc-policy-room");
    let mut ebpf = load(&dir.0, 0);
    let maps = datapath_maps(&mut ebpf);
    let rules_in_the_kernel = || {
        let map = aya::maps::Map::HashMap(MapData::from_pin(dir.0.join("POLICY")).unwrap());
        let map: aya::maps::HashMap<
            _,
            flow_probe::kernel::events::PolicyKey,
            flow_probe::kernel::events::PolicyValue,
        > = aya::maps::HashMap::try_from(map).unwrap();
        let mut ports: Vec<u16> = map.keys().map(|k| k.unwrap().dport).collect();
        ports.sort_unstable();
        ports
    };
    let file = EndpointsFile::parse(test_support::specs::ENDPOINTS, "endpoints.yaml").unwrap();
    // Rules of endpoint 1 for identities 1.., each on its own port.
    let with_rules = |first_identity: u32, n: u32| {
        let mut compiled = compile(&[], &file);
        compiled.entries = (first_identity..first_identity + n)
            .map(|id| {
                let key = PolicyKey {
                    endpoint_id: 1,
                    remote_identity: id,
                    dport: u16::try_from(id % 65_536).unwrap(),
                    proto: 6,
                    direction: Direction::Ingress,
                };
                let value = PolicyValue {
                    action: Action::Allow,
                    policy_id: 0,
                };
                (key, value)
            })
            .collect();
        compiled
    };
    let mut datapath = Datapath::new(maps, HashMap::from([(1, 11)]), Default::default());
    datapath.sync(&with_rules(1, 3), &file).unwrap();
    assert_eq!(rules_in_the_kernel(), [1, 2, 3]);

    let err = datapath.sync(&with_rules(100, 65_537), &file).unwrap_err();
    assert_eq!(
        err.to_string(),
        "65537 rules, more than the datapath's table holds (65536); nothing was changed"
    );
    assert_eq!(rules_in_the_kernel(), [1, 2, 3]);

    // 40,000 rules, then 40,000 others: 80,000 at once would not fit.
    datapath.sync(&with_rules(1, 40_000), &file).unwrap();
    let report = datapath.sync(&with_rules(50_001, 40_000), &file).unwrap();
    assert_eq!(
        (report.rules_written, report.rules_removed),
        (40_000, 40_000)
    );
    let ports = rules_in_the_kernel();
    assert_eq!(ports.len(), 40_000);
    let want: Vec<u16> = {
        let mut v: Vec<u16> = (50_001..90_001u32)
            .map(|id| u16::try_from(id % 65_536).unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(ports, want);
}

#[test]
fn sync_writes_where_each_endpoint_address_is_and_forgets_what_went() {
    test_support::require_root("it loads eBPF programs");
    let dir = pins_for("tc-endpoint-addrs");
    let mut ebpf = load(&dir.0, 0);
    let maps = datapath_maps(&mut ebpf);
    let places = || {
        let map = aya::maps::Map::HashMap(MapData::from_pin(dir.0.join("ENDPOINT_ADDRS")).unwrap());
        let map: aya::maps::HashMap<_, EndpointAddr, u32> =
            aya::maps::HashMap::try_from(map).unwrap();
        let mut v: Vec<(std::net::IpAddr, u32)> = map
            .iter()
            .map(|e| e.unwrap())
            .map(|(k, place)| {
                let addr = match k.family {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(&k.addr[..4]).unwrap()),
                    _ => std::net::IpAddr::from(k.addr),
                };
                (addr, place)
            })
            .collect();
        v.sort();
        v
    };
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let mut file = EndpointsFile::parse(test_support::specs::ENDPOINTS, "endpoints.yaml").unwrap();
    let mut datapath = Datapath::new(maps, HashMap::from([(1, 11), (2, 12)]), Default::default());
    datapath.sync(&compile(&[], &file), &file).unwrap();
    // client and api-2 behind interfaces 11 and 12; api-1 and api-3 not here.
    assert_eq!(
        places(),
        [
            (ip("198.18.1.10"), 11),
            (ip("198.18.1.11"), 0),
            (ip("198.18.1.12"), 12),
            (ip("198.18.1.13"), 0),
            (ip("fd42::1:10"), 11),
            (ip("fd42::1:12"), 12),
        ]
    );
    // api-3 gone, api-2 moved away, api-1 here now.
    file.endpoints.retain(|e| e.name != "api-3");
    datapath.set_ifindex_of(HashMap::from([(1, 11), (3, 13)]));
    datapath.sync(&compile(&[], &file), &file).unwrap();
    assert_eq!(
        places(),
        [
            (ip("198.18.1.10"), 11),
            (ip("198.18.1.11"), 13),
            (ip("198.18.1.12"), 0),
            (ip("fd42::1:10"), 11),
            (ip("fd42::1:12"), 0),
        ]
    );
}
