//! `weir new <name> --lang <lang>`: a consumer project from a template.
//!
//! Templates are the directories `runtime/templates/<lang>/`, embedded at
//! build time (`runtime/build.rs`), so any directory added there is a new
//! `--lang`. In file names and contents these placeholders are replaced:
//!
//! | placeholder | value |
//! |---|---|
//! | `{{name}}` | the module name, kebab-case (`my-enricher`) |
//! | `{{name_snake}}` | the same in snake_case (`my_enricher`) |
//! | `{{sdk_path}}` | the Rust SDK source (`--sdk`, or `sdk/` of the weir tree this binary was built from); only templates that use it need it |
//!
//! Files a template lists in its `.weir-embed` (for example a helper
//! library and `wit/consumer.wit`, see `runtime/build.rs`) are embedded from
//! the weir source tree and written as they are.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewOptions {
    /// Module name: lowercase letters, digits and single hyphens.
    pub name: String,
    /// Template language (a directory under `runtime/templates/`).
    pub lang: String,
    /// Parent directory; the project goes to `<dir>/<name>`.
    pub dir: PathBuf,
    /// The `weir-sdk` source directory, for templates that use `{{sdk_path}}`.
    pub sdk: Option<PathBuf>,
}

/// The languages with an embedded template.
pub fn languages() -> Vec<&'static str> {
    embedded::TEMPLATES.iter().map(|(lang, _)| *lang).collect()
}

/// Creates the project; returns its directory and the files written.
pub fn create(opts: &NewOptions) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    check_name(&opts.name)?;
    let Some((_, files)) = embedded::TEMPLATES.iter().find(|(l, _)| *l == opts.lang) else {
        bail!(
            "no `{}` template in this weir binary (it has: {}); templates are the directories \
             runtime/templates/<lang>/ of the weir source it was built from",
            opts.lang,
            languages().join(", ")
        );
    };
    let root = opts.dir.join(&opts.name);
    if root.exists()
        && std::fs::read_dir(&root)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "`{}` already exists and is not empty; choose another name or --dir",
            root.display()
        );
    }
    let uses_sdk = files
        .iter()
        .any(|(_, c, substitute)| *substitute && contains(c, b"{{sdk_path}}"));
    let sdk = if uses_sdk {
        Some(sdk_path(opts.sdk.as_deref())?)
    } else {
        None
    };
    let snake = opts.name.replace('-', "_");
    let fill = |text: &str| {
        let mut text = text
            .replace("{{name}}", &opts.name)
            .replace("{{name_snake}}", &snake);
        if let Some(sdk) = &sdk {
            text = text.replace("{{sdk_path}}", &sdk.display().to_string());
        }
        text
    };
    let mut written = Vec::new();
    for (rel, contents, substitute) in files.iter() {
        let path = root.join(fill(rel));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let bytes = match std::str::from_utf8(contents) {
            Ok(text) if *substitute => fill(text).into_bytes(),
            _ => contents.to_vec(), // embedded and binary files are copied as they are
        };
        std::fs::write(&path, bytes)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        written.push(path);
    }
    Ok((root, written))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Module names become file names, topic names and crate names.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "invalid module name {name:?}: use lowercase letters, digits and single hyphens, \
             starting with a letter (e.g. `order-enricher`)"
        );
    }
    Ok(())
}

/// The `weir-sdk` directory: `explicit`, else `sdk/` of the source tree this
/// binary was built from, if it is still there.
fn sdk_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let candidate = explicit.map_or(built_from, Path::to_path_buf);
    let manifest = candidate.join("Cargo.toml");
    let is_sdk =
        std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("name = \"weir-sdk\""));
    if !is_sdk {
        bail!(
            "cannot find the weir-sdk source at `{}` (no Cargo.toml of package weir-sdk there): \
             the Rust template depends on it by path; pass --sdk <weir checkout>/sdk",
            candidate.display()
        );
    }
    candidate
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", candidate.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case() {
        for ok in ["a", "order-enricher", "v2-router"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "A", "-a", "a-", "a--b", "a_b", "2a", "a b", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_rust_template_is_embedded_with_placeholders() {
        assert!(languages().contains(&"rust"));
        let (_, files) = embedded::TEMPLATES
            .iter()
            .find(|(l, _)| *l == "rust")
            .unwrap();
        let names: Vec<&str> = files.iter().map(|(p, _, _)| *p).collect();
        assert!(
            names.contains(&"{{name}}.toml") && names.contains(&"src/lib.rs"),
            "{names:?}"
        );
    }

    #[test]
    fn create_substitutes_names_and_the_sdk_path() {
        let dir = tempfile::tempdir().unwrap();
        let opts = NewOptions {
            name: "my-mod".into(),
            lang: "rust".into(),
            dir: dir.path().to_path_buf(),
            sdk: None,
        };
        let (root, files) = create(&opts).unwrap();
        assert!(files.contains(&root.join("my-mod.toml")));
        let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-mod\""), "{cargo}");
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sdk")
            .canonicalize()
            .unwrap();
        assert!(
            cargo.contains(&format!("path = \"{}\"", sdk.display())),
            "{cargo}"
        );
        let err = create(&NewOptions {
            sdk: Some(dir.path().into()),
            name: "other".into(),
            ..opts
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cannot find the weir-sdk source") && err.contains("--sdk"),
            "{err}"
        );
    }
}
