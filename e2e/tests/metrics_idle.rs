//! Two hundred idle connections against the real flow-probe's `/metrics`
//! (once they kept it from answering anything): Prometheus' scrape is still
//! answered while they are open, and every idle connection is closed by the
//! probe (the cap makes room, the request-head deadline ends the rest).

use std::io::Read;
use std::net::TcpStream;

use e2e::probe_metrics::POLICY_GENERATION;
use observe_lab::Scenario;
use observer_proto::observer::ServerStatusRequest;

const IDLE: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_block_a_scrape_nor_stay_open() {
    let env = e2e::start(&Scenario::builtin_capture(), &[]);
    let addr = env.metrics_addr();
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(addr).expect("connect to /metrics"))
        .collect();
    // Scrapes, each on a fresh connection, while the idle ones are open.
    for _ in 0..3 {
        let generation = tokio::task::block_in_place(|| env.metric(POLICY_GENERATION));
        assert_eq!(generation, 1, "the scenario's policy (none) is in force");
    }
    // gRPC is another listener: untouched.
    let status = env
        .client()
        .await
        .server_status(ServerStatusRequest {})
        .await;
    assert!(status.is_ok(), "{status:?}");
    // Every idle connection ends from the probe's side, without an answer.
    tokio::task::block_in_place(|| {
        for (i, mut s) in idle.into_iter().enumerate() {
            s.set_read_timeout(Some(e2e::WAIT)).unwrap();
            let mut rest = Vec::new();
            let end = s.read_to_end(&mut rest).map_err(|e| e.kind());
            assert_eq!((end, rest.len()), (Ok(0), 0), "idle connection {i}");
        }
    });
}
