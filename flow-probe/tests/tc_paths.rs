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
//!   parsing, after the flow's lookup, before sending events; what each leaves
//!   behind (paths, entries, events) is exactly what it says.

use std::path::{Path, PathBuf};

use aya::maps::{MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use flow_probe::kernel::events::{
    self, EGRESS_JUMP_MARK, EgressJump, Event, FlowStats, PathTime, cost_stop, hook, reason,
    tc_path,
};
use flow_probe::kernel::flow_tables::FlowTables;
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

/// Runs each frame through `tc_ingress` once, in order.
fn run(ebpf: &Ebpf, frames: &[Vec<u8>]) {
    let prog: &SchedClassifier = ebpf.program("tc_ingress").unwrap().try_into().unwrap();
    for frame in frames {
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        })
        .expect("test run");
    }
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
    let dir = Pins(Path::new(pins::PIN_ROOT).join(format!("tc-paths-{}", std::process::id())));
    pins::create_dir(&dir.0).unwrap();
    let mut ebpf = load(&dir.0, 1);
    run(&ebpf, &connection());

    let times = path_times(&ebpf);
    let runs: Vec<u64> = times.iter().map(|t| t.runs).collect();
    let mut expected = vec![0u64; tc_path::MAX as usize];
    expected[tc_path::UNTRACKED as usize] = 1;
    expected[tc_path::MISS as usize] = 1;
    expected[tc_path::EVENT as usize] = 2;
    expected[tc_path::COUNTED as usize] = 3;
    assert_eq!(
        runs, expected,
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
    let dir = Pins(Path::new(pins::PIN_ROOT).join(format!("tc-paths-off-{}", std::process::id())));
    pins::create_dir(&dir.0).unwrap();
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
    let dir = Pins(Path::new(pins::PIN_ROOT).join(format!("tc-hooks-{}", std::process::id())));
    pins::create_dir(&dir.0).unwrap();
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

/// What `connection()` through `tc_ingress` leaves with `cost_stop` = `stop`:
/// runs by path, the flow entries (client side first) and the events sent.
fn stopped_run(stop: u32) -> (Vec<u64>, Vec<FlowStats>, Vec<u8>) {
    let dir =
        Pins(Path::new(pins::PIN_ROOT).join(format!("tc-stop-{stop}-{}", std::process::id())));
    pins::create_dir(&dir.0).unwrap();
    let mut ebpf = load_stopped(&dir.0, 1, stop);
    run(&ebpf, &connection());
    let runs = path_times(&ebpf).iter().map(|t| t.runs).collect();
    let tables = FlowTables::take_from(&mut ebpf).unwrap();
    let entries = tables
        .flows()
        .unwrap()
        .into_iter()
        .map(|(key, mut st)| {
            // Side 0 of the key is its lower address: put the client first.
            if key.addr(0) != std::net::IpAddr::from(CLIENT.0) {
                st.packets.swap(0, 1);
                st.bytes.swap(0, 1);
            }
            st
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
    (runs, entries, reasons)
}

#[test]
fn each_cost_stop_ends_the_run_where_it_says() {
    test_support::require_root("it loads eBPF programs");
    let frames = connection();
    let len = |i: usize| frames[i].len() as u64;
    // The client sent frames 1, 3, 4, 5 and 6; the server frame 2.
    let client_bytes = len(1) + len(3) + len(4) + len(5) + len(6);
    let by_path = |untracked, counted, event, miss| {
        let mut v = vec![0u64; tc_path::MAX as usize];
        v[tc_path::UNTRACKED as usize] = untracked;
        v[tc_path::COUNTED as usize] = counted;
        v[tc_path::EVENT as usize] = event;
        v[tc_path::MISS as usize] = miss;
        v
    };
    let stats = |(runs, entries, reasons): &(Vec<u64>, Vec<FlowStats>, Vec<u8>)| {
        let counts: Vec<_> = entries.iter().map(|st| (st.packets, st.bytes)).collect();
        (runs.clone(), counts, reasons.clone())
    };
    let counted = vec![([5, 1], [client_bytes, len(2)])];

    // Parsed, then passed: every run untracked, nothing made, nothing sent.
    assert_eq!(
        stats(&stopped_run(cost_stop::PARSED)),
        (by_path(7, 0, 0, 0), vec![], vec![])
    );
    // Looked up, nothing more: the IP runs all miss, as nothing is inserted.
    assert_eq!(
        stats(&stopped_run(cost_stop::LOOKED_UP)),
        (by_path(1, 0, 0, 6), vec![], vec![])
    );
    // Everything but events: the same paths and counters as the whole run.
    assert_eq!(
        stats(&stopped_run(cost_stop::BEFORE_EVENTS)),
        (by_path(1, 3, 2, 1), counted.clone(), vec![])
    );
    assert_eq!(
        stats(&stopped_run(cost_stop::NOWHERE)),
        (
            by_path(1, 3, 2, 1),
            counted,
            vec![reason::NEW_FLOW, reason::NEW_FLOW, reason::TCP_FLAGS]
        )
    );
}
