//! What the traffic generator reports: the exact facts of every exchange, for
//! comparing against observed flows.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::scenario::{Expect, Family, Protocol};

/// How one traffic item ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The full exchange happened: TCP connected, the server read the whole request
    /// and the client read the whole response up to the server's close; the UDP
    /// echo or the ICMP echo reply came back with the full payload.
    Completed,
    /// TCP: the connection was reset (nothing listens). UDP: ICMP port unreachable
    /// came back (the socket reported ECONNREFUSED).
    Refused,
    /// No answer at all within the client's wait ([`super::DROP_WAIT`] for items
    /// that expect `dropped`, else [`super::OP_TIMEOUT`]): the TCP connect got
    /// neither SYN-ACK nor RST, the UDP datagram or the echo request no reply.
    /// What a datapath that drops silently looks like.
    Dropped,
    /// Anything else (timeout, short transfer, socket error).
    Failed { error: String },
}

/// One traffic item, as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemReport {
    /// Index in the scenario's `traffic` list.
    pub index: usize,
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub family: Family,
    pub expect: Expect,
    /// Client address (the `from` endpoint's).
    pub src_ip: IpAddr,
    /// Server address (the `to` endpoint's).
    pub dst_ip: IpAddr,
    /// TCP/UDP: the client's (ephemeral) source port, known even when refused.
    pub src_port: Option<u16>,
    /// TCP/UDP: the destination port.
    pub dst_port: Option<u16>,
    /// ICMP: identifier of the echo request.
    pub icmp_id: Option<u16>,
    /// ICMP: sequence number of the echo request.
    pub icmp_seq: Option<u16>,
    pub outcome: Outcome,
    /// Payload bytes the client sent (TCP stream bytes, UDP datagram payload,
    /// ICMP echo data after the 8-byte ICMP header). A dropped UDP or ICMP item
    /// counts what it sent; a dropped TCP connect never carries data (0).
    pub bytes_sent: u64,
    /// Payload bytes the client received (same units).
    pub bytes_received: u64,
    /// Payload bytes the server read (0 when no server ran).
    pub server_bytes_received: u64,
    /// Payload bytes the server wrote (0 when no server ran).
    pub server_bytes_sent: u64,
    /// Wall clock when the client started, ns since the Unix epoch.
    pub started_unix_ns: u64,
    /// Wall clock when the item was over, ns since the Unix epoch.
    pub finished_unix_ns: u64,
}

impl ItemReport {
    /// Whether the outcome is the one the scenario expects.
    pub fn as_expected(&self) -> bool {
        matches!(
            (self.expect, &self.outcome),
            (Expect::Ok, Outcome::Completed)
                | (Expect::Refused, Outcome::Refused)
                | (Expect::Dropped, Outcome::Dropped)
        )
    }

    fn endpoint(ip: IpAddr, port: Option<u16>) -> String {
        match port {
            Some(p) => SocketAddr::new(ip, p).to_string(),
            None => ip.to_string(),
        }
    }
}

/// One run of every traffic item of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficReport {
    /// Prefix of the lab the traffic ran in.
    pub prefix: String,
    pub items: Vec<ItemReport>,
}

impl TrafficReport {
    /// Whether every item ended as expected.
    pub fn all_as_expected(&self) -> bool {
        self.items.iter().all(ItemReport::as_expected)
    }

    /// The items that did not end as expected.
    pub fn unexpected(&self) -> Vec<&ItemReport> {
        self.items.iter().filter(|i| !i.as_expected()).collect()
    }
}

/// Totals of [`super::run_traffic`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrafficSummary {
    /// Rounds run (each runs every item once).
    pub rounds: u64,
    /// Items run in all rounds.
    pub items: u64,
    /// Items that did not end as expected.
    pub unexpected: u64,
    /// The last unexpected item, if any.
    pub last_unexpected: Option<ItemReport>,
}

impl TrafficSummary {
    /// Counts one round.
    pub fn add(&mut self, round: &TrafficReport) {
        self.rounds += 1;
        self.items += round.items.len() as u64;
        for item in round.unexpected() {
            self.unexpected += 1;
            self.last_unexpected = Some(item.clone());
        }
    }
}

impl fmt::Display for TrafficSummary {
    /// `2 rounds, 20 items, 0 not as expected`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} round{}, {} items, {} not as expected",
            self.rounds,
            if self.rounds == 1 { "" } else { "s" },
            self.items,
            self.unexpected
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed => f.write_str("completed"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::Dropped => f.write_str("dropped"),
            Outcome::Failed { error } => write!(f, "failed: {error}"),
        }
    }
}

impl fmt::Display for ItemReport {
    /// One line, e.g.
    /// `[0] tcp frontend 198.18.1.10:40312 -> api 198.18.1.11:8080: completed, sent 100 B, received 1000 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {} {} {} -> {} {}",
            self.index,
            self.protocol,
            self.from,
            Self::endpoint(self.src_ip, self.src_port),
            self.to,
            Self::endpoint(self.dst_ip, self.dst_port),
        )?;
        if let (Some(id), Some(seq)) = (self.icmp_id, self.icmp_seq) {
            write!(f, " (id {id} seq {seq})")?;
        }
        write!(
            f,
            ": {}, sent {} B, received {} B",
            self.outcome, self.bytes_sent, self.bytes_received
        )?;
        if !self.as_expected() {
            write!(f, " (UNEXPECTED: wanted {})", self.expect)?;
        }
        Ok(())
    }
}

impl fmt::Display for TrafficReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            writeln!(f, "{item}")?;
        }
        Ok(())
    }
}
