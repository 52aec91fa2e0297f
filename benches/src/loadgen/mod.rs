//! The latency benchmark of issue 7: a fixed-rate HTTP/1.1 load generator, the
//! echo server it talks to, a user-space sidecar proxy, and the orchestrator that
//! runs them on a lab with and without our datapath.
//!
//! - `http`: the minimal HTTP/1.1 framing both ends use (`Content-Length` only,
//!   keep-alive).
//! - `server`: echo server, one thread per connection.
//! - `client`: open-loop load at a fixed rate over N keep-alive connections,
//!   corrected for coordinated omission: every request has an intended send time
//!   on a fixed schedule and its latency is measured from that time, so a stall
//!   counts against every request that should have been sent during it.
//! - `hist`: HDR histogram helpers (percentiles, the text form a child process
//!   hands its histogram back in).
//! - `proxy`: the sidecar emulation: accepts connections that nftables
//!   redirected, connects to the original destination (`SO_ORIGINAL_DST`) and
//!   copies both ways.
//! - `run`: builds the lab, runs the scenarios interleaved and writes
//!   `benches/RESULTS.md`.
//!
//! Everything runs from one binary, `benches/src/bin/loadgen.rs`;
//! `benches/run-latency.sh` is the entry point.

pub mod client;
pub mod hist;
pub mod http;
pub mod proxy;
pub mod run;
pub mod server;
pub mod sys;
