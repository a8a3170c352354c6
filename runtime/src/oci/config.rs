//! The `[[oci]]` entries of `weir.toml`: one module each, pulled from a
//! registry.

use std::path::{Path, PathBuf};

use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// One module delivered through an OCI registry.
///
/// ```toml
/// [[oci]]
/// reference = "registry.example.com/weir/orders:stable"
/// name = "orders"                    # default: the repository's last segment
/// username = "ci"                    # optional basic auth
/// password-env = "WEIR_OCI_PASSWORD" # the password's environment variable
/// insecure = false                   # plain HTTP (loopback registries always may)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciModule {
    /// `registry/repository[:tag][@sha256:digest]`. A tag is polled and
    /// followed when it moves; a digest pins one version.
    pub reference: String,
    /// The module's name (its group id, metrics and status key); default:
    /// the last segment of the repository.
    #[serde(default)]
    pub name: Option<String>,
    /// Basic-auth user; anonymous when unset.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the basic-auth password (never
    /// the password itself in the file).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Talk plain HTTP to this registry. Registries on a loopback address
    /// (`127.0.0.1`, `[::1]`, `localhost`) always may; others only with
    /// this set.
    #[serde(default)]
    pub insecure: bool,
}

impl OciModule {
    /// The parsed reference.
    pub fn parsed(&self) -> Result<Reference, String> {
        parse_reference(&self.reference)
    }

