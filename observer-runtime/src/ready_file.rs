//! The files flow-probe and the relay write once a server listens
//! (`--ready-file`, `--metrics-ready-file`): the address it bound, so a
//! caller that asked for port 0 learns the port, and a reader waits for the
//! file instead of guessing when the server is up.

use std::net::SocketAddr;
use std::path::Path;

/// Writes `addr` and a newline to `path` through a temporary name and a
/// rename, so a reader never sees half a line. The error names the file.
pub fn write(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("writing ready file {}: {e}", path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_file_holds_the_address_no_temporary_is_left_and_errors_name_it() {
        let dir = std::env::temp_dir().join(format!("ready-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relay.addr");
        super::write(&path, "127.0.0.1:4245".parse().unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "127.0.0.1:4245\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["relay.addr"]);
        let err = super::write(&dir.join("none/relay.addr"), "[::1]:1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "writing ready file {}: ",
                dir.join("none/relay.addr").display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
