//! The one place that turns `--server`, the TLS flags (Hubble's names) and
//! `--lab` into a gRPC channel, for every command that talks to a probe or
//! a relay: `flows` (and its TUI), `graph`, `status`, `nodes`, `query`,
//! `demo`.
//!
//! TLS is on with `--tls`, a `tls://` or `https://` address (as the Hubble
//! CLI), or `--lab`; `http://` with TLS is an error, never plaintext
//! ([`observer_runtime::tls::dial_uri`]). Without CA files the server is
//! checked against the system's CAs. Without
//! `--server` and TLS flags, a lab that is up in the default state directory
//! is used with its certificates; otherwise the defaults are plaintext.
//! Each flag but `--lab` may come from the environment under the name the
//! Hubble CLI reads (`HUBBLE_SERVER`, `HUBBLE_TLS`,
//! `HUBBLE_TLS_CA_CERT_FILES`, ...); the flag wins over its variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use observe_lab::DEFAULT_STATE_DIR;
use observe_lab::certs::CertFiles;
use observer_proto::observer::observer_client::ObserverClient;
use observer_runtime::tls::{ClientTls, ClientTlsFlags, TlsFlags, dial_uri, explain};
use tonic::transport::{Channel, Endpoint};

/// `observe`'s TLS flags: the Hubble CLI's.
pub const FLAGS: TlsFlags = TlsFlags::HUBBLE_CLI;

/// How long connecting to one address may take (`--timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an observer.Observer call may wait for its answer to begin (a
/// following stream then runs on): a connection the server dropped at a bad
/// moment must end in an error, not a wait without end (`--request-timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings while a call without a deadline runs (a SQL query runs as
/// long as it needs): a server that stopped answering (hung, or never a gRPC
/// server) fails it within interval + timeout; a busy relay still answers
/// pings, which its connection task handles. Not on calls with a deadline:
/// gRPC-Go servers (Cilium's) close connections that ping more often than
/// every 5 minutes while no data flows, as a long quiet follow would.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The connection flags of every command that talks to a server.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ConnectArgs {
    /// Server address: HOST:PORT, or http://, https:// or tls://HOST:PORT
    /// (https and tls turn TLS on).
    #[arg(long, value_name = "ADDRESS", env = "HUBBLE_SERVER")]
    pub server: Option<String>,
    /// Connect with TLS; the server's certificate is checked against
    /// --tls-ca-cert-files, or without it the system's CAs.
    #[arg(long, env = "HUBBLE_TLS", value_parser = BoolishValueParser::new())]
    pub tls: bool,
    /// CA certificates (PEM) the server's certificate must chain to;
    /// comma-separated or repeated.
    #[arg(
        long,
        value_name = "FILES",
        value_delimiter = ',',
        env = "HUBBLE_TLS_CA_CERT_FILES"
    )]
    pub tls_ca_cert_files: Vec<PathBuf>,
    /// Client certificate (PEM) for servers that require one (mTLS).
    #[arg(long, value_name = "FILE", env = "HUBBLE_TLS_CLIENT_CERT_FILE")]
    pub tls_client_cert_file: Option<PathBuf>,
    /// The private key of --tls-client-cert-file (PEM).
    #[arg(long, value_name = "FILE", env = "HUBBLE_TLS_CLIENT_KEY_FILE")]
    pub tls_client_key_file: Option<PathBuf>,
    /// The name the server's certificate must be valid for; by default the
    /// host of the address.
    #[arg(long, value_name = "NAME", env = "HUBBLE_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Do not check the server's certificate (still encrypted; for trying
    /// things out only; a warning says so each time). Not with
    /// --tls-ca-cert-files, which asks for the check.
    #[arg(long, env = "HUBBLE_TLS_ALLOW_INSECURE", value_parser = BoolishValueParser::new())]
    pub tls_allow_insecure: bool,
    /// Talk to the lab whose state directory this is (`observe lab up
    /// --state-dir`): its relay unless --server is given, over mTLS with
    /// the lab's CA and client certificate.
    #[arg(
        long,
        visible_alias = "state-dir",
        value_name = "STATE_DIR",
        conflicts_with_all = ["tls", "tls_ca_cert_files", "tls_client_cert_file", "tls_client_key_file", "tls_allow_insecure"]
    )]
    pub lab: Option<PathBuf>,
    /// How long connecting to an address may take, e.g. 5s (default 3s),
    /// as hubble's --timeout.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, env = "HUBBLE_TIMEOUT")]
    pub timeout: Option<Duration>,
    /// How long a call may wait for the server's answer to begin (default
    /// 30s); a stream then runs as long as it lasts. As hubble's
    /// --request-timeout; SQL queries have the relay's own limit instead.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = positive_duration,
        env = "HUBBLE_REQUEST_TIMEOUT"
    )]
    pub request_timeout: Option<Duration>,
}

