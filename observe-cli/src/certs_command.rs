//! `observe certs generate DIR [NAME...]`: a CA, a server and a client
//! certificate for mTLS, made by the lab's generator
//! ([`observe_lab::certs`]), and the flags that use them.

use std::path::Path;

use observe_lab::certs::{self, CertOptions};

pub fn generate(
    dir: &Path,
    names: Vec<String>,
    valid_days: u32,
    force: bool,
) -> anyhow::Result<()> {
    let opts = CertOptions {
        server_names: names,
        valid_days,
        replace: force,
    };
    let files = certs::generate(dir, &opts)?;
    let mut names: Vec<&str> = certs::LOOPBACK_NAMES.to_vec();
    names.extend(opts.server_names.iter().map(String::as_str));
    println!(
        "wrote into {} (owner-only, valid {valid_days} days; the CA's key is not kept):",
        files.dir.display()
    );
    for (what, path) in files.all() {
        println!("  {:<20} {}", what, path.display());
    }
    println!("the server certificate is valid for {}", names.join(", "));
    println!(
        "servers (flow-probe, relay): --tls-cert-file {} --tls-key-file {} --tls-client-ca-files {}",
        files.server_cert.display(),
        files.server_key.display(),
        files.ca_cert.display()
    );
    println!(
        "relay to the probes: --tls-hubble-server-ca-files {} --tls-hubble-client-cert-file {} --tls-hubble-client-key-file {}",
        files.ca_cert.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    println!(
        "observe: --tls --tls-ca-cert-files {} --tls-client-cert-file {} --tls-client-key-file {}",
        files.ca_cert.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    Ok(())
}
