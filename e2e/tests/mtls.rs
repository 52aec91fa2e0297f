//! mTLS end to end (issue 15): the lab's flow-probe and relay serve mTLS with
//! the lab's certificates and the relay follows the probe over it. A client
//! without a certificate, with one of another CA, or speaking plaintext is
//! refused, each with its exact error, by the probe and by the relay; with the
//! lab's client certificate, flows and SQL work through `observe`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::ports;
use observe_lab::certs::CertFiles;
use observe_lab::node_probes;
use observe_lab::{Scenario, run_traffic_once};
use observer_proto::flow::Flow;
use observer_proto::observer::ServerStatusRequest;
use observer_proto::observer::observer_client::ObserverClient;
use observer_runtime::tls::{ClientTls, TlsFlags, dial_uri, explain};
use rustls::{AlertDescription, CertificateError};
use test_support::scratch::ScratchDir;
use test_support::tls_probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::block_in_place;
use tonic::transport::Endpoint;

fn observe(args: &[&str]) -> Output {
    Command::new(e2e::observe_binary())
        .args(args)
        .output()
        .expect("run observe")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "observe failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

/// The certificates of `observe certs generate DIR`: another CA than the lab's.
fn generate_other(dir: &Path) -> CertFiles {
    let out = observe(&["certs", "generate", dir.to_str().unwrap(), "node7.example"]);
    let text = stdout(&out);
    let files = CertFiles::in_dir(dir);
    for (what, path) in files.all() {
        assert!(
            text.contains(&format!("  {what:<20} {}\n", path.display())),
            "{what} not listed: {text}"
        );
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    assert!(
        text.contains(
            "the server certificate is valid for 127.0.0.1, ::1, localhost, node7.example\n"
        ),
        "{text}"
    );
    files
}

/// ServerStatus's `max_flows` from `addr` with `tls`, or what broke it.
async fn ask(addr: SocketAddr, tls: &ClientTls) -> Result<u64, Box<dyn std::error::Error>> {
    let uri = dial_uri(&addr.to_string(), true, &TlsFlags::HUBBLE_CLI)?;
    let channel = tls.apply(Endpoint::from_shared(uri)?)?.connect().await?;
    let status = ObserverClient::new(channel)
        .server_status(ServerStatusRequest {})
        .await?
        .into_inner();
    Ok(status.max_flows)
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

/// What a TLS server answers to the first bytes of plaintext gRPC (the
/// HTTP/2 preface and an empty SETTINGS frame) before it closes.
async fn answer_to_plaintext(addr: SocketAddr) -> Vec<u8> {
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
    answer
}

fn tls(ca: &Path, identity: Option<&CertFiles>) -> ClientTls {
    ClientTls {
        ca_files: vec![ca.to_path_buf()],
        identity: identity.map(|f| (f.client_cert.clone(), f.client_key.clone())),
        server_name: None,
        allow_insecure: false,
    }
}

/// UUIDs of the flows of the api → db connection (port 5432, both ways).
fn db_flows(flows: &[Flow]) -> BTreeSet<String> {
    flows
        .iter()
        .filter(|f| ports(f).is_some_and(|(s, d)| s == 5432 || d == 5432))
        .map(|f| f.uuid.clone())
        .collect()
}

/// The UUIDs in `json_lines` at `field` (lines without one, such as
/// node-status events, are not flows).
fn uuids(
    json_lines: &str,
    field: fn(&serde_json::Value) -> &serde_json::Value,
) -> BTreeSet<String> {
    json_lines
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            field(&v).as_str().map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_speaks_mtls_and_refuses_every_other_client() {
    let scenario = Scenario::builtin_capture();
    let mut env = e2e::start(&scenario, &[]);
    let relay = block_in_place(|| {
        node_probes::start_relay(&mut env.lab, std::slice::from_ref(&env.probe), 0)
    })
    .expect("relay starts");
    assert!(env.probe.tls && relay.tls);
    let lab = env.lab.certs();
    let state = env.state_dir.to_str().unwrap().to_string();
    let scratch = ScratchDir::new(&format!("mtls-other-{}", env.lab.prefix()));
    let other = generate_other(&scratch.path().join("certs"));

    // Both say what they serve, and the relay how it follows its peer.
    let probe_log = std::fs::read_to_string(&env.probe.log).unwrap();
    assert!(
        probe_log.contains(&format!(
            "serving observer.Observer on {} over mTLS (client certificates required)",
            env.probe.addr
        )),
        "{probe_log}"
    );
    let relay_log = std::fs::read_to_string(&relay.log).unwrap();
    assert!(
        relay_log.contains(&format!(
            "serving observer.Observer on {} over mTLS (client certificates required); following 1 peer(s) over mTLS",
            relay.addr
        )),
        "{relay_log}"
    );

    // The relay connects to the probe over mTLS.
    let deadline = Instant::now() + e2e::WAIT;
    loop {
        let status = env
            .client_of(relay.addr)
            .await
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status.num_connected_nodes == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never connected: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (what, addr) in [("probe", env.probe.addr), ("relay", relay.addr)] {
        // The lab's client certificate is served (one probe's ring either way),
        // and the server's first answer is HTTP/2's SETTINGS frame (type 4).
        assert_eq!(
            ask(addr, &tls(&lab.ca_cert, Some(&lab))).await.unwrap(),
            4095,
            "{what}"
        );
        let ok = first_answer(addr, &lab.ca_cert, Some(&lab)).await.unwrap();
        assert_eq!(ok.get(3), Some(&4), "{what}: {ok:?}");
        // No client certificate: the server's alert after the handshake.
        assert_eq!(
            first_answer(addr, &lab.ca_cert, None).await,
            Err(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            )),
            "{what}"
        );
        assert!(ask(addr, &tls(&lab.ca_cert, None)).await.is_err(), "{what}");
        // A client certificate of another CA.
        assert_eq!(
            first_answer(addr, &lab.ca_cert, Some(&other)).await,
            Err(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
            "{what}"
        );
        assert!(
            ask(addr, &tls(&lab.ca_cert, Some(&other))).await.is_err(),
            "{what}"
        );
        // The client does not trust a server of another CA either.
        let err = ask(addr, &tls(&other.ca_cert, Some(&lab)))
            .await
            .unwrap_err();
        assert_eq!(
            explain::tls_failure(&*err),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )),
            "{what}: {err:?}"
        );
        // Plaintext: one fatal alert record (21), decode_error (50), then close.
        assert_eq!(
            answer_to_plaintext(addr).await,
            [21, 3, 3, 0, 2, 2, 50],
            "{what}"
        );
    }

    // observe without TLS flags is refused and told what to give.
    let relay_addr = relay.addr.to_string();
    let plain = observe(&["flows", "--server", &relay_addr, "--last", "5"]);
    assert!(!plain.status.success());
    assert_eq!(
        String::from_utf8_lossy(&plain.stderr).trim(),
        "observe: the connection to the server failed: the server closed the connection or did not answer in HTTP/2: if it serves TLS, \
         give --tls with --tls-ca-cert-files (and --tls-client-cert-file and --tls-client-key-file for mTLS); \
         if its log says it is at its connection cap, wait or raise its --max-connections; \
         for a lab's servers, --lab STATE_DIR"
    );
    // https:// (or tls://) asks for TLS, as with the Hubble CLI; without CA
    // files the system's CAs check the server: the lab's CA is none of them.
    let https = Command::new(e2e::observe_binary())
        .args(["status", "--server", &format!("https://{relay_addr}")])
        .env("SSL_CERT_FILE", &other.ca_cert)
        .output()
        .expect("run observe");
    assert_eq!(
        String::from_utf8_lossy(&https.stderr).trim(),
        format!(
            "observe: cannot reach a server (https://{relay_addr}: transport error: invalid peer \
             certificate: UnknownIssuer: the server's certificate is not signed by a CA of \
             --tls-ca-cert-files (without it, by one the system trusts))"
        )
    );
    // The system's CAs are what SSL_CERT_FILE names: with the lab's CA
    // there, tls:// and the client certificate are all it takes.
    let system = Command::new(e2e::observe_binary())
        .args([
            "status",
            "--server",
            &format!("tls://{relay_addr}"),
            "--tls-client-cert-file",
            lab.client_cert.to_str().unwrap(),
            "--tls-client-key-file",
            lab.client_key.to_str().unwrap(),
        ])
        .env("SSL_CERT_FILE", &lab.ca_cert)
        .output()
        .expect("run observe");
    let status = stdout(&system);
    // Named without its scheme, as hubble status names it.
    assert!(
        status.contains(&format!("Healthcheck (via {relay_addr}): Ok\n")),
        "{status}"
    );
    // The lab's client certificate but no key: named before connecting.
    let half = observe(&[
        "status",
        "--server",
        &relay_addr,
        "--tls",
        "--tls-ca-cert-files",
        lab.ca_cert.to_str().unwrap(),
        "--tls-client-cert-file",
        lab.client_cert.to_str().unwrap(),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&half.stderr).trim(),
        "observe: --tls-client-cert-file needs --tls-client-key-file"
    );

    // The same flags from the Hubble CLI's environment variables.
    let from_env = Command::new(e2e::observe_binary())
        .arg("status")
        .env("HUBBLE_SERVER", &relay_addr)
        .env("HUBBLE_TLS", "true")
        .env("HUBBLE_TLS_CA_CERT_FILES", &lab.ca_cert)
        .env("HUBBLE_TLS_CLIENT_CERT_FILE", &lab.client_cert)
        .env("HUBBLE_TLS_CLIENT_KEY_FILE", &lab.client_key)
        .output()
        .expect("run observe");
    let status = stdout(&from_env);
    assert!(
        status.contains(&format!("Healthcheck (via {relay_addr}): Ok\n")),
        "{status}"
    );
    // With the lab's certificates: status through the relay (found in the
    // lab's state directory), flows, and SQL over Flight on the same port.
    let status = stdout(&observe(&["status", "--lab", &state]));
    assert!(
        status.contains(&format!("Healthcheck (via {relay_addr}): Ok\n"))
            && status.contains("Connected Nodes: 1/1\n"),
        "{status}"
    );
    let report = block_in_place(|| run_traffic_once(&env.lab, &scenario)).expect("traffic");
    assert!(report.all_as_expected(), "{report}");
    let sql = "SELECT uuid FROM flows WHERE source_port = 5432 OR destination_port = 5432";
    let deadline = Instant::now() + e2e::WAIT;
    loop {
        let at_probe = db_flows(&env.all_flows().await);
        let flows = stdout(&observe(&[
            "flows",
            "--lab",
            &state,
            "--server",
            &relay_addr,
            "--port",
            "5432",
            "-o",
            "json",
            "--last",
            "1000",
        ]));
        let via_flows = uuids(&flows, |v| &v["flow"]["uuid"]);
        let rows = stdout(&observe(&["query", "--lab", &state, "-o", "json", sql]));
        let via_sql = uuids(&rows, |v| &v["uuid"]);
        // Both clients see exactly the probe's flows of the connection,
        // which the relay took from the probe over mTLS.
        if !at_probe.is_empty() && via_flows == at_probe && via_sql == at_probe {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "probe {at_probe:?}\nflows {via_flows:?}\nSQL {via_sql:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