/// A duration flag (`500ms`, `5s`, `1m`) that is more than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match observer_proto::time::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("a timeout of 0 would fail every call".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `address` names TLS by its scheme (`tls://`, `https://`).
fn names_tls(address: &str) -> bool {
    let scheme = address
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("tls" | "https"))
}

/// Where to connect and how, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// (address as given, URI to dial), tried in order.
    candidates: Vec<(String, String)>,
    tls: Option<ClientTls>,
    /// The lab whose certificates are used, if any (for messages).
    lab: Option<PathBuf>,
    connect_timeout: Duration,
    /// `--timeout` as given: it bounds the TLS handshake too.
    handshake_timeout: Option<Duration>,
    call_timeout: Duration,
    /// `--request-timeout` was given (an error then names it).
    call_timeout_given: bool,
}

impl ConnectArgs {
    /// Only a server address (tests, and callers that hold one).
    pub fn server(address: impl Into<String>) -> ConnectArgs {
        ConnectArgs {
            server: Some(address.into()),
            ..ConnectArgs::default()
        }
    }

    /// Whether any TLS flag is given.
    fn any_tls_flag(&self) -> bool {
        self.tls
            || !self.tls_ca_cert_files.is_empty()
            || self.tls_client_cert_file.is_some()
            || self.tls_client_key_file.is_some()
            || self.tls_server_name.is_some()
            || self.tls_allow_insecure
    }

