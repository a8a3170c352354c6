#![allow(
    clippy::print_stdout,
    reason = "cargo reads build-script directives from stdout"
)]
//! Embeds every project template under `templates/<lang>/` into the binary
//! (for `weir new`), generically: a new directory there is a new `--lang`.
//!
//! A template may also name files of the weir source tree to ship with it
//! (a helper library, the WIT), in a file `.weir-embed` at its root, one
//! `<path in the project> = <path from the repository root>` per line
//! (`#` comments; a source directory is copied whole). Those are embedded
//! too and written verbatim, without placeholder substitution.
//!
//! Generates `$OUT_DIR/templates.rs` with one `include_bytes!` per file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The name of the embed list in a template.
const EMBED_LIST: &str = ".weir-embed";

fn main() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir.parent().expect("runtime/ has a parent");
    let root = manifest_dir.join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::from(
        "/// One template file: its path in the project, its bytes, and whether\n\
         /// placeholders are substituted in it.\n\
         pub(crate) type File = (&'static str, &'static [u8], bool);\n\
         /// Every embedded template: language, then its files.\n\
         pub(crate) static TEMPLATES: &[(&str, &[File])] = &[\n",
    );
    let mut langs: Vec<PathBuf> = read_dir(&root).into_iter().filter(|p| p.is_dir()).collect();
    langs.sort();
    for lang in langs {
        let name = lang
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 template name");
        // (path in the project, source file, substitute placeholders)
        let mut files: Vec<(String, PathBuf, bool)> = Vec::new();
        let mut own = Vec::new();
        collect(&lang, &mut own);
        for file in own {
            let rel = relative(&file, &lang);
            if rel != EMBED_LIST {
                files.push((rel, file, true));
            }
        }
        for (dest, source) in embed_list(&lang.join(EMBED_LIST)) {
            let source_path = repo.join(&source);
            println!("cargo:rerun-if-changed={}", source_path.display());
            if source_path.is_dir() {
                let mut found = Vec::new();
                collect(&source_path, &mut found);
                for file in found {
                    files.push((
                        format!("{dest}/{}", relative(&file, &source_path)),
                        file,
                        false,
                    ));
                }
            } else if source_path.is_file() {
                files.push((dest, source_path, false));
            } else {
                panic!(
                    "{}: `{source}` does not exist under {}",
                    lang.join(EMBED_LIST).display(),
                    repo.display()
                );
            }
        }
        files.sort();
        writeln!(out, "    ({name:?}, &[").unwrap();
        for (rel, file, substitute) in files {
            writeln!(
                out,
                "        ({rel:?}, include_bytes!({:?}), {substitute}),",
                file.display().to_string()
            )
            .unwrap();
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("templates.rs");
    std::fs::write(dest, out).expect("write templates.rs");
}

/// The `dest = source` lines of an embed list (none if it does not exist).
fn embed_list(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (dest, source) = l.split_once('=').unwrap_or_else(|| {
                panic!("{}: expected `dest = source`, got {l:?}", path.display())
            });
            (
                dest.trim().trim_end_matches('/').to_owned(),
                source.trim().to_owned(),
            )
        })
        .collect()
}

fn relative(file: &Path, base: &Path) -> String {
    let rel = file
        .strip_prefix(base)
        .expect("under its base")
        .to_str()
        .expect("utf-8 path");
    rel.replace('\\', "/")
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("template dir entry").path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every file below `dir`, skipping build output and caches a developer may
/// have left while trying a template (`target/`, `dist/`, `node_modules/`,
/// `__pycache__/`, `.venv/`).
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for path in read_dir(dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if !matches!(
                name,
                "target" | "dist" | "node_modules" | "__pycache__" | ".venv"
            ) {
                collect(&path, files);
            }
        } else {
            files.push(path);
        }
    }
}
