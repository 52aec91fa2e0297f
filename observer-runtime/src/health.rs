//! The standard gRPC health service (`grpc.health.v1.Health`) of a server
//! of `observer.Observer`: `hubble status` checks it before anything else
//! and stops at an error, and load balancers and Kubernetes' gRPC probes
//! ask it too.
//!
//! [`HealthService`] answers for the server as a whole (service `""`) and
//! for each service it serves, all with one status that the server's own
//! test gives ([`Serving`]): flow-probe serves while it runs; the relay, as
//! Hubble Relay, only while it follows at least one node. `Check` of a
//! service not served is `NOT_FOUND`; `Watch` sends the status now, then
//! each change (polled every [`WATCH_EVERY`]), and `SERVICE_UNKNOWN` for a
//! service not served.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use observer_proto::health::health_check_response::ServingStatus;
use observer_proto::health::health_server::{Health, HealthServer};
use observer_proto::health::{HealthCheckRequest, HealthCheckResponse};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// How often a `Watch` looks at the status again.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Whether the server serves now.
pub type Serving = Arc<dyn Fn() -> bool + Send + Sync>;

/// The health service over a server's own test.
#[derive(Clone)]
pub struct HealthService {
    services: &'static [&'static str],
    serving: Serving,
}

impl HealthService {
    /// For a server of `services` (full gRPC names, e.g. `observer.Observer`)
    /// whose status `serving` tells.
    pub fn new(services: &'static [&'static str], serving: Serving) -> Self {
        HealthService { services, serving }
    }

    pub fn into_server(self) -> HealthServer<HealthService> {
        HealthServer::new(self)
    }

    /// The status of `service` now; `None` for one not served here.
    fn status(&self, service: &str) -> Option<ServingStatus> {
        if !service.is_empty() && !self.services.contains(&service) {
            return None;
        }
        Some(if (self.serving)() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        })
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        match self.status(service) {
            Some(status) => Ok(Response::new(answer(status))),
            None => Err(Status::not_found(format!(
                "no service {service:?} here: this server's are {}",
                self.services.join(", ")
            ))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let service = request.into_inner().service;
        let (tx, rx) = mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            let mut told = None;
            loop {
                let now = this
                    .status(&service)
                    .unwrap_or(ServingStatus::ServiceUnknown);
                if told != Some(now) {
                    if tx.send(Ok(answer(now))).await.is_err() {
                        return;
                    }
                    told = Some(now);
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio_stream::StreamExt;

    use super::*;

    const SERVICES: &[&str] = &["observer.Observer", "peer.Peer"];

    fn service() -> (HealthService, Arc<AtomicBool>) {
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let serving: Serving = Arc::new(move || flag.load(Ordering::Relaxed));
        (HealthService::new(SERVICES, serving), up)
    }

    async fn check(h: &HealthService, service: &str) -> Result<i32, Status> {
        h.check(Request::new(HealthCheckRequest {
            service: service.into(),
        }))
        .await
        .map(|r| r.into_inner().status)
    }

    #[tokio::test]
    async fn check_answers_the_servers_status_for_what_it_serves() {
        let (h, up) = service();
        let serving = ServingStatus::Serving as i32;
        assert_eq!(check(&h, "observer.Observer").await.unwrap(), serving);
        assert_eq!(check(&h, "").await.unwrap(), serving);
        up.store(false, Ordering::Relaxed);
        assert_eq!(
            check(&h, "peer.Peer").await.unwrap(),
            ServingStatus::NotServing as i32
        );
        let err = check(&h, "no.Such").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert_eq!(
            err.message(),
            "no service \"no.Such\" here: this server's are observer.Observer, peer.Peer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watch_tells_the_status_then_each_change() {
        let (h, up) = service();
        let watch = |service: &str| {
            let h = h.clone();
            let request = Request::new(HealthCheckRequest {
                service: service.into(),
            });
            async move { h.watch(request).await.unwrap().into_inner() }
        };
        let mut stream = watch("observer.Observer").await;
        let next = |s: Option<Result<HealthCheckResponse, Status>>| s.unwrap().unwrap().status;
        assert_eq!(next(stream.next().await), ServingStatus::Serving as i32);
        up.store(false, Ordering::Relaxed);
        assert_eq!(next(stream.next().await), ServingStatus::NotServing as i32);
        up.store(true, Ordering::Relaxed);
        assert_eq!(next(stream.next().await), ServingStatus::Serving as i32);
        let mut unknown = watch("no.Such").await;
        assert_eq!(
            next(unknown.next().await),
            ServingStatus::ServiceUnknown as i32
        );
    }
}
