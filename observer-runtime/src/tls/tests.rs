//! Real handshakes on 127.0.0.1 between a tonic server and clients with the
//! settings of this module, certificates from `observe_lab::certs`.

use std::net::SocketAddr;
use std::path::Path;

use observe_lab::certs::{self, CertFiles, CertOptions};
use observer_proto::observer::observer_client::ObserverClient;
use observer_proto::observer::observer_server::{Observer, ObserverServer};
use observer_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, ServerStatusRequest, ServerStatusResponse,
};
use test_support::scratch::ScratchDir;
use test_support::tls_probe;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

use super::*;

/// Answers ServerStatus with `num_flows: 7`.
struct Seven;

#[tonic::async_trait]
impl Observer for Seven {
    type GetFlowsStream = tonic::codegen::BoxStream<GetFlowsResponse>;
    type GetAgentEventsStream =
        tonic::codegen::BoxStream<observer_proto::observer::GetAgentEventsResponse>;

    async fn get_flows(
        &self,
        _: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn get_agent_events(
        &self,
        _: Request<observer_proto::observer::GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn server_status(
        &self,
        _: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(ServerStatusResponse {
            num_flows: 7,
            ..Default::default()
        }))
    }

    async fn get_nodes(
        &self,
        _: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn get_namespaces(
        &self,
        _: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
}

const FLAGS: TlsFlags = TlsFlags::HUBBLE_CLI;

/// Two certificate sets from different CAs.
struct Sets {
    _dir: ScratchDir,
    ours: CertFiles,
    theirs: CertFiles,
}

fn sets(tag: &str) -> Sets {
    let dir = ScratchDir::new(tag);
    let ours = certs::generate(&dir.path().join("ours"), &CertOptions::default()).unwrap();
    let theirs = certs::generate(&dir.path().join("theirs"), &CertOptions::default()).unwrap();
    Sets {
        _dir: dir,
        ours,
        theirs,
    }
}

/// Serves [`Seven`] on 127.0.0.1:0 with `tls` until the test ends.
async fn serve(tls: Option<&ServerTls>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server::builder(tls)
        .unwrap()
        .add_service(ObserverServer::new(Seven));
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn mtls(files: &CertFiles) -> ServerTls {
    ServerTls {
        cert_file: files.server_cert.clone(),
        key_file: files.server_key.clone(),
        client_ca_files: vec![files.ca_cert.clone()],
    }
}

fn client(ca: &Path, identity: Option<&CertFiles>) -> ClientTls {
    ClientTlsFlags {
        enabled: true,
        ca_files: vec![ca.to_path_buf()],
        cert_file: identity.map(|f| f.client_cert.clone()),
        key_file: identity.map(|f| f.client_key.clone()),
        ..ClientTlsFlags::default()
    }
    .resolve(&FLAGS)
    .unwrap()
    .unwrap()
}

/// ServerStatus's `num_flows` through `tls` (plaintext without), or the error
/// of connecting or of the call.
async fn ask(addr: SocketAddr, tls: Option<&ClientTls>) -> Result<u64, Box<dyn std::error::Error>> {
    let uri = dial_uri(&addr.to_string(), tls.is_some(), &FLAGS)?;
    let mut endpoint = Endpoint::from_shared(uri)?;
    if let Some(t) = tls {
        endpoint = t.apply(endpoint)?;
    }
    let channel = endpoint.connect().await?;
    let answer = ObserverClient::new(channel)
        .server_status(ServerStatusRequest {})
        .await?;
    Ok(answer.into_inner().num_flows)
}

#[tokio::test]
async fn the_right_client_certificate_is_served() {
    let s = sets("tls-right");
    let addr = serve(Some(&mtls(&s.ours))).await;
    let tls = client(&s.ours.ca_cert, Some(&s.ours));
    assert_eq!(ask(addr, Some(&tls)).await.unwrap(), 7);
}

/// The first answer of the server at `addr` to a bare TLS client
/// ([`tls_probe`]): HTTP/2 bytes, or the exact refusal.
async fn first_answer(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&CertFiles>,
) -> Result<Vec<u8>, rustls::Error> {
    let identity = identity.map(|f| (f.client_cert.clone(), f.client_key.clone()));
    tls_probe::first_answer(addr, ca.to_path_buf(), identity).await
}

/// What a gRPC client is told when the server refused its certificate: the
/// alert when HTTP/2 passed it on, else that the server closed the connection.
fn told_to_present_a_certificate(hint: &str, alert: &str) {
    assert!(
        hint == alert
            || hint
                == "the server closed the connection after the TLS handshake: if it requires a client certificate, \
                    give one signed by a CA it trusts (--tls-client-cert-file and --tls-client-key-file); \
                    if its log says it is at its connection cap, wait or raise its --max-connections",
        "{hint}"
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let s = sets("tls-nocert");
    let addr = serve(Some(&mtls(&s.ours))).await;
    assert_eq!(
        first_answer(addr, &s.ours.ca_cert, None).await,
        Err(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        ))
    );
    // With one, the server's first answer is HTTP/2's SETTINGS frame (type 4).
    let ok = first_answer(addr, &s.ours.ca_cert, Some(&s.ours))
        .await
        .unwrap();
    assert_eq!(ok.get(3), Some(&4), "{ok:?}");

    let err = ask(addr, Some(&client(&s.ours.ca_cert, None)))
        .await
        .unwrap_err();
    told_to_present_a_certificate(
        &explain::hint(&*err, true, &FLAGS).unwrap(),
        "the server requires a client certificate: give --tls-client-cert-file and --tls-client-key-file",
    );
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_is_refused() {
    let s = sets("tls-otherca");
    let addr = serve(Some(&mtls(&s.ours))).await;
    assert_eq!(
        first_answer(addr, &s.ours.ca_cert, Some(&s.theirs)).await,
        Err(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
        ))
    );
    let err = ask(addr, Some(&client(&s.ours.ca_cert, Some(&s.theirs))))
        .await
        .unwrap_err();
    told_to_present_a_certificate(
        &explain::hint(&*err, true, &FLAGS).unwrap(),
        "the server refused the client certificate (UnknownCA): it accepts only certificates of the CAs it was given (--tls-client-cert-file)",
    );
}

#[tokio::test]
async fn plaintext_is_answered_with_a_fatal_tls_alert_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = sets("tls-plain");
    let addr = serve(Some(&mtls(&s.ours))).await;
    // What a plaintext gRPC client sends first: the HTTP/2 preface and SETTINGS.
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(tls_probe::H2_PREFACE).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection")
    .unwrap();
    // One record: alert (21), TLS 1.2 framing, 2 bytes: fatal (2), decode_error (50).
    assert_eq!(answer, [21, 3, 3, 0, 2, 2, 50]);

    // A gRPC client without TLS sees the connection closed, and is told why.
    let err = ask(addr, None).await.unwrap_err();
    assert!(explain::broken_connection(&*err), "{err:?}");
    assert_eq!(
        explain::hint(&*err, false, &FLAGS).unwrap(),
        "the server closed the connection or did not answer in HTTP/2: if it serves TLS, give --tls with --tls-ca-cert-files (and --tls-client-cert-file and --tls-client-key-file for mTLS); if its log says it is at its connection cap, wait or raise its --max-connections"
    );
    // On a connection that answered before, a close is no sign of either.
    assert_eq!(explain::hint_answered(&*err, false, &FLAGS), None);
}

#[tokio::test]
async fn a_server_of_another_ca_is_not_trusted() {
    let s = sets("tls-untrusted");
    let addr = serve(Some(&mtls(&s.ours))).await;
    let err = ask(addr, Some(&client(&s.theirs.ca_cert, Some(&s.ours))))
        .await
        .unwrap_err();
    assert!(
        err.downcast_ref::<tonic::transport::Error>().is_some(),
        "{err:?}"
    );
    assert_eq!(
        explain::tls_failure(&*err),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    );
    assert_eq!(
        explain::hint(&*err, true, &FLAGS).unwrap(),
        "the server's certificate is not signed by a CA of --tls-ca-cert-files (without it, by \
         one the system trusts)"
    );
    // A reconnect's TLS failure is explained whatever the connection did before.
    assert_eq!(
        explain::hint_answered(&*err, true, &FLAGS),
        explain::hint(&*err, true, &FLAGS)
    );
}

#[tokio::test]
async fn a_name_the_server_certificate_lacks_is_refused() {
    let s = sets("tls-name");
    let addr = serve(Some(&mtls(&s.ours))).await;
    let mut tls = client(&s.ours.ca_cert, Some(&s.ours));
    tls.server_name = Some("node9.example".into());
    let err = ask(addr, Some(&tls)).await.unwrap_err();
    assert!(
        matches!(
            explain::tls_failure(&*err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err:?}"
    );
    tls.server_name = Some("localhost".into());
    assert_eq!(ask(addr, Some(&tls)).await.unwrap(), 7);
}

#[tokio::test]
async fn allow_insecure_skips_the_server_check_but_still_presents_the_certificate() {
    let s = sets("tls-insecure");
    let addr = serve(Some(&mtls(&s.ours))).await;
    let flags = ClientTlsFlags {
        enabled: true,
        cert_file: Some(s.ours.client_cert.clone()),
        key_file: Some(s.ours.client_key.clone()),
        allow_insecure: true,
        ..ClientTlsFlags::default()
    };
    let tls = flags.clone().resolve(&FLAGS).unwrap().unwrap();
    assert_eq!(ask(addr, Some(&tls)).await.unwrap(), 7);
    // Without the certificate the server still refuses.
    let bare = ClientTlsFlags {
        cert_file: None,
        key_file: None,
        ..flags
    };
    let err = ask(addr, Some(&bare.resolve(&FLAGS).unwrap().unwrap()))
        .await
        .unwrap_err();
    told_to_present_a_certificate(
        &explain::hint(&*err, true, &FLAGS).unwrap(),
        "the server requires a client certificate: give --tls-client-cert-file and --tls-client-key-file",
    );
}

#[tokio::test]
async fn tls_to_a_plaintext_server_says_the_server_does_not_speak_tls() {
    let s = sets("tls-toplain");
    let addr = serve(None).await;
    let err = ask(addr, Some(&client(&s.ours.ca_cert, Some(&s.ours))))
        .await
        .unwrap_err();
    assert_eq!(
        explain::tls_failure(&*err),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    );
    assert_eq!(
        explain::hint(&*err, true, &FLAGS).unwrap(),
        "the server does not speak TLS: drop --tls (and https:// or tls://)"
    );
}

#[tokio::test]
async fn a_server_without_client_cas_serves_clients_without_certificates() {
    let s = sets("tls-oneway");
    let tls = ServerTls {
        client_ca_files: Vec::new(),
        ..mtls(&s.ours)
    };
    assert_eq!(tls.describe(), "TLS (no client certificates)");
    let addr = serve(Some(&tls)).await;
    assert_eq!(
        ask(addr, Some(&client(&s.ours.ca_cert, None)))
            .await
            .unwrap(),
        7
    );
}

#[test]
fn server_flags_come_in_pairs() {
    let p = |s: &str| Some(std::path::PathBuf::from(s));
    let err = |c, k, cas: &[&str]| {
        ServerTls::from_flags(c, k, cas.iter().map(Into::into).collect())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(ServerTls::from_flags(None, None, Vec::new()).unwrap(), None);
    assert_eq!(
        err(p("c"), None, &[]),
        "--tls-cert-file needs --tls-key-file"
    );
    assert_eq!(
        err(None, p("k"), &[]),
        "--tls-key-file needs --tls-cert-file"
    );
    assert_eq!(
        err(None, None, &["ca"]),
        "--tls-client-ca-files needs --tls-cert-file"
    );
    let t = ServerTls::from_flags(p("c"), p("k"), vec!["ca".into()])
        .unwrap()
        .unwrap();
    assert!(t.is_mutual());
    assert_eq!(t.describe(), "mTLS (client certificates required)");
}

#[test]
fn client_flags_are_checked_together() {
    let err = |f: ClientTlsFlags| f.resolve(&FLAGS).unwrap_err().to_string();
    let on = ClientTlsFlags {
        enabled: true,
        ca_files: vec!["ca.crt".into()],
        ..ClientTlsFlags::default()
    };
    assert_eq!(ClientTlsFlags::default().resolve(&FLAGS).unwrap(), None);
    assert_eq!(
        err(ClientTlsFlags {
            enabled: false,
            ..on.clone()
        }),
        "--tls-ca-cert-files needs --tls"
    );
    assert_eq!(
        err(ClientTlsFlags {
            allow_insecure: true,
            ..ClientTlsFlags::default()
        }),
        "--tls-allow-insecure needs --tls"
    );
    // The relay's peers need CA files; observe, as the Hubble CLI, takes
    // the system's CAs without them.
    let without_system = TlsFlags {
        system_roots: false,
        ..FLAGS
    };
    let no_ca = ClientTlsFlags {
        ca_files: Vec::new(),
        ..on.clone()
    };
    assert_eq!(
        no_ca
            .clone()
            .resolve(&without_system)
            .unwrap_err()
            .to_string(),
        "--tls needs --tls-ca-cert-files"
    );
    assert_eq!(
        no_ca.resolve(&FLAGS).unwrap().map(|t| t.ca_files),
        Some(Vec::new())
    );
    assert_eq!(
        err(ClientTlsFlags {
            cert_file: Some("c".into()),
            ..on.clone()
        }),
        "--tls-client-cert-file needs --tls-client-key-file"
    );
    assert_eq!(
        err(ClientTlsFlags {
            key_file: Some("k".into()),
            ..on.clone()
        }),
        "--tls-client-key-file needs --tls-client-cert-file"
    );
    assert_eq!(
        err(ClientTlsFlags {
            allow_insecure: true,
            ..on.clone()
        }),
        "--tls-ca-cert-files and --tls-allow-insecure cannot be given together: the second skips the check the first is for"
    );
    assert_eq!(
        err(ClientTlsFlags {
            server_name: Some("a b".into()),
            ..on.clone()
        }),
        "--tls-server-name \"a b\": not a DNS name or an IP address"
    );
    let t = ClientTlsFlags {
        cert_file: Some("c".into()),
        key_file: Some("k".into()),
        server_name: Some("relay.example".into()),
        ..on
    }
    .resolve(&FLAGS)
    .unwrap()
    .unwrap();
    assert!(t.is_mutual());
    assert_eq!(t.identity, Some(("c".into(), "k".into())));
}

#[test]
fn bad_files_are_named_before_anything_listens() {
    let s = sets("tls-files");
    let with = |cert: &Path, key: &Path| ServerTls {
        cert_file: cert.to_path_buf(),
        key_file: key.to_path_buf(),
        client_ca_files: vec![s.ours.ca_cert.clone()],
    };
    let err = |t: ServerTls| server::builder(Some(&t)).unwrap_err().to_string();
    let missing = s.ours.dir.join("nope.crt");
    assert_eq!(
        err(with(&missing, &s.ours.server_key)),
        format!(
            "reading server certificate {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    assert_eq!(
        err(with(&s.ours.server_key, &s.ours.server_key)),
        format!(
            "server certificate {}: no certificate (BEGIN CERTIFICATE) in it",
            s.ours.server_key.display()
        )
    );
    assert_eq!(
        err(with(&s.ours.server_cert, &s.ours.server_cert)),
        format!(
            "server key {}: no private key (BEGIN PRIVATE KEY) in it",
            s.ours.server_cert.display()
        )
    );
    assert_eq!(
        err(with(Path::new("/dev/null"), &s.ours.server_key)),
        "server certificate /dev/null: not a regular file"
    );
    // A key that is not the certificate's.
    let mismatch = err(with(&s.ours.server_cert, &s.theirs.server_key));
    assert_eq!(
        mismatch,
        format!(
            "server key {}: not the key of the certificate {}",
            s.theirs.server_key.display(),
            s.ours.server_cert.display()
        )
    );
    assert!(server::builder(Some(&mtls(&s.ours))).is_ok());
}

/// A reset while the TCP connection is made (a relay stopping for a
/// restart): no TLS had begun, so no certificate is to blame.
#[test]
fn a_reset_during_the_tcp_connect_blames_no_certificate() {
    #[derive(Debug)]
    struct ConnectError(std::io::Error);
    impl std::fmt::Display for ConnectError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp connect error")
        }
    }
    impl std::error::Error for ConnectError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let reset = ConnectError(std::io::ErrorKind::ConnectionReset.into());
    let want = "the server reset the connection before it was made: is it stopping or restarting? Try again";
    for tls in [true, false] {
        assert_eq!(explain::hint(&reset, tls, &FLAGS).as_deref(), Some(want));
        // Also when the channel had answered before: its reconnect failed.
        assert_eq!(
            explain::hint_answered(&reset, tls, &FLAGS).as_deref(),
            Some(want)
        );
    }
}

/// One frame of HTTP/2 read off a raw connection: (type, payload), or
/// `None` at the end of the connection.
async fn frame(tcp: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[3], payload))
}

/// A server tells each connection how many streams it may open, pings a
/// connection that has gone quiet, and closes it when no answer comes: a
/// client that sends HTTP/2's preface and then nothing holds no place.
#[tokio::test]
async fn a_connection_is_told_its_streams_and_closed_when_it_answers_no_ping() {
    use tokio::io::AsyncWriteExt;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    let limits = server::ConnectionLimits {
        streams: 3,
        ping_after: std::time::Duration::from_millis(300),
        ping_timeout: std::time::Duration::from_millis(300),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server::builder_with(None, limits)
        .unwrap()
        .add_service(ObserverServer::new(Seven));
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The preface, then an empty SETTINGS frame.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Some((kind, payload)) = frame(&mut tcp).await {
            if kind == SETTINGS && !payload.is_empty() {
                let streams = payload.chunks(6).find_map(|s| {
                    (u16::from_be_bytes([s[0], s[1]]) == MAX_CONCURRENT_STREAMS)
                        .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
                });
                seen.push(format!("streams {streams:?}"));
                // Its settings acknowledged, as any client does.
                tcp.write_all(b"\0\0\0\x04\x01\0\0\0\0").await.unwrap();
            } else if kind == PING {
                seen.push("ping".to_string());
            }
        }
        seen
    })
    .await
    .expect("the server closed the connection");
    assert_eq!(seen.first().map(String::as_str), Some("streams Some(3)"));
    assert!(seen.iter().any(|s| s == "ping"), "{seen:?}");
}

#[test]
fn plaintext_off_loopback_is_warned_about() {
    let at = |a: &str| a.parse::<SocketAddr>().unwrap();
    assert_eq!(server::exposed_plaintext(at("127.0.0.1:4245"), false), None);
    assert_eq!(server::exposed_plaintext(at("[::1]:4245"), false), None);
    assert_eq!(server::exposed_plaintext(at("0.0.0.0:4245"), true), None);
    assert_eq!(
        server::exposed_plaintext(at("0.0.0.0:4245"), false).as_deref(),
        Some(
            "0.0.0.0:4245 serves plaintext and is not on loopback: anyone who reaches it reads \
             every flow; give --tls-cert-file and --tls-key-file (and --tls-client-ca-files for \
             mTLS), or listen on 127.0.0.1"
        )
    );
}
