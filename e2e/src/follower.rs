//! A following GetFlows client: a task reads the stream into a queue; the test
//! waits for what it expects and keeps everything received in `log`.

use observer_proto::observer::GetFlowsResponse;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::WAIT;
use crate::responses::{describe, is_flow_on};

/// A following client; everything it received is in `log`.
pub struct Follower {
    rx: mpsc::UnboundedReceiver<GetFlowsResponse>,
    pub log: Vec<GetFlowsResponse>,
    task: JoinHandle<()>,
}

impl Follower {
    pub fn new(rx: mpsc::UnboundedReceiver<GetFlowsResponse>, task: JoinHandle<()>) -> Self {
        Follower {
            rx,
            log: Vec::new(),
            task,
        }
    }

    /// Reads until a response satisfies `pred`; returns its index in `log`.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&GetFlowsResponse) -> bool) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => {
                    self.log.push(r);
                    if pred(self.log.last().unwrap()) {
                        return self.log.len() - 1;
                    }
                }
                Ok(None) => panic!("the follow stream ended while waiting for {what}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; received:\n{}",
                    describe(&self.log)
                ),
            }
        }
    }

    /// Reads until every `(node, port)` has a flow from `from` on.
    pub async fn until_flows(&mut self, from: usize, want: &[(&str, u32)]) {
        let missing = |log: &[GetFlowsResponse]| {
            want.iter()
                .filter(|(node, port)| !log[from..].iter().any(|r| is_flow_on(r, node, *port)))
                .count()
        };
        if missing(&self.log) == 0 {
            return;
        }
        loop {
            self.until(&format!("flows {want:?}"), |_| true).await;
            if missing(&self.log) == 0 {
                return;
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}
