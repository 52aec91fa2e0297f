//! A fresh folder for one test, removed when dropped (also during a panic).

use std::path::{Path, PathBuf};

/// An empty folder under the temporary directory, unique to this process
/// and `tag`; removed with everything in it when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("observe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A FIFO (named pipe) called `name` in the folder, made by `mkfifo`;
    /// what a reader that only takes regular files must refuse.
    pub fn fifo(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success(), "mkfifo {}", path.display());
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
