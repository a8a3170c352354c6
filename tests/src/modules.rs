//! Guest components, module manifests and the modules folders weir loads.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::repo_root;

/// A component built by `scripts/build-guests.sh`, e.g. `json-enrich`. The
/// batch builds of the Python and JavaScript twins (`<name>-batch`) are in
/// the folder beside it with `-batch` appended (`target/modules-batch`).
pub fn guest(name: &str) -> PathBuf {
    let mut dir = std::env::var_os("WEIR_TEST_MODULES")
        .unwrap_or_else(|| repo_root().join("target/modules").into_os_string());
    if name.ends_with("-batch") {
        dir.push("-batch");
    }
    let dir = PathBuf::from(dir);
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "guest component `{}` is missing: run scripts/build-guests.sh first",
        path.display()
    );
    path
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

/// The SHA-256 of the file at `path`, in hex: the digest weir reports for a
/// component.
pub fn digest(path: &Path) -> String {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("read `{}` to digest it: {e}", path.display()));
    hex::encode(Sha256::digest(bytes))
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

/// Writes to `dest` the component at `src` with a custom section named
/// `weir-test-variant` holding `tag` appended: a component that behaves
/// exactly like `src` but has other bytes, hence another digest (a new
/// version, as far as weir can tell).
pub fn variant(src: &Path, dest: &Path, tag: &str) {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut bytes = std::fs::read(src).unwrap_or_else(|e| panic!("read `{}`: {e}", src.display()));
    let name = b"weir-test-variant";
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section
    leb128(body.len(), &mut bytes);
    bytes.extend_from_slice(&body);
    std::fs::write(dest, bytes).unwrap_or_else(|e| panic!("write `{}`: {e}", dest.display()));
}

/// A temporary folder: a modules folder, or a place for a test's files.
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

    /// The path of `file` in the folder.
    pub fn file(&self, file: &str) -> PathBuf {
        self.path().join(file)
    }

    /// Installs guest example `component` (see [`guest`]) as module `name`
    /// with `manifest`.
    pub fn add(&self, name: &str, component: &str, manifest: impl Display) -> &Self {
        self.install(name, &guest(component), manifest)
    }

    /// Installs the component at `wasm` (e.g. a [`test_guest`]) as module
    /// `name` with `manifest`: `<name>.toml` first, then `<name>.wasm`.
    pub fn install(&self, name: &str, wasm: &Path, manifest: impl Display) -> &Self {
        self.manifest(name, manifest)
            .copy(&format!("{name}.wasm"), wasm)
    }

    /// Writes `manifest` as `<name>.toml`.
    pub fn manifest(&self, name: &str, manifest: impl Display) -> &Self {
        self.write(&format!("{name}.toml"), manifest.to_string().as_bytes())
    }

    /// Copies the file at `src` into the folder as `file`.
    pub fn copy(&self, file: &str, src: &Path) -> &Self {
        std::fs::copy(src, self.file(file))
            .unwrap_or_else(|e| panic!("copy `{}` to {file}: {e}", src.display()));
        self
    }

    /// Writes an arbitrary file into the folder.
    pub fn write(&self, file: &str, bytes: &[u8]) -> &Self {
        std::fs::write(self.file(file), bytes).expect("write");
        self
    }
}

impl Default for ModulesDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A module manifest (`<name>.toml`), built key by key; `Display` gives its
/// TOML text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest(toml::Table);

impl Manifest {
    /// `input-topics = [input]`, `output-topics = outputs`, `group-id =
    /// group`.
    pub fn new(input: &str, outputs: &[&str], group: &str) -> Self {
        Self::default()
            .set("input-topics", vec![input])
            .set("output-topics", outputs.to_vec())
            .set("group-id", group)
    }

    /// A module reading `input` in `group` and writing `output`, whose guest
    /// is told where to write (`[config] output = output`).
    pub fn pipe(input: &str, output: &str, group: &str) -> Self {
        Self::new(input, &[output], group).config("output", output)
    }

    /// Sets top-level `key` (e.g. `start-at`, `offset-reset`).
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `key` in table `[table]`.
    pub fn in_table(mut self, table: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        let entry = self
            .0
            .entry(table.to_owned())
            .or_insert_with(|| toml::Table::new().into());
        let toml::Value::Table(t) = entry else {
            panic!("manifest key `{table}` is not a table");
        };
        t.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `key` in `[config]`, the guest's configuration.
    pub fn config(self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.in_table("config", key, value)
    }

    /// `[on-failure] dead-letter-topic = dlq`.
    pub fn dead_letters(self, dlq: &str) -> Self {
        self.in_table("on-failure", "dead-letter-topic", dlq)
    }

    /// Merges TOML `text` (keys and tables) into the manifest; what `text`
    /// sets wins, tables merge key by key.
    pub fn merge(mut self, text: &str) -> Self {
        let extra: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("manifest lines {text:?} are not TOML: {e}"));
        merge(&mut self.0, extra);
        self
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

impl Display for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::Manifest;

    #[test]
    fn a_manifest_is_the_toml_it_was_built_from() {
        let built = Manifest::pipe("in", "out", "g")
            .dead_letters("dlq")
            .set("offset-reset", "earliest")
            .merge("[limits]\ntimeout = \"1s\"\n[config]\nregion = \"r\"\n");
        let text = "input-topics = [\"in\"]\noutput-topics = [\"out\"]\ngroup-id = \"g\"\n\
                    offset-reset = \"earliest\"\n[on-failure]\ndead-letter-topic = \"dlq\"\n\
                    [limits]\ntimeout = \"1s\"\n[config]\noutput = \"out\"\nregion = \"r\"\n";
        let want: toml::Table = text.parse().unwrap();
        let got: toml::Table = built.to_string().parse().unwrap();
        assert_eq!(got, want);
    }
}
