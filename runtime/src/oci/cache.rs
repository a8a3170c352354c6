//! The on-disk cache of pulled artifacts.
//!
//! ```text
//! <cache>/blobs/sha256/<hex>        manifests and components, by digest
//! <cache>/manifests/<hex>.toml      the weir manifest carried by manifest <hex>
//! <cache>/refs/<module>.json        the last version of <module> that loaded
//! ```
//!
//! Blobs are written only after their SHA-256 matched the digest they are
//! stored under (to a temporary file, then renamed), and verified again
//! when read, so a damaged cache is refused, not run. `refs/` records only
//! versions the supervisor loaded, so a restart while the registry is down
//! serves the last good version.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::OciError;

/// The last version of a module that loaded: enough to rebuild it from the
/// cached blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    /// The reference it was pulled by.
    pub reference: String,
    /// The manifest's digest (`sha256:<hex>`).
    pub digest: String,
}

/// A cache folder.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `bytes` hash to `digest` (`sha256:<64 hex>`); `what` names
/// them in the error.
pub fn verify(what: &str, digest: &str, bytes: &[u8]) -> Result<(), OciError> {
    hex_of(digest)?;
    let actual = sha256(bytes);
    if actual == digest {
        Ok(())
    } else {
        Err(OciError::Digest {
            what: what.to_owned(),
            expected: digest.to_owned(),
            actual,
        })
    }
}

/// The hex part of a SHA-256 digest; anything else (another algorithm, a
/// path separator) is refused before it becomes a file name.
fn hex_of(digest: &str) -> Result<&str, OciError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| OciError::Layout(format!("unsupported digest `{digest}` (sha256 only)")))
}

impl Cache {
    /// The cache at `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the blob `digest` is stored.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    /// Where the weir manifest of artifact `digest` is stored.
    pub fn manifest_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        Ok(self
            .root
            .join("manifests")
            .join(format!("{}.toml", hex_of(digest)?)))
    }

    /// Where module `name`'s last good version is recorded.
    pub fn record_path(&self, name: &str) -> PathBuf {
        self.root.join("refs").join(format!("{name}.json"))
    }

    /// Stores `bytes` as blob `digest` after checking they hash to it.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, OciError> {
        verify("blob", digest, bytes)?;
        let path = self.blob_path(digest)?;
        write_atomic(&path, bytes)?;
        Ok(path)
    }

    /// The blob `digest`, verified; `None` when it is not cached.
    pub fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        let path = self.blob_path(digest)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                verify(&format!("cached blob `{}`", path.display()), digest, &bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(OciError::Cache { path, source }),
        }
    }

    /// Writes the weir manifest `text` of artifact `digest`; returns its path.
    pub fn put_manifest(&self, digest: &str, text: &str) -> Result<PathBuf, OciError> {
        let path = self.manifest_path(digest)?;
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Records `record` as module `name`'s last good version.
    pub fn remember(&self, name: &str, record: &Record) -> Result<(), OciError> {
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        write_atomic(&self.record_path(name), &json)
    }

    /// Module `name`'s last good version, if one was recorded.
    pub fn recall(&self, name: &str) -> Result<Option<Record>, OciError> {
        let path = self.record_path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| OciError::Cache {
                    path,
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(OciError::Cache { path, source }),
        }
    }
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over
/// `path`, so readers see the old content or the new one, never a part.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let cache_err = |source| OciError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(cache_err)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp).map_err(cache_err)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(cache_err)?;
    std::fs::rename(&tmp, path).map_err(cache_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_by_digest_and_verified_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let digest = sha256(b"component");
        assert_eq!(cache.get(&digest).unwrap(), None);
        let path = cache.put(&digest, b"component").unwrap();
        assert_eq!(
            path,
            dir.path()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        );
        assert_eq!(cache.get(&digest).unwrap().unwrap(), b"component");
        // Bytes that do not match their digest are not stored...
        let err = cache.put(&digest, b"tampered").unwrap_err();
        assert!(matches!(err, OciError::Digest { .. }), "{err}");
        assert_eq!(cache.get(&digest).unwrap().unwrap(), b"component");
        // ...and a damaged cached blob is refused.
        std::fs::write(&path, b"damaged").unwrap();
        let err = cache.get(&digest).unwrap_err().to_string();
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(err.contains(&digest), "{err}");
    }

    #[test]
    fn digests_that_are_not_sha256_hex_never_become_paths() {
        let cache = Cache::new("/c");
        for bad in [
            "sha512:abcd",
            "sha256:../../etc/passwd",
            "sha256:ABCD",
            &format!("sha256:{}", "g".repeat(64)),
            "deadbeef",
        ] {
            assert!(
                matches!(cache.blob_path(bad), Err(OciError::Layout(_))),
                "{bad}"
            );
        }
        let good = sha256(b"");
        assert_eq!(
            cache.manifest_path(&good).unwrap(),
            Path::new("/c/manifests").join(format!("{}.toml", &good[7..]))
        );
    }

    #[test]
    fn records_round_trip_and_are_per_module() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        assert_eq!(cache.recall("orders").unwrap(), None);
        let record = Record {
            reference: "127.0.0.1:5000/weir/orders:v1".into(),
            digest: sha256(b"m"),
        };
        cache.remember("orders", &record).unwrap();
        assert_eq!(cache.recall("orders").unwrap(), Some(record));
        assert_eq!(cache.recall("other").unwrap(), None);
        assert_eq!(
            cache.record_path("orders"),
            dir.path().join("refs/orders.json")
        );
    }

    #[test]
    fn verify_names_what_failed() {
        verify("layer", &sha256(b"x"), b"x").unwrap();
        let err = verify("layer", &sha256(b"x"), b"y")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("digest mismatch for layer: expected sha256:"),
            "{err}"
        );
    }
}
