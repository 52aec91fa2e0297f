//! The endpoints file as a source: read at start, then again on every change
//! ([`crate::file_watch`]). A file that does not parse is reported (naming
//! the file, the field and the problem) and the endpoints in force stay.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster_spec::endpoints::EndpointsFile;

use super::{Discovered, EndpointSource, Sink, SourceState, Update};
use crate::file_watch::FileWatch;

/// Where `ip netns` keeps the namespaces it names.
const NETNS_DIR: &str = "/var/run/netns";

/// The endpoints file (`--endpoints`).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

/// The file's endpoints as the catalog takes them: keyed by their ids.
pub fn discovered(file: &EndpointsFile) -> Vec<Discovered> {
    file.endpoints
        .iter()
        .map(|ep| Discovered {
            netns: ep.netns.clone().unwrap_or_default(),
            netns_path: ep.netns.as_ref().map(|n| Path::new(NETNS_DIR).join(n)),
            ..Discovered::new(ep.id.to_string(), ep.clone())
        })
        .collect()
}

/// The file's bytes, to tell a change (`None` when missing or refused): read
/// as the file itself is, so a FIFO, a device or a huge file put in its
/// place neither blocks the agent nor fills its memory.
fn snapshot(file: &Path) -> Option<Vec<u8>> {
    cluster_spec::input::read_bytes(file).ok()
}

impl FileSource {
    pub fn new(path: PathBuf) -> Self {
        FileSource { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file now.
    pub fn load(&self) -> anyhow::Result<EndpointsFile> {
        Ok(EndpointsFile::load(&self.path)?)
    }

    /// What `observe status` says of the file after a read: a refused file
    /// counts the endpoints still in force, `kept`, those read before.
    fn state(&self, result: &anyhow::Result<EndpointsFile>, kept: usize) -> SourceState {
        SourceState {
            address: self.path.display().to_string(),
            connected: result.is_ok(),
            detail: match result {
                Ok(_) => "read".to_string(),
                Err(e) => format!("{e:#}; the {kept} endpoints read before stay"),
            },
            endpoints: result.as_ref().map_or(kept, |f| f.endpoints.len()),
        }
    }
}

impl EndpointSource for FileSource {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn run(self, sink: Sink, stop: impl Future<Output = ()> + Send + 'static) {
        let file = self.path.clone();
        let relevant = {
            let file = file.clone();
            move |p: &Path| p.file_name() == file.file_name()
        };
        let mut watch = FileWatch::new(vec![FileWatch::folder_of(&file)], Arc::new(relevant));
        let read = || snapshot(&file);
        let mut seen = read();
        tokio::pin!(stop);
        // Sent once now as well, so a change between the start-up read
        // and the watch is not missed (the same content changes nothing).
        loop {
            let result = self.load();
            let kept = sink.last_state().map_or(0, |s| s.endpoints);
            sink.report(self.state(&result, kept));
            match result {
                Ok(f) => {
                    if !sink.send(Update::Replace(discovered(&f))).await {
                        return;
                    }
                }
                Err(e) => log::error!("{e:#}; the endpoints read before stay in force"),
            }
            tokio::select! {
                () = &mut stop => return,
                () = watch.changed(&mut seen, read) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO put in the file's place: the snapshot of every wake opened it
    /// and waited for a writer, holding the agent's one task.
    #[test]
    fn a_fifo_in_the_files_place_does_not_block_the_snapshot() {
        let dir = test_support::scratch::ScratchDir::new("endpoints-fifo");
        let fifo = dir.fifo("endpoints.yaml");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(snapshot(&fifo)));
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(got, Ok(None), "the snapshot blocked or read a FIFO");
    }

    #[test]
    fn a_refused_file_counts_the_endpoints_still_in_force() {
        let source = FileSource::new(PathBuf::from("/etc/observe/endpoints.yaml"));
        let refused = source.state(&Err(anyhow::anyhow!("endpoints[1].ipv4: bad address")), 2);
        assert_eq!(
            (
                refused.connected,
                refused.endpoints,
                refused.detail.as_str()
            ),
            (
                false,
                2,
                "endpoints[1].ipv4: bad address; the 2 endpoints read before stay"
            )
        );
        let read = source.state(&Ok(EndpointsFile::default()), 2);
        assert_eq!((read.connected, read.endpoints), (true, 0));
    }
}
