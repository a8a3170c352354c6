//! Modules delivered through an OCI registry.
//!
//! # Artifact layout
//!
//! A weir module is a Wasm component artifact as the Bytecode Alliance's
//! `wkg` and `oci-wasm` write it, so those tools can pull it too:
//!
//! - an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`);
//! - its config, `application/vnd.wasm.config.v0+json` (oci-wasm's
//!   `WasmConfig`: the component's WIT imports and exports);
//! - exactly one layer, `application/wasm`: the component;
//! - the module's manifest (`<name>.toml`) as the text of the manifest
//!   annotation [`MANIFEST_ANNOTATION`]. Being inside the OCI manifest, it
//!   is covered by the manifest digest: the component and its settings
//!   travel, and are verified, as one version.
//!
//! # Pulling
//!
//! [`poll`] resolves every `[[oci]]` entry at start (falling back to the
//! cache when the registry cannot be reached), then asks the registry for
//! each tag's digest every `oci-poll-interval`. A new digest is pulled, its
//! manifest and layer checked against their SHA-256 digests, stored in the
//! [`cache`], and handed to the supervisor, which loads it through the same
//! path as a changed file of the modules folder (compile off the event path,
//! swap in place, per-partition order kept). Any failure leaves the serving
//! version in place and is shown in the module's `/status` entry under `oci`.

pub mod cache;
pub mod config;
pub mod poll;
pub mod push;

use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};

use cache::{Cache, Record};
pub use config::OciModule;
pub use poll::{Catalog, Pulled};

/// The OCI manifest annotation holding the module's manifest (TOML text).
pub const MANIFEST_ANNOTATION: &str = "dev.weir.manifest";

/// Why an artifact could not be pulled or used.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The registry could not be reached or refused the request (network,
    /// authentication, unknown tag): retried at the next poll.
    #[error("registry unreachable or refused the request: {0}")]
    Registry(String),
    /// Content did not hash to its digest: this version is refused.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    Digest {
        /// What was checked.
        what: String,
        /// The digest it was fetched by.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The artifact is not a weir module: this version is refused.
    #[error("not a weir module artifact: {0}")]
    Layout(String),
    /// The cache could not be read or written.
    #[error("OCI cache `{}`: {source}", path.display())]
    Cache {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl OciError {
    /// Whether this version of the artifact is bad (refused until the tag
    /// moves), rather than the registry or the disk failing (retried).
    pub fn refuses_version(&self) -> bool {
        matches!(self, Self::Digest { .. } | Self::Layout(_))
    }

    fn client(err: OciDistributionError, what: &str) -> Self {
        match err {
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => Self::Digest {
                what: what.to_owned(),
                expected,
                actual,
            },
            other => Self::Registry(error_chain(&other)),
        }
    }
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// A client for `registries`: plain HTTP to the ones listed, HTTPS (with
/// the system's roots) to any other.
pub fn client(plain_http: Vec<String>) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain_http),
        connect_timeout: Some(Duration::from_secs(5)),
        read_timeout: Some(Duration::from_secs(30)),
        ..ClientConfig::default()
    })
}

/// What the OCI manifest of a weir module says.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The OCI manifest's digest.
    pub digest: String,
    /// The component layer.
    pub layer: OciDescriptor,
    /// The module's manifest (TOML).
    pub manifest_text: String,
}

/// Checks the raw OCI manifest against `digest` and the weir layout, and
/// returns what it describes. `max_bytes` caps the component layer.
pub fn parse_artifact(raw: &[u8], digest: &str, max_bytes: u64) -> Result<Artifact, OciError> {
    cache::verify("the OCI manifest", digest, raw)?;
    let manifest: OciImageManifest = serde_json::from_slice(raw)
        .map_err(|e| OciError::Layout(format!("the OCI manifest is not an image manifest: {e}")))?;
    let config_type = &manifest.config.media_type;
    if config_type != oci_wasm::WASM_MANIFEST_CONFIG_MEDIA_TYPE {
        return Err(OciError::Layout(format!(
            "config media type `{config_type}`, expected `{}`",
            oci_wasm::WASM_MANIFEST_CONFIG_MEDIA_TYPE
        )));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(OciError::Layout(format!(
            "{} layers, expected one `{}` layer",
            manifest.layers.len(),
            oci_wasm::WASM_LAYER_MEDIA_TYPE
        )));
    };
    if layer.media_type != oci_wasm::WASM_LAYER_MEDIA_TYPE {
        return Err(OciError::Layout(format!(
            "layer media type `{}`, expected `{}`",
            layer.media_type,
            oci_wasm::WASM_LAYER_MEDIA_TYPE
        )));
    }
    if u64::try_from(layer.size).unwrap_or(u64::MAX) > max_bytes {
        return Err(OciError::Layout(format!(
            "the component is {} bytes, over the {max_bytes}-byte limit (`max-module-bytes`)",
            layer.size
        )));
    }
    let manifest_text = manifest
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANIFEST_ANNOTATION))
        .cloned()
        .ok_or_else(|| {
            OciError::Layout(format!(
                "no `{MANIFEST_ANNOTATION}` annotation (the module's manifest); publish it with \
                 `weir push <component.wasm> <reference> --manifest <name>.toml`"
            ))
        })?;
    Ok(Artifact {
        digest: digest.to_owned(),
        layer: layer.clone(),
        manifest_text,
    })
}