    /// Checks the flags: `defaults` are tried in order without `--server`.
    pub fn target(&self, defaults: &[&str]) -> anyhow::Result<Target> {
        let lab = match &self.lab {
            Some(dir) => Some(dir.clone()),
            None if self.server.is_none() && !self.any_tls_flag() => {
                default_lab(Path::new(DEFAULT_STATE_DIR))
            }
            None => None,
        };
        let tls = match &lab {
            Some(dir) => Some(lab_tls(dir, self.tls_server_name.clone())?),
            None => ClientTlsFlags {
                // As the Hubble CLI: an address that names TLS asks for it.
                enabled: self.tls || self.server.as_deref().is_some_and(names_tls),
                ca_files: self.tls_ca_cert_files.clone(),
                cert_file: self.tls_client_cert_file.clone(),
                key_file: self.tls_client_key_file.clone(),
                server_name: self.tls_server_name.clone(),
                allow_insecure: self.tls_allow_insecure,
            }
            .resolve(&FLAGS)?,
        };
        if tls.as_ref().is_some_and(|t| t.allow_insecure) {
            // Set perhaps long ago, through HUBBLE_TLS_ALLOW_INSECURE.
            eprintln!(
                "observe: warning: --tls-allow-insecure: the server's certificate is not \
                 checked; anyone on the way can read and answer as the server"
            );
        }
        let addresses: Vec<String> = match (&self.server, &lab) {
            (Some(s), _) => vec![s.clone()],
            (None, Some(dir)) => match lab_relay(dir) {
                Some(relay) => vec![relay],
                None => defaults.iter().map(|s| s.to_string()).collect(),
            },
            (None, None) => defaults.iter().map(|s| s.to_string()).collect(),
        };
        let candidates = addresses
            .into_iter()
            .map(|a| {
                let uri = dial_uri(&a, tls.is_some(), &FLAGS)
                    .with_context(|| "invalid server address".to_string())?;
                Ok((a, uri))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if candidates.is_empty() {
            anyhow::bail!("no server address: give --server");
        }
        Ok(Target {
            candidates,
            tls,
            lab,
            connect_timeout: self.timeout.unwrap_or(CONNECT_TIMEOUT),
            handshake_timeout: self.timeout,
            call_timeout: self.request_timeout.unwrap_or(CALL_TIMEOUT),
            call_timeout_given: self.request_timeout.is_some(),
        })
    }
}

/// The default lab, when it is up and has certificates.
fn default_lab(dir: &Path) -> Option<PathBuf> {
    (dir.join(observe_lab::STATE_FILE).is_file() && CertFiles::of_lab(dir).exist())
        .then(|| dir.to_path_buf())
}

/// mTLS with the certificates of the lab in `dir`.
pub fn lab_tls(dir: &Path, server_name: Option<String>) -> anyhow::Result<ClientTls> {
    let certs = CertFiles::of_lab(dir);
    if let Some((what, path)) = certs.all().into_iter().find(|(_, p)| !p.is_file()) {
        anyhow::bail!(
            "--lab {}: no {what} at {} (is a lab up there, started by this version?)",
            dir.display(),
            path.display()
        );
    }
    Ok(ClientTls {
        ca_files: vec![certs.ca_cert],
        identity: Some((certs.client_cert, certs.client_key)),
        server_name,
        allow_insecure: false,
    })
}

/// The address the lab's relay wrote when it was ready.
fn lab_relay(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("relay.addr")).ok()?;
    let addr = text.trim();
    (!addr.is_empty()).then(|| addr.to_string())
}

impl Target {
    /// The addresses tried, in order.
    pub fn addresses(&self) -> Vec<&str> {
        self.candidates.iter().map(|(a, _)| a.as_str()).collect()
    }

    /// This target with `address` as its only candidate, if it is one: a
    /// connection made again then reaches the server the first one did, not
    /// the next default that answers (a probe on 4244 while the relay on
    /// 4245 restarts). TLS and the lab stay as they are.
    pub fn pinned(&self, address: &str) -> Target {
        let mut t = self.clone();
        if t.candidates.iter().any(|(a, _)| a == address) {
            t.candidates.retain(|(a, _)| a == address);
        }
        t
    }

    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The first address that accepts a connection, and its channel; a call
    /// on it may wait for its answer as long as the server takes (Flight SQL
    /// answers when the query has run), as long as the server answers pings.
    pub async fn channel(&self) -> anyhow::Result<(Channel, &str)> {
        self.connect(None).await
    }

    /// [`Target::channel`] for short calls: each fails when its answer has
    /// not begun within the call timeout.
    pub async fn call_channel(&self) -> anyhow::Result<(Channel, &str)> {
        self.connect(Some(self.call_timeout)).await
    }

    /// [`Target::channel`], each call failing when its answer has not begun
    /// within `call_timeout` (a stream may then last as long as it likes).
    async fn connect(&self, call_timeout: Option<Duration>) -> anyhow::Result<(Channel, &str)> {
        let mut failures = Vec::new();
        for (address, uri) in &self.candidates {
            let mut endpoint = Endpoint::from_shared(uri.clone())
                .with_context(|| format!("invalid server address {address:?}"))?
                .connect_timeout(self.connect_timeout);
            endpoint = match call_timeout {
                Some(t) => endpoint.timeout(t),
                None => endpoint
                    .http2_keep_alive_interval(PING_INTERVAL)
                    .keep_alive_timeout(PING_TIMEOUT),
            };
            if let Some(tls) = &self.tls {
                endpoint = match self.handshake_timeout {
                    Some(t) => tls.apply_within(endpoint, t)?,
                    None => tls.apply(endpoint)?,
                };
            }
            match endpoint.connect().await {
                Ok(channel) => return Ok((channel, address)),
                Err(e) => failures.push(format!("{address}: {}", self.describe(&e))),
            }
        }
        anyhow::bail!("cannot reach a server ({})", failures.join("; "))
    }

