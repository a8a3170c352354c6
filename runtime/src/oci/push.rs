//! `weir push`: publishing a component and its manifest as a weir module
//! artifact (the layout described in [`crate::oci`]).

use std::collections::BTreeMap;

use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_wasm::ToConfig;

use super::{MANIFEST_ANNOTATION, OciError, OciModule, cache::sha256};

/// The OCI manifest of a weir module artifact and the blobs it names.
pub struct Publication {
    /// The OCI manifest, serialised as it is pushed.
    pub manifest: Vec<u8>,
    /// Its digest: the version's identity.
    pub digest: String,
    /// The component layer.
    pub layer: oci_client::client::ImageLayer,
    /// The `application/vnd.wasm.config.v0+json` config.
    pub config: oci_client::client::Config,
}

impl std::fmt::Debug for Publication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publication")
            .field("digest", &self.digest)
            .field("layer_bytes", &self.layer.data.len())
            .field("config", &self.config.media_type)
            .finish_non_exhaustive()
    }
}

/// Lays out `component` (a Wasm component) with the module's manifest
/// `manifest_text`: oci-wasm's config and layer, the manifest text as the
/// [`MANIFEST_ANNOTATION`] annotation.
pub fn publication(component: Vec<u8>, manifest_text: &str) -> Result<Publication, OciError> {
    let (config, layer) = oci_wasm::WasmConfig::from_raw_component(component, None)
        .map_err(|e| OciError::Layout(format!("cannot describe the component: {e:#}")))?;
    let config = config
        .to_config()
        .map_err(|e| OciError::Layout(format!("cannot write the config: {e:#}")))?;
    let annotations = BTreeMap::from([(MANIFEST_ANNOTATION.to_owned(), manifest_text.to_owned())]);
    let mut manifest =
        OciImageManifest::build(std::slice::from_ref(&layer), &config, Some(annotations));
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_owned());
    let manifest = serde_json::to_vec(&manifest)
        .map_err(|e| OciError::Layout(format!("cannot write the OCI manifest: {e}")))?;
    Ok(Publication {
        digest: sha256(&manifest),
        manifest,
        layer,
        config,
    })
}

/// Pushes `publication` to `target` (its reference, credentials and
/// protocol); returns the manifest digest.
pub async fn push(target: &OciModule, publication: Publication) -> Result<String, OciError> {
    let reference = target.parsed().map_err(OciError::Layout)?;
    let client = super::client(super::plain_http_registries(std::slice::from_ref(target)));
    client
        .store_auth_if_needed(reference.resolve_registry(), &target.auth())
        .await;
    let Publication {
        manifest,
        digest,
        layer,
        config,
    } = publication;
    let layer_digest = layer.sha256_digest();
    client
        .push_blob(&reference, layer.data, &layer_digest)
        .await
        .map_err(|e| OciError::client(e, "the component layer"))?;
    let config_digest = sha256(&config.data);
    client
        .push_blob(&reference, config.data, &config_digest)
        .await
        .map_err(|e| OciError::client(e, "the config"))?;
    client
        .push_manifest_raw(
            &reference,
            manifest,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(|e| OciError::client(e, "the OCI manifest"))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_is_a_weir_artifact_with_its_digest() {
        // The smallest component: its header.
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        let publication = publication(component.clone(), "input-topics = [\"a\"]\n").unwrap();
        assert_eq!(publication.digest, sha256(&publication.manifest));
        assert_eq!(publication.layer.media_type, "application/wasm");
        assert_eq!(
            publication.config.media_type,
            "application/vnd.wasm.config.v0+json"
        );
        let artifact =
            super::super::parse_artifact(&publication.manifest, &publication.digest, 1 << 20)
                .unwrap();
        assert_eq!(artifact.layer.digest, sha256(&component));
        assert_eq!(artifact.manifest_text, "input-topics = [\"a\"]\n");
    }
}