/// Pulls the artifact `reference` names (verifying the manifest and the
/// component against their digests), stores it in `cache`, and returns it
/// ready to load. A component already cached is not downloaded again.
pub async fn pull(
    client: &Client,
    entry: &OciModule,
    name: &str,
    cache: &Cache,
    max_bytes: u64,
) -> Result<Pulled, OciError> {
    let reference = entry.parsed().map_err(OciError::Layout)?;
    let auth = entry.auth();
    let (raw, digest) = client
        .pull_manifest_raw(&reference, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| OciError::client(e, "the OCI manifest"))?;
    let artifact = parse_artifact(&raw, &digest, max_bytes)?;
    if cache.get(&artifact.layer.digest)?.is_none() {
        // No more than the manifest declared (itself within the cap): a
        // registry sending more is cut off, not buffered.
        let declared = usize::try_from(artifact.layer.size).unwrap_or(0);
        let mut bytes = Capped {
            bytes: Vec::with_capacity(declared),
            max: declared,
        };
        client
            .pull_blob(&reference, &artifact.layer, &mut bytes)
            .await
            .map_err(|e| OciError::client(e, "the component layer"))?;
        cache
            .put(&artifact.layer.digest, &bytes.bytes)
            .map_err(|e| match e {
                OciError::Digest {
                    expected, actual, ..
                } => OciError::Digest {
                    what: "the component layer".into(),
                    expected,
                    actual,
                },
                other => other,
            })?;
    }
    cache.put(&digest, &raw)?;
    materialize(cache, name, &entry.reference, artifact)
}

/// A buffer refusing writes past `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.bytes.len() + data.len() > self.max {
            let max = self.max;
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the registry sent more than the {max} bytes the manifest declared"
            ))));
        }
        self.bytes.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Rebuilds module `name` from its record in `cache`, verifying every blob
/// again: what a restart serves while the registry is down.
pub fn from_cache(
    cache: &Cache,
    name: &str,
    record: &Record,
    max_bytes: u64,
) -> Result<Pulled, OciError> {
    let missing = |what: &str, digest: &str| {
        OciError::Layout(format!("{what} `{digest}` is not in the cache"))
    };
    let raw = (cache.get(&record.digest)?).ok_or_else(|| missing("manifest", &record.digest))?;
    let artifact = parse_artifact(&raw, &record.digest, max_bytes)?;
    if cache.get(&artifact.layer.digest)?.is_none() {
        return Err(missing("component", &artifact.layer.digest));
    }
    materialize(cache, name, &record.reference, artifact)
}

/// Writes the artifact's manifest text next to its cached component.
fn materialize(
    cache: &Cache,
    name: &str,
    reference: &str,
    artifact: Artifact,
) -> Result<Pulled, OciError> {
    Ok(Pulled {
        name: name.to_owned(),
        reference: reference.to_owned(),
        wasm: cache.blob_path(&artifact.layer.digest)?,
        manifest: cache.put_manifest(&artifact.digest, &artifact.manifest_text)?,
        digest: artifact.digest,
    })
}

