//! The dependency directions of ARCHITECTURE.md, checked on the source tree rather than hoped
//! for: `http` → `chat` → `tools` → `jobs` → `imaging`; everything may use `store`, `auth`,
//! `config` and the leaves (`net`, `replay`); `imaging` and `store` use no wire types
//! (`app::api`); only `http` uses axum.
//!
//! The checker reads every `.rs` file under `server/src`, finds which top-level module it
//! belongs to, and reports each `crate::…`, `app::api` or `axum` reference that module may not
//! make. The last test runs it on a small sample tree with a wrong import, to prove it fails.

use std::path::{Path, PathBuf};

/// What each module may not use. Modules not listed (lib.rs, cli, main) may use anything.
const RULES: &[(&str, &[&str])] = &[
    (
        "imaging",
        &[
            "chat", "http", "tools", "jobs", "auth", "store", "cluster", "app::api", "axum",
        ],
    ),
    (
        "store",
        &[
            "chat", "http", "tools", "jobs", "imaging", "auth", "cluster", "app::api", "axum",
        ],
    ),
    ("jobs", &["chat", "http", "tools", "axum"]),
    ("tools", &["chat", "http", "auth", "axum"]),
    ("chat", &["http", "axum"]),
    (
        "auth",
        &[
            "chat", "http", "tools", "jobs", "imaging", "cluster", "axum",
        ],
    ),
    // Nodes, leases and notifications: below everything that has work to share.
    (
        "cluster",
        &[
            "chat", "http", "tools", "jobs", "imaging", "auth", "app::api", "axum",
        ],
    ),
    (
        "config",
        &[
            "chat", "http", "tools", "jobs", "imaging", "store", "auth", "cluster", "axum",
        ],
    ),
    (
        "net",
        &[
            "chat", "http", "tools", "jobs", "imaging", "store", "auth", "config", "cluster",
            "axum",
        ],
    ),
    (
        "replay",
        &[
            "chat", "http", "tools", "jobs", "imaging", "store", "auth", "config", "cluster",
            "axum",
        ],
    ),
];

/// One import against the rules: file, line, what it used.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    module: String,
    uses: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `imaging/diffusion/onnx.rs` → `imaging`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a line without its `//` comment (good enough: no rule name appears in strings).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// Everything a line refers to that a rule could name.
fn references(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let line = code(line);
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // `use crate::{a, b}` names several.
        if name.is_empty() && after.starts_with('{') {
            let inner = after[1..].split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let n: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !n.is_empty() {
                    out.push(n);
                }
            }
        } else if !name.is_empty() {
            out.push(name);
        }
        rest = &rest[at + "crate::".len()..];
    }
    let words = |needle: &str| {
        line.match_indices(needle).any(|(at, _)| {
            let before = line[..at].chars().last();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        })
    };
    if words("app::api") {
        out.push("app::api".into());
    }
    if words("axum::") || words("axum;") {
        out.push("axum".into());
    }
    out
}

fn check(src: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in files {
        let module = module_of(src, &file);
        let Some((_, forbidden)) = RULES.iter().find(|(m, _)| *m == module) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mut in_tests = false;
        for (n, line) in text.lines().enumerate() {
            // Unit tests may use whatever they test against.
            if line.trim_start().starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            if in_tests {
                continue;
            }
            for used in references(line) {
                if forbidden.contains(&used.as_str()) {
                    violations.push(Violation {
                        file: file.display().to_string(),
                        line: n + 1,
                        module: module.clone(),
                        uses: used,
                    });
                }
            }
        }
    }
    violations
}

#[test]
fn modules_depend_only_in_the_stated_direction() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = check(&src);
    let report: Vec<String> = violations
        .iter()
        .map(|v| format!("{}:{}: `{}` uses `{}`", v.file, v.line, v.module, v.uses))
        .collect();
    assert!(
        report.is_empty(),
        "imports against ARCHITECTURE.md's direction:\n{}",
        report.join("\n")
    );
}

#[test]
fn every_module_on_disk_is_in_the_code_map() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("../ARCHITECTURE.md")).unwrap();
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut missing = Vec::new();
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if ["mod", "lib", "main"].contains(&name.as_str()) {
            continue;
        }
        let folder = file
            .parent()
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !map.contains(&format!("`{name}`"))
            && !map.contains(&format!("{name}.rs"))
            && !map.contains(&format!("`{folder}/`"))
        {
            missing.push(file.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name: {missing:?}"
    );
}

#[test]
fn the_checker_catches_a_wrong_import() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("imaging/diffusion")).unwrap();
    std::fs::create_dir_all(src.join("tools")).unwrap();
    std::fs::write(
        src.join("imaging/diffusion/pipeline.rs"),
        "use crate::imaging::encode;\nuse crate::chat::run::RunHandle; // wrong\n// use crate::http::AppState; (a comment, fine)\n",
    )
    .unwrap();
    std::fs::write(
        src.join("tools/mod.rs"),
        "use crate::{jobs, chat};\nuse app::api::events::ImageQueued;\nfn f() -> axum::Json<()> { todo() }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("imaging/encode.rs"),
        "use app::api::ImageMetadata;\n",
    )
    .unwrap();
    let found: Vec<(String, usize, String)> = check(src)
        .into_iter()
        .map(|v| {
            let file = Path::new(&v.file)
                .strip_prefix(src)
                .unwrap()
                .display()
                .to_string();
            (file, v.line, v.uses)
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "imaging/diffusion/pipeline.rs".to_string(),
                2,
                "chat".to_string()
            ),
            ("imaging/encode.rs".to_string(), 1, "app::api".to_string()),
            ("tools/mod.rs".to_string(), 1, "chat".to_string()),
            ("tools/mod.rs".to_string(), 3, "axum".to_string()),
        ]
    );
}
