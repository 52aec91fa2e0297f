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
    let mut text = format!(
        "wrote into {} (owner-only, valid {valid_days} days; the CA's key is not kept):\n",
        files.dir.display()
    );
    for (what, path) in files.all() {
        text += &format!("  {:<20} {}\n", what, path.display());
    }
    text += &format!("the server certificate is valid for {}\n", names.join(", "));
    text += &format!(
        "servers (flow-probe, relay): --tls-cert-file {} --tls-key-file {} --tls-client-ca-files {}\n",
        files.server_cert.display(),
        files.server_key.display(),
        files.ca_cert.display()
    );
    text += &format!(
        "relay to the probes: --tls-hubble-server-ca-files {} --tls-hubble-client-cert-file {} --tls-hubble-client-key-file {}\n",
        files.ca_cert.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    text += &format!(
        "observe: --tls --tls-ca-cert-files {} --tls-client-cert-file {} --tls-client-key-file {}\n",
        files.ca_cert.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    crate::pipe::print(&text)?;
    Ok(())
}