/// The registries among `entries` that weir talks plain HTTP to.
fn plain_http_registries(entries: &[OciModule]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.plain_http())
        .filter_map(|e| e.parsed().ok())
        .map(|r: Reference| r.resolve_registry().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn manifest_json(layers: &[(&str, i64)], annotations: Option<&str>) -> Vec<u8> {
        let manifest = OciImageManifest {
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
            config: OciDescriptor {
                media_type: oci_wasm::WASM_MANIFEST_CONFIG_MEDIA_TYPE.into(),
                digest: cache::sha256(b"{}"),
                size: 2,
                ..OciDescriptor::default()
            },
            layers: layers
                .iter()
                .map(|(media_type, size)| OciDescriptor {
                    media_type: (*media_type).into(),
                    digest: cache::sha256(b"wasm"),
                    size: *size,
                    ..OciDescriptor::default()
                })
                .collect(),
            annotations: annotations
                .map(|text| BTreeMap::from([(MANIFEST_ANNOTATION.to_owned(), text.to_owned())])),
            ..OciImageManifest::default()
        };
        serde_json::to_vec(&manifest).unwrap()
    }

    #[test]
    fn a_weir_artifact_carries_one_wasm_layer_and_the_manifest_annotation() {
        let raw = manifest_json(&[("application/wasm", 4)], Some("input-topics = [\"a\"]"));
        let digest = cache::sha256(&raw);
        let artifact = parse_artifact(&raw, &digest, 100).unwrap();
        assert_eq!(artifact.digest, digest);
        assert_eq!(artifact.layer.digest, cache::sha256(b"wasm"));
        assert_eq!(artifact.manifest_text, "input-topics = [\"a\"]");
    }

    #[test]
    fn the_manifest_must_match_its_digest() {
        let raw = manifest_json(&[("application/wasm", 4)], Some(""));
        let err = parse_artifact(&raw, &cache::sha256(b"other"), 100).unwrap_err();
        assert!(matches!(err, OciError::Digest { .. }), "{err}");
        assert!(err.refuses_version());
    }

    #[test]
    fn other_layouts_are_refused_saying_why() {
        /// Layers (media type, size), the annotation, what the error says.
        type Case<'a> = (&'a [(&'a str, i64)], Option<&'a str>, &'a str);
        let cases: [Case; 4] = [
            (
                &[("application/wasm", 4)],
                None,
                "no `dev.weir.manifest` annotation",
            ),
            (
                &[("application/vnd.oci.image.layer.v1.tar", 4)],
                Some(""),
                "layer media type",
            ),
            (
                &[("application/wasm", 4), ("application/wasm", 4)],
                Some(""),
                "2 layers",
            ),
            (
                &[("application/wasm", 101)],
                Some(""),
                "over the 100-byte limit",
            ),
        ];
        for (layers, annotation, expected) in cases {
            let raw = manifest_json(layers, annotation);
            let err = parse_artifact(&raw, &cache::sha256(&raw), 100).unwrap_err();
            assert!(err.refuses_version(), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
        let raw = b"{\"schemaVersion\": 2}".to_vec();
        let err = parse_artifact(&raw, &cache::sha256(&raw), 100).unwrap_err();
        assert!(err.to_string().contains("not an image manifest"), "{err}");
    }

    #[tokio::test]
    async fn a_layer_longer_than_declared_is_cut_off() {
        use tokio::io::AsyncWriteExt;
        let mut capped = Capped {
            bytes: Vec::new(),
            max: 4,
        };
        capped.write_all(b"wasm").await.unwrap();
        let err = capped.write_all(b"!").await.unwrap_err();
        assert!(err.to_string().contains("more than the 4 bytes"), "{err}");
        assert_eq!(capped.bytes, b"wasm");
    }

    #[test]
    fn a_cached_version_is_rebuilt_only_from_verified_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let raw = manifest_json(&[("application/wasm", 4)], Some("input-topics = [\"a\"]"));
        let record = Record {
            reference: "127.0.0.1:5000/w/m:v1".into(),
            digest: cache::sha256(&raw),
        };
        let err = from_cache(&cache, "m", &record, 100).unwrap_err();
        assert!(err.to_string().contains("is not in the cache"), "{err}");
        cache.put(&record.digest, &raw).unwrap();
        let err = from_cache(&cache, "m", &record, 100).unwrap_err();
        assert!(err.to_string().contains("component `sha256:"), "{err}");
        let wasm = cache.put(&cache::sha256(b"wasm"), b"wasm").unwrap();
        let pulled = from_cache(&cache, "m", &record, 100).unwrap();
        assert_eq!(pulled.wasm, wasm);
        assert_eq!(pulled.digest, record.digest);
        assert_eq!(
            std::fs::read_to_string(&pulled.manifest).unwrap(),
            "input-topics = [\"a\"]"
        );
        std::fs::write(&wasm, b"evil").unwrap();
        let err = from_cache(&cache, "m", &record, 100).unwrap_err();
        assert!(matches!(err, OciError::Digest { .. }), "{err}");
    }
}
