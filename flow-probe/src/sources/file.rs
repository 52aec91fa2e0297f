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

    fn state(&self, result: &anyhow::Result<EndpointsFile>) -> SourceState {
        SourceState {
            address: self.path.display().to_string(),
            connected: result.is_ok(),
            detail: match result {
                Ok(_) => "read".to_string(),
                Err(e) => format!("{e:#}; the endpoints read before stay"),
            },
            endpoints: result.as_ref().map_or(0, |f| f.endpoints.len()),
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
        let read = || std::fs::read(&file).ok();
        let mut seen = read();
        tokio::pin!(stop);
        // Sent once now as well, so a change between the start-up read
        // and the watch is not missed (the same content changes nothing).
        loop {
            let result = self.load();
            sink.report(self.state(&result));
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