    /// An observer.Observer client of the first address that answers, and
    /// that address.
    pub async fn observer(&self) -> anyhow::Result<(ObserverClient<Channel>, &str)> {
        let (channel, address) = self.connect(Some(self.call_timeout)).await?;
        Ok((observer_client(channel), address))
    }

    /// Opens `client`'s GetFlows stream of `req`; a refusal worded as
    /// [`Self::status_error`] words it.
    pub async fn get_flows(
        &self,
        client: &mut ObserverClient<Channel>,
        req: observer_proto::observer::GetFlowsRequest,
    ) -> anyhow::Result<tonic::Streaming<observer_proto::observer::GetFlowsResponse>> {
        Ok(client
            .get_flows(req)
            .await
            .map_err(|s| self.status_error(s))?
            .into_inner())
    }

    /// A failed call as a person reads it: the server's message and, for a
    /// connection that TLS (or its absence) broke, what to change.
    pub fn status_error(&self, s: tonic::Status) -> anyhow::Error {
        self.connection_error(&s)
            .or_else(|| self.silence_error(&s))
            .unwrap_or_else(|| status_error(s))
    }

    /// A stream from `address` that failed after it began. The server's own
    /// error reads as [`Self::status_error`] says it; a connection that broke
    /// under it (the server stopped or restarted, the network went away) has
    /// no status from the server, only the transport's words, and is named
    /// as such (never as TLS trouble: the stream had begun).
    pub fn stream_error(&self, s: tonic::Status, address: &str) -> anyhow::Error {
        let Some(cause) = std::error::Error::source(&s).map(explain::chain) else {
            return self.status_error(s);
        };
        self.silence_error(&s).unwrap_or_else(|| {
            anyhow::anyhow!(
                "the connection to {address} broke during the stream (did the server stop or restart?): {cause}"
            )
        })
    }

    /// A call that ended because the server said nothing: it accepted the
    /// connection, then left the call's start or the HTTP/2 pings unanswered.
    /// `None` for any other failure.
    pub fn silence_error(&self, s: &tonic::Status) -> Option<anyhow::Error> {
        let chain = explain::chain(s);
        let (waited, flag) = if chain.contains("keep-alive timed out") {
            (PING_INTERVAL + PING_TIMEOUT, false)
        } else if s.code() == tonic::Code::Cancelled && chain.contains("Timeout expired") {
            (self.call_timeout, self.call_timeout_given)
        } else {
            return None;
        };
        let who = match &self.candidates[..] {
            [(address, _)] => address.as_str(),
            _ => "the server",
        };
        // A deadline of the user's own may be too short for a healthy server.
        let given = if flag {
            format!(
                " (--request-timeout; the default is {CALL_TIMEOUT:?}, and a busy server may need more)"
            )
        } else {
            String::new()
        };
        Some(anyhow::anyhow!(
            "no answer from {who} within {waited:?}{given}: it accepted the connection but answered nothing (is it an observe relay or flow-probe, and is it running?)"
        ))
    }

    /// A failed call as [`Target::status_error`] says it, when TLS (or its
    /// absence) broke the connection; `None` for any other failure. (How
    /// HTTP/2 words such a failure depends on timing; the hint does not.)
    pub fn connection_error(&self, s: &tonic::Status) -> Option<anyhow::Error> {
        let hint = self.hint(s)?;
        Some(anyhow::anyhow!(
            "the connection to the server failed: {hint}"
        ))
    }

