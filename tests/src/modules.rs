//! Guest components and the modules folders weir loads.

use std::path::{Path, PathBuf};

use crate::repo_root;

/// A component built by `scripts/build-guests.sh`, e.g. `json-enrich`.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEIR_TEST_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/modules"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "guest component `{}` is missing: run scripts/build-guests.sh first",
        path.display()
    );
    path
}

/// A temporary modules folder.
#[derive(Debug)]
pub struct ModulesDir {
    dir: tempfile::TempDir,
}

impl ModulesDir {
    /// An empty folder.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs guest `component` as module `name` with `manifest`.
    pub fn add(&self, name: &str, component: &str, manifest: &str) -> &Self {
        std::fs::copy(guest(component), self.path().join(format!("{name}.wasm"))).expect("copy");
        self.write(&format!("{name}.toml"), manifest.as_bytes())
    }

    /// Writes an arbitrary file into the folder.
    pub fn write(&self, file: &str, bytes: &[u8]) -> &Self {
        std::fs::write(self.path().join(file), bytes).expect("write");
        self
    }
}

impl Default for ModulesDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A test fixture component from `tests/guests`, built by
/// `scripts/build-guests.sh` into `target/test-guests`.
pub fn test_guest(name: &str) -> PathBuf {
    let path = repo_root().join(format!("target/test-guests/{name}.wasm"));
    assert!(
        path.is_file(),
        "test fixture `{}` is missing: run scripts/build-guests.sh first",
        path.display()
    );
    path
}

/// Replaces `dest` atomically with the bytes of `src`: write a hidden
/// temporary file in the same folder, then rename it over `dest`.
pub fn install_atomically(src: &Path, dest: &Path) {
    let tmp = dest.with_file_name(format!(
        ".{}.tmp",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::copy(src, &tmp).expect("copy to temp");
    std::fs::rename(&tmp, dest).expect("rename over");
}
