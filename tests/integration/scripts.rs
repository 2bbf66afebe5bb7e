//! Issue 32: the scripts and examples run the binary cargo built, wherever `CARGO_TARGET_DIR`
//! puts it. `scripts/lib.sh` says where (`HAPROXY_AUTOSCALER_BIN`); a script or example that
//! names `target/debug` or `target/release` itself runs a stale binary, or none, when cargo
//! builds elsewhere.

use std::path::{Path, PathBuf};

/// The lines of `text` that name cargo's output folder without `CARGO_TARGET_DIR` (comments
/// aside).
fn bypasses(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| {
            let code = line.trim_start();
            !code.starts_with('#')
                && (code.contains("target/debug") || code.contains("target/release"))
                && !code.contains("CARGO_TARGET_DIR")
        })
        .collect()
}

fn files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, found);
        } else if path
            .extension()
            .is_none_or(|ext| ext == "sh" || ext == "py")
        {
            found.push(path);
        }
    }
}

#[test]
fn scripts_and_examples_find_the_binary_through_cargo_target_dir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in ["scripts", "examples", ".ci"] {
        files(&root.join(dir), &mut found);
    }
    assert!(found.len() > 10, "{found:?}");
    let offending: Vec<String> = found
        .iter()
        .flat_map(|path| {
            let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
            bypasses(&text)
                .into_iter()
                .map(|line| format!("{}: {line}", path.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(offending.is_empty(), "{offending:#?}");
}

/// The check itself finds a bypass, and lets the two right ways and comments through.
#[test]
fn a_planted_bypass_is_found() {
    let planted = "bin=target/debug/haproxy-autoscaler\n\
                   # defaults: target/release/haproxy-autoscaler\n\
                   bin=$HAPROXY_AUTOSCALER_BIN\n\
                   binary=${2:-${CARGO_TARGET_DIR:-target}/release/haproxy-autoscaler}\n\
                   default=os.path.join(ROOT, \"target/release/x\")";
    assert_eq!(
        bypasses(planted),
        [
            "bin=target/debug/haproxy-autoscaler",
            "default=os.path.join(ROOT, \"target/release/x\")"
        ]
    );
}
