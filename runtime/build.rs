#![allow(
    clippy::print_stdout,
    reason = "cargo reads build-script directives from stdout"
)]
//! Embeds every project template under `templates/<lang>/` into the binary
//! (for `weir new`), generically: a new directory there is a new `--lang`.
//!
//! Generates `$OUT_DIR/templates.rs` with one `include_bytes!` per file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::from(
        "/// One template file: its path relative to the template, and its bytes.\n\
         pub(crate) type File = (&'static str, &'static [u8]);\n\
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
        let mut files = Vec::new();
        collect(&lang, &mut files);
        files.sort();
        writeln!(out, "    ({name:?}, &[").unwrap();
        for file in files {
            let rel = file
                .strip_prefix(&lang)
                .expect("under the template")
                .to_str()
                .expect("utf-8 path");
            let rel = rel.replace('\\', "/");
            writeln!(
                out,
                "        ({rel:?}, include_bytes!({:?})),",
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

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("template dir entry").path())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every file below `dir`, skipping build output a developer may have left
/// in a template while trying it (`target/`, `dist/`, `node_modules/`).
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for path in read_dir(dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "target" | "dist" | "node_modules" | "__pycache__") {
                collect(&path, files);
            }
        } else {
            files.push(path);
        }
    }
}