    /// `e`'s whole chain, with what to change when TLS is behind it.
    fn describe(&self, e: &(dyn std::error::Error + 'static)) -> String {
        let text = explain::chain(e);
        if text.contains("TLS handshake timeout") {
            let within = self
                .handshake_timeout
                .unwrap_or(observer_runtime::tls::server::HANDSHAKE_TIMEOUT);
            return format!(
                "the TLS handshake did not finish within {within:?} (--timeout): is it a TLS \
                 server, and is it answering?"
            );
        }
        match self.hint(e) {
            Some(hint) => format!("{text}: {hint}"),
            None => text,
        }
    }

    fn hint(&self, e: &(dyn std::error::Error + 'static)) -> Option<String> {
        let hint = explain::hint(e, self.is_tls(), &FLAGS)?;
        Some(match (&self.lab, self.is_tls()) {
            (None, false) => format!("{hint}; for a lab's servers, --lab STATE_DIR"),
            (Some(dir), _) => format!("{hint} (certificates of the lab in {})", dir.display()),
            (None, true) => hint,
        })
    }
}

/// An observer.Observer client over `channel`, taking answers of up to
/// 64 MiB (a relay's GetNodes or a flow with many labels).
pub fn observer_client(channel: Channel) -> ObserverClient<Channel> {
    ObserverClient::new(channel).max_decoding_message_size(64 << 20)
}

/// A gRPC error as a person reads it, its code kept for those who act on
/// it ([`ServerError`]).
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(ServerError {
        code: s.code(),
        message: s.message().to_string(),
    })
}

/// A call the server answered with an error: `server: MESSAGE (Code)`.
#[derive(Debug)]
pub struct ServerError {
    pub code: tonic::Code,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server: {} ({:?})", self.message, self.code)
    }
}

impl std::error::Error for ServerError {}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use test_support::scratch::ScratchDir;

    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "t", no_binary_name = true)]
    struct Line {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    fn args(words: &[&str]) -> ConnectArgs {
        Line::try_parse_from(words).unwrap().connect
    }

    fn uris(t: &Target) -> Vec<&str> {
        t.candidates.iter().map(|(_, u)| u.as_str()).collect()
    }

    const DEFAULTS: [&str; 2] = ["localhost:4245", "localhost:4244"];

    #[test]
    fn a_stream_broken_under_the_client_is_told_from_the_servers_own_error() {
        let t = args(&["--server", "127.0.0.1:4245"])
            .target(&DEFAULTS)
            .unwrap();
        // What tonic makes of a body the connection stopped delivering.
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "error reading a body from connection",
        )));
        assert_eq!(
            t.stream_error(broken, "127.0.0.1:4245").to_string(),
            "the connection to 127.0.0.1:4245 broke during the stream (did the server stop or restart?): error reading a body from connection"
        );
        let said = tonic::Status::unavailable("the relay is shutting down; the answer ends here");
        assert_eq!(
            t.stream_error(said, "127.0.0.1:4245").to_string(),
            "server: the relay is shutting down; the answer ends here (Unavailable)"
        );
    }

    #[test]
    fn the_hubble_flags_make_a_tls_target() {
        let a = args(&[
            "--server",
            "relay.example:4245",
            "--tls",
            "--tls-ca-cert-files",
            "a.crt,b.crt",
            "--tls-ca-cert-files",
            "c.crt",
            "--tls-client-cert-file",
            "client.crt",
            "--tls-client-key-file",
            "client.key",
            "--tls-server-name",
            "relay.cluster",
        ]);
        let t = a.target(&DEFAULTS).unwrap();
        assert_eq!(uris(&t), ["https://relay.example:4245"]);
        assert_eq!(
            t.tls,
            Some(ClientTls {
                ca_files: vec!["a.crt".into(), "b.crt".into(), "c.crt".into()],
                identity: Some(("client.crt".into(), "client.key".into())),
                server_name: Some("relay.cluster".into()),
                allow_insecure: false,
            })
        );
    }

    #[test]
    fn plaintext_and_tls_addresses_must_agree_with_the_flags() {
        let err = |words: &[&str]| format!("{:#}", args(words).target(&DEFAULTS).unwrap_err());
        // As the Hubble CLI: a TLS scheme turns TLS on, and without CA
        // files the system's CAs check the server.
        let system = Some(ClientTls {
            ca_files: Vec::new(),
            identity: None,
            server_name: None,
            allow_insecure: false,
        });
        for scheme in ["https", "tls", "TLS"] {
            let t = args(&["--server", &format!("{scheme}://relay:4245")])
                .target(&DEFAULTS)
                .unwrap();
            assert_eq!(uris(&t), ["https://relay:4245"], "{scheme}");
            assert_eq!(t.tls, system, "{scheme}");
        }
        let t = args(&["--server", "relay:4245", "--tls"])
            .target(&DEFAULTS)
            .unwrap();
        assert_eq!(uris(&t), ["https://relay:4245"]);
        assert_eq!(t.tls, system);
        assert_eq!(
            err(&[
                "--server",
                "http://relay:4245",
                "--tls",
                "--tls-allow-insecure"
            ]),
            "invalid server address: http://relay:4245 asks for plaintext, but TLS is configured (--tls): drop http:// or the TLS flags"
        );
        assert_eq!(
            err(&["--tls-client-cert-file", "c.crt"]),
            "--tls-client-cert-file needs --tls"
        );
        let t = args(&[
            "--server",
            "tls://relay:4245",
            "--tls",
            "--tls-allow-insecure",
        ])
        .target(&DEFAULTS)
        .unwrap();
        assert_eq!(uris(&t), ["https://relay:4245"]);
    }

    #[test]
    fn without_a_server_the_defaults_are_tried_in_order() {
        let t = args(&["--server", "127.0.0.1:4244"])
            .target(&DEFAULTS)
            .unwrap();
        assert_eq!(uris(&t), ["http://127.0.0.1:4244"]);
        let t = args(&["--tls", "--tls-allow-insecure"])
            .target(&DEFAULTS)
            .unwrap();
        assert_eq!(
            uris(&t),
            ["https://localhost:4245", "https://localhost:4244"]
        );
    }

    #[test]
    fn pinning_keeps_only_the_address_used() {
        let t = args(&["--tls", "--tls-allow-insecure"])
            .target(&DEFAULTS)
            .unwrap();
        let p = t.pinned("localhost:4244");
        assert_eq!(uris(&p), ["https://localhost:4244"]);
        assert_eq!((p.addresses(), &p.tls), (vec!["localhost:4244"], &t.tls));
        // Not a candidate: nothing to pin to, the target stays whole.
        assert_eq!(t.pinned("elsewhere:1"), t);
    }

    #[test]
    fn a_lab_gives_its_relay_and_certificates() {
        let scratch = ScratchDir::new("cli-connect-lab");
        let dir = scratch.path();
        let lab = |words: &[&str]| {
            let mut w = vec!["--lab", dir.to_str().unwrap()];
            w.extend_from_slice(words);
            args(&w).target(&DEFAULTS)
        };
        assert_eq!(
            format!("{:#}", lab(&[]).unwrap_err()),
            format!(
                "--lab {}: no CA certificate at {}/certs/ca.crt (is a lab up there, started by this version?)",
                dir.display(),
                dir.display()
            )
        );
        let certs = observe_lab::certs::generate(
            &CertFiles::of_lab(dir).dir,
            &observe_lab::certs::CertOptions::default(),
        )
        .unwrap();
        let t = lab(&[]).unwrap();
        assert_eq!(
            uris(&t),
            ["https://localhost:4245", "https://localhost:4244"]
        );
        assert_eq!(
            t.tls.as_ref().map(|t| (&t.ca_files, &t.identity)),
            Some((
                &vec![certs.ca_cert.clone()],
                &Some((certs.client_cert.clone(), certs.client_key.clone()))
            ))
        );
        std::fs::write(dir.join("relay.addr"), "127.0.0.1:40001\n").unwrap();
        assert_eq!(uris(&lab(&[]).unwrap()), ["https://127.0.0.1:40001"]);
        assert_eq!(
            uris(&lab(&["--server", "127.0.0.1:4244"]).unwrap()),
            ["https://127.0.0.1:4244"]
        );
        assert!(
            Line::try_parse_from(["--lab", "x", "--tls"]).is_err(),
            "--lab brings its own TLS settings"
        );
        // A lab is found in a state directory only when it is up.
        assert_eq!(default_lab(dir), None);
        std::fs::write(dir.join(observe_lab::STATE_FILE), "{}").unwrap();
        assert_eq!(default_lab(dir), Some(dir.to_path_buf()));
    }
}