    /// The module name: `name`, or the repository's last segment.
    pub fn module_name(&self) -> Result<String, String> {
        if let Some(name) = &self.name {
            return Ok(name.clone());
        }
        let reference = self.parsed()?;
        Ok(reference
            .repository()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    /// Whether weir talks plain HTTP to this entry's registry.
    pub fn plain_http(&self) -> bool {
        self.insecure
            || self
                .parsed()
                .is_ok_and(|r| is_loopback(r.resolve_registry()))
    }

    /// The credentials: basic auth when `username` is set (the password
    /// read from `password-env`, empty if that is unset), else anonymous.
    pub fn auth(&self) -> RegistryAuth {
        match &self.username {
            Some(user) => {
                let password = self
                    .password_env
                    .as_deref()
                    .and_then(|var| std::env::var(var).ok())
                    .unwrap_or_default();
                RegistryAuth::Basic(user.clone(), password)
            }
            None => RegistryAuth::Anonymous,
        }
    }
}

/// A reference as weir accepts it: `oci://` is allowed in front, the
/// registry must be explicit (no implicit Docker Hub).
pub fn parse_reference(text: &str) -> Result<Reference, String> {
    let bare = text.strip_prefix("oci://").unwrap_or(text);
    let first = bare.split('/').next().unwrap_or_default();
    let explicit =
        bare.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !explicit {
        return Err(format!(
            "OCI reference `{text}` names no registry: write `<registry>/<repository>:<tag>`, \
             e.g. `127.0.0.1:5000/weir/{bare}`"
        ));
    }
    bare.parse::<Reference>()
        .map_err(|e| format!("invalid OCI reference `{text}`: {e}"))
}

/// Whether `registry` (`host[:port]`) is a loopback address.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Problems of the `[[oci]]` entries, one line each: bad references,
/// names that are not valid module names, duplicate names.
pub fn problems(entries: &[OciModule]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for entry in entries {
        if let Err(err) = entry.parsed() {
            problems.push(format!("[[oci]] {err}"));
            continue;
        }
        match entry.module_name() {
            Ok(name) if valid_name(&name) => {
                if !names.insert(name.clone()) {
                    problems.push(format!(
                        "[[oci]] two entries are named `{name}`: set `name` to tell them apart"
                    ));
                }
            }
            Ok(name) => problems.push(format!(
                "[[oci]] `{}`: module name `{name}` must be letters, digits, `-`, `_` or `.`",
                entry.reference
            )),
            Err(err) => problems.push(format!("[[oci]] {err}")),
        }
        if entry.password_env.is_some() && entry.username.is_none() {
            problems.push(format!(
                "[[oci]] `{}`: `password-env` needs `username`",
                entry.reference
            ));
        }
    }
    problems
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The cache folder: `oci-cache`, or `<state-dir>/oci`.
pub fn cache_dir(configured: Option<&Path>, state_dir: &Path) -> PathBuf {
    configured.map_or_else(|| state_dir.join("oci"), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reference: &str) -> OciModule {
        OciModule {
            reference: reference.into(),
            name: None,
            username: None,
            password_env: None,
            insecure: false,
        }
    }

    #[test]
    fn references_need_a_registry_and_may_start_with_oci() {
        let r = parse_reference("oci://127.0.0.1:5000/weir/orders:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "weir/orders");
        assert_eq!(r.tag(), Some("v1"));
        let r = parse_reference(&format!("ghcr.io/acme/enrich@sha256:{}", "a".repeat(64))).unwrap();
        assert!(r.digest().is_some());
        let r = parse_reference("localhost/m").unwrap();
        assert_eq!(r.tag(), Some("latest"), "the default tag");
        for bad in ["orders:v1", "weir/orders", "oci://orders", ""] {
            let err = parse_reference(bad).unwrap_err();
            assert!(err.contains("names no registry"), "{bad}: {err}");
        }
        let err = parse_reference("127.0.0.1:5000/Bad Repo").unwrap_err();
        assert!(err.starts_with("invalid OCI reference"), "{err}");
    }

    #[test]
    fn the_name_defaults_to_the_last_repository_segment() {
        assert_eq!(
            entry("127.0.0.1:5000/team/weir/orders:v2")
                .module_name()
                .unwrap(),
            "orders"
        );
        let named = OciModule {
            name: Some("enrich".into()),
            ..entry("127.0.0.1:5000/x:v1")
        };
        assert_eq!(named.module_name().unwrap(), "enrich");
    }

    #[test]
    fn plain_http_only_for_loopback_or_when_insecure() {
        assert!(entry("127.0.0.1:5000/a:v1").plain_http());
        assert!(entry("localhost:5000/a:v1").plain_http());
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("127.0.0.2"));
        assert!(!entry("registry.example.com/a:v1").plain_http());
        assert!(!entry("10.0.0.1:5000/a:v1").plain_http());
        let insecure = OciModule {
            insecure: true,
            ..entry("10.0.0.1:5000/a:v1")
        };
        assert!(insecure.plain_http());
    }

    #[test]
    fn auth_is_basic_with_the_password_from_the_environment() {
        assert!(matches!(
            entry("127.0.0.1:5000/a").auth(),
            RegistryAuth::Anonymous
        ));
        let with_user = OciModule {
            username: Some("ci".into()),
            password_env: Some("WEIR_TEST_OCI_PASSWORD_UNSET".into()),
            ..entry("127.0.0.1:5000/a")
        };
        let RegistryAuth::Basic(user, password) = with_user.auth() else {
            panic!("not basic");
        };
        assert_eq!((user.as_str(), password.as_str()), ("ci", ""));
    }

    #[test]
    fn problems_name_bad_references_duplicates_and_lone_passwords() {
        let entries = [
            entry("127.0.0.1:5000/a/orders:v1"),
            entry("127.0.0.1:5000/b/orders:v1"),
            entry("orders"),
            OciModule {
                password_env: Some("P".into()),
                ..entry("127.0.0.1:5000/c:v1")
            },
            OciModule {
                name: Some("../x".into()),
                ..entry("127.0.0.1:5000/d:v1")
            },
        ];
        let problems = problems(&entries);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("two entries are named `orders`"));
        assert!(problems[1].contains("names no registry"));
        assert!(problems[2].contains("`password-env` needs `username`"));
        assert!(problems[3].contains("module name `../x`"));
    }

    #[test]
    fn the_cache_defaults_to_the_state_dir() {
        assert_eq!(
            cache_dir(None, Path::new("/var/weir")),
            Path::new("/var/weir/oci")
        );
        assert_eq!(
            cache_dir(Some(Path::new("/c")), Path::new("/var/weir")),
            Path::new("/c")
        );
    }

    #[test]
    fn weir_toml_takes_oci_entries_instead_of_a_folder() {
        use crate::config::RunConfig;
        let text = "brokers = \"b\"\noci-poll-interval = \"2s\"\n\
                    [[oci]]\nreference = \"oci://127.0.0.1:5000/weir/orders:v1\"\n\
                    [[oci]]\nreference = \"ghcr.io/acme/enrich:stable\"\nusername = \"ci\"\n\
                    password-env = \"WEIR_OCI_PASSWORD\"\n";
        let cfg = RunConfig::from_toml(text, None).unwrap();
        cfg.validate(None).unwrap();
        assert_eq!(cfg.oci.len(), 2);
        assert_eq!(cfg.oci_poll_interval, std::time::Duration::from_secs(2));
        assert_eq!(cfg.oci_cache_dir(), Path::new("weir-state/oci"));
        assert_eq!(cfg.oci[1].module_name().unwrap(), "enrich");

        let err = RunConfig::from_toml("[[oci]]\nreference = \"r\"\nbogus = 1\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        let cfg = RunConfig::from_toml(
            "brokers = \"b\"\noci-poll-interval = \"0s\"\n[[oci]]\nreference = \"x\"\n",
            None,
        )
        .unwrap();
        let err = cfg.validate(None).unwrap_err().to_string();
        assert!(
            err.contains("`oci-poll-interval` must be greater than zero"),
            "{err}"
        );
        assert!(err.contains("names no registry"), "{err}");
        assert!(!err.contains("`modules` is not set"), "{err}");
    }
}
