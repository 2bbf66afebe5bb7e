//! The rule the layout stands for (ARCHITECTURE.md): the decision core and the data it works on
//! reach no I/O. A file under `src/decide/` or `src/model/` that names an I/O module, a clock,
//! the async runtime, the cloud, HAProxy's runtime or the state store fails this test, and so
//! does one that imports a part of the crate other than those it may use.

use std::path::{Path, PathBuf};

/// Names no file of the pure core may contain (outside comments).
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::thread",
    "std::{",
    "SystemTime",
    "Instant",
    "::now(",
    "tracing",
    "super::super::",
    "crate::cloud",
    "crate::haproxy",
    "crate::store",
    "crate::command",
    "crate::http",
    "crate::fs_atomic",
    "crate::probe",
    "crate::notify",
    "crate::observe",
    "crate::apply",
    "crate::app",
    "aws_sdk",
    "aws_config",
    "hyper",
    "rustix",
    "fs2",
    "tempfile",
    "futures_util",
    "async fn",
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every (file:line, what it names) in `dir` that breaks the rule: a forbidden name, or a
/// `crate::` path outside `allowed`.
fn violations(root: &Path, dir: &str, allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(&root.join(dir)) {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for name in FORBIDDEN {
                if code.contains(name) {
                    found.push(format!("{shown}:{}: names `{name}`: {line}", number + 1));
                }
            }
            for (at, _) in code.match_indices("crate::") {
                let part: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !allowed.contains(&part.as_str()) {
                    found.push(format!(
                        "{shown}:{}: imports `crate::{part}`, not one of {allowed:?}: {line}",
                        number + 1
                    ));
                }
            }
        }
    }
    found
}

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn decide_imports_no_io() {
    let found = violations(
        crate_root(),
        "src/decide",
        &["decide", "model", "config", "testing"],
    );
    assert!(
        found.is_empty(),
        "the decision core must stay pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn model_is_plain_data() {
    let found = violations(crate_root(), "src/model", &["model"]);
    assert!(
        found.is_empty(),
        "the model must stay plain data:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rule_catches_what_it_forbids() {
    // The checker itself, on a file written for it: a rule that matches nothing proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("src/decide");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(
        sub.join("x.rs"),
        "//! mentions std::fs in a comment only\nuse std::fs;\nuse crate::cloud::Provider;\n",
    )
    .unwrap();
    let found = violations(dir.path(), "src/decide", &["decide", "model", "config"]);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("x.rs:2: names `std::fs`"), "{found:#?}");
}

/// `simulate` replays traffic through the decision core alone: it reaches neither the cloud nor
/// HAProxy nor the state store (it reads its trace and config, and writes only the plot).
#[test]
fn simulate_reaches_no_cloud_and_no_haproxy() {
    let root = crate_root();
    let mut found = Vec::new();
    for file in rust_files(&root.join("src/simulate")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in [
                "crate::cloud",
                "crate::haproxy",
                "crate::observe",
                "crate::apply",
                "crate::store",
                "crate::command",
                "tokio",
                "std::net",
                "std::process",
            ] {
                if line.contains(name) {
                    found.push(format!("{}:{}: names `{name}`", file.display(), number + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// What names a real HAProxy in a test: its binary, the live master-worker HAProxy, or the
/// variable that picks the version.
const NAMES_HAPROXY: &[&str] = &[
    "haproxy()",
    "LiveHaproxy",
    "\"HAPROXY\"",
    "find_program(\"haproxy\"",
];

/// Every (file:line, what it names) of a test outside `tests/integration/haproxy/` (the module
/// `scripts/test.sh` runs on every HAProxy version) that names a real HAProxy. `util.rs` defines
/// the names and this file lists them.
fn haproxy_outside_the_matrix(root: &Path) -> Vec<String> {
    let tests = root.join("tests/integration");
    let mut found = Vec::new();
    for file in rust_files(&tests) {
        let relative = file.strip_prefix(&tests).unwrap();
        if relative.starts_with("haproxy")
            || relative == Path::new("util.rs")
            || relative == Path::new("architecture.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in NAMES_HAPROXY {
                if line.contains(name) {
                    found.push(format!("{}:{}: names `{name}`", file.display(), number + 1));
                }
            }
        }
    }
    found
}

/// Issue 27: every test that talks to a real HAProxy runs on each version of the matrix, because
/// it lives in the one module `scripts/test.sh` runs again per version.
#[test]
fn tests_that_talk_to_haproxy_are_in_the_version_matrix() {
    let found = haproxy_outside_the_matrix(crate_root());
    assert!(
        found.is_empty(),
        "a test that names a real HAProxy belongs in tests/integration/haproxy/, which runs on every version:\n{}",
        found.join("\n")
    );
    let script = std::fs::read_to_string(crate_root().join("scripts/test.sh")).unwrap();
    assert!(
        script.contains("--test integration --") && script.contains(" haproxy::"),
        "scripts/test.sh runs the `haproxy::` tests on each HAProxy version"
    );

    // The checker itself, on a test written for it.
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("tests/integration");
    std::fs::create_dir_all(tests.join("haproxy")).unwrap();
    std::fs::write(
        tests.join("elsewhere.rs"),
        "// haproxy() in a comment\nlet path = crate::util::haproxy();\n",
    )
    .unwrap();
    std::fs::write(
        tests.join("haproxy/fine.rs"),
        "let live = LiveHaproxy::start();\n",
    )
    .unwrap();
    let found = haproxy_outside_the_matrix(dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("elsewhere.rs:2: names `haproxy()`"),
        "{found:#?}"
    );
}

/// The lines of `src/` (outside `allowed` files, test modules and comments) that contain one
/// of `calls`.
fn calls_outside(root: &Path, calls: &[&str], allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(&root.join("src")) {
        let relative = file.strip_prefix(root).unwrap().display().to_string();
        if allowed.contains(&relative.as_str()) || relative.starts_with("src/testing") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            // Test modules come last in a file; a file that is one says so first.
            if line.trim_start().starts_with("#[cfg(test)]")
                || line.trim_start().starts_with("#![cfg(test)]")
            {
                break;
            }
            if line.trim_start().starts_with("//") || line.contains("sync_all") {
                continue;
            }
            for call in calls {
                if line.contains(call) {
                    found.push(format!("{relative}:{}: `{call}`", number + 1));
                }
            }
        }
    }
    found
}

/// Reading a file by itself. (Opening a folder to fsync it is not a read.)
const FILE_READS: &[&str] = &["fs::read(", "fs::read_to_string(", "File::open("];

/// Reading from the network (or any stream) by itself: a socket's answer, an HTTP body.
const STREAM_READS: &[&str] = &[
    "read_to_end(",
    "read_to_string(",
    ".read(&mut",
    "read_buf(",
    "read_exact(",
    "read_line(",
    "next_line(",
    ".collect().await",
    ".body.collect",
    "into_body()",
    "Limited::new",
    "client.request(",
    "BodyExt",
];

/// Writing a file by itself.
const FILE_WRITES: &[&str] = &[
    "fs::write(",
    "File::create(",
    "OpenOptions",
    "generate_to(",
    "fs::copy(",
    ".persist(",
    "persist_noclobber(",
    "NamedTempFile",
    "tempfile::Builder",
];

/// Issue 29, class 1: every file the tool writes goes through `fs_atomic.rs`, the one guard that
/// never replaces nor opens a FIFO, a device, a socket or a folder (at the path or at the end of
/// its symlinks), writes atomically, and leaves other writers' temporary files alone. A new
/// writer that creates or opens a file itself fails here. (`failpoint.rs` marks a reached fail
/// point for the tests, only in builds with the `failpoints` feature.)
#[test]
fn every_file_write_goes_through_the_one_guard() {
    let found = calls_outside(
        crate_root(),
        FILE_WRITES,
        &["src/fs_atomic.rs", "src/failpoint.rs"],
    );
    assert!(
        found.is_empty(),
        "write through fs_atomic::write / Staged instead:\n{}",
        found.join("\n")
    );
}

/// Issue 29, class 2: every file the tool reads goes through the bounded readers of
/// `fs_atomic.rs` (regular files only, a size cap, so a FIFO, `/dev/zero` or a 2 GB file costs
/// a bounded time and memory). A new reader that opens a file itself fails here.
#[test]
fn every_file_read_goes_through_the_bounded_readers() {
    let found = calls_outside(crate_root(), FILE_READS, &["src/fs_atomic.rs"]);
    assert!(
        found.is_empty(),
        "read through fs_atomic::read_regular / read_text instead:\n{}",
        found.join("\n")
    );
}

/// Issue 29, class 2: every byte read from the network goes through `exchange.rs` (a size cap
/// and a deadline over the whole exchange, so an endless, length-less or trickled answer costs
/// a bounded time and memory). A command's pipes are read by `command.rs`, under its own caps
/// and deadline. A new reader that reads a socket or a body itself fails here.
#[test]
fn every_network_read_goes_through_the_bounded_exchange() {
    let found = calls_outside(
        crate_root(),
        STREAM_READS,
        &["src/exchange.rs", "src/fs_atomic.rs", "src/command.rs"],
    );
    assert!(
        found.is_empty(),
        "read through exchange::read_stream / read_body / request instead:\n{}",
        found.join("\n")
    );
}

/// Printing by itself.
const PRINTS: &[&str] = &[
    "io::stdout()",
    "io::stderr()",
    "println!",
    "print!(",
    "eprintln!",
    "eprint!(",
    // The debugging macro, spelled in two halves so that this list is not taken for a leftover.
    concat!("dbg", "!("),
];

/// Issue 29, class 4: everything printed goes through `report.rs`' writers, which make every line
/// printable and every JSON document's strings escape what a terminal acts on; log lines through
/// `logging.rs`' escaping writer. A new printer fails here, and so does a use of the two raw
/// writers outside the one place each is for: `status`' coloured table, the generated manual and
/// completions.
#[test]
fn everything_printed_goes_through_the_escaping_writers() {
    // `failpoint.rs` prints one constant line before it aborts, in test builds only.
    let mut found = calls_outside(
        crate_root(),
        PRINTS,
        &["src/report.rs", "src/logging.rs", "src/failpoint.rs"],
    );
    found.extend(calls_outside(
        crate_root(),
        &["out_styled("],
        &["src/report.rs", "src/status.rs"],
    ));
    found.extend(calls_outside(
        crate_root(),
        &["out_generated("],
        &["src/report.rs", "src/manual.rs"],
    ));
    assert!(
        found.is_empty(),
        "print through report::out / say / out_json instead:\n{}",
        found.join("\n")
    );
}

/// The reader, writer and printer rules catch what they forbid, and only outside the helpers and test modules.
#[test]
fn the_reader_and_writer_rules_catch_a_bypass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src/store")).unwrap();
    std::fs::write(
        dir.path().join("src/store/new.rs"),
        "// fs::read( in a comment\nlet text = std::fs::read_to_string(path)?;\n\
         let body = response.into_body().collect().await?;\n#[cfg(test)]\nmod tests {\n\
         let _ = std::fs::read(path);\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/exchange.rs"),
        "let n = stream.read_to_end(&mut buffer).await?;\n",
    )
    .unwrap();
    let files = calls_outside(dir.path(), FILE_READS, &["src/fs_atomic.rs"]);
    assert_eq!(files, ["src/store/new.rs:2: `fs::read_to_string(`"]);
    std::fs::write(
        dir.path().join("src/notify.rs"),
        "let file = std::fs::OpenOptions::new().append(true).open(path)?;\n",
    )
    .unwrap();
    let writes = calls_outside(dir.path(), FILE_WRITES, &["src/fs_atomic.rs"]);
    assert_eq!(writes, ["src/notify.rs:1: `OpenOptions`"]);
    std::fs::write(
        dir.path().join("src/hosts.rs"),
        "println!(\"{line}\");\nlet _ = writeln!(std::io::stdout().lock(), \"{x}\");\n",
    )
    .unwrap();
    let prints = calls_outside(dir.path(), PRINTS, &["src/report.rs"]);
    assert_eq!(
        prints,
        [
            "src/hosts.rs:1: `println!`",
            "src/hosts.rs:2: `io::stdout()`"
        ]
    );
    let streams = calls_outside(dir.path(), STREAM_READS, &["src/exchange.rs"]);
    assert_eq!(
        streams,
        [
            "src/store/new.rs:2: `read_to_string(`",
            "src/store/new.rs:3: `.collect().await`",
            "src/store/new.rs:3: `into_body()`",
        ]
    );
}

/// The module path of a file under `src/`: `decide/plan.rs` → `decide::plan`, `decide/mod.rs`
/// → `decide`, `lib.rs` → the root.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// A file's code as the import rules read it: no comment lines, no trailing comments, nothing
/// from its test module on (or nothing at all for a file that is a test module).
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#![cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment, when the `//` is not inside a string.
        let kept = line
            .match_indices("//")
            .find(|(at, _)| line[..*at].matches('"').count() % 2 == 0)
            .map_or(line, |(at, _)| &line[..at]);
        code.push_str(kept);
        code.push('\n');
    }
    code
}

/// The paths a use tree starting at `text[at..]` names, each from the crate's root: `base` is
/// where it starts (`crate`, `super`, `self` resolved by the caller). `a::{b, c::d}` gives
/// `a::b` and `a::c::d`; `a::*` gives `a`.
fn use_tree(text: &[u8], at: &mut usize, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    let skip_space = |at: &mut usize| {
        while *at < text.len() && text[*at].is_ascii_whitespace() {
            *at += 1;
        }
    };
    let mut path = base;
    loop {
        skip_space(at);
        match text.get(*at) {
            Some(b'{') => {
                *at += 1;
                loop {
                    skip_space(at);
                    match text.get(*at) {
                        Some(b'}') => {
                            *at += 1;
                            return;
                        }
                        Some(b',') => *at += 1,
                        None => return,
                        _ => use_tree(text, at, path.clone(), out),
                    }
                }
            }
            Some(b'*') => {
                *at += 1;
                out.push(path);
                return;
            }
            _ => {}
        }
        let start = *at;
        while *at < text.len() && (text[*at].is_ascii_alphanumeric() || text[*at] == b'_') {
            *at += 1;
        }
        let ident = std::str::from_utf8(&text[start..*at]).unwrap().to_owned();
        match ident.as_str() {
            "" => {
                out.push(path);
                return;
            }
            "super" => {
                path.pop();
            }
            "self" => {}
            _ => path.push(ident),
        }
        if text[*at..].starts_with(b"::") {
            *at += 2;
        } else {
            out.push(path);
            return;
        }
    }
}

/// The crate as the import rule sees it: each file's module, its code, and what each module
/// re-exports (`pub use child::Item`), so that `crate::model::Instance` is an import of
/// `model/instance.rs`, not of `model/mod.rs`.
struct Imports {
    /// Module path → file (relative to `src/`).
    files: std::collections::BTreeMap<Vec<String>, String>,
    /// File → the paths its code names, each from the crate's root, and whether it names them
    /// in a re-export.
    named: std::collections::BTreeMap<String, Vec<(Vec<String>, bool)>>,
    /// (module, name) → the path it re-exports.
    reexports: std::collections::BTreeMap<(Vec<String>, String), Vec<String>>,
}

impl Imports {
    fn read(src: &Path) -> Imports {
        let mut imports = Imports {
            files: Default::default(),
            named: Default::default(),
            reexports: Default::default(),
        };
        let mut codes = Vec::new();
        for file in rust_files(src) {
            let relative = file.strip_prefix(src).unwrap().to_owned();
            let module = module_of(&relative);
            let name = relative.display().to_string();
            imports.files.insert(module.clone(), name.clone());
            codes.push((
                name,
                module,
                code_of(&std::fs::read_to_string(&file).unwrap()),
            ));
        }
        for (name, module, code) in codes {
            let bytes = code.as_bytes();
            let mut named = Vec::new();
            // Paths from `crate::`, `super::`, `self::` anywhere in the code.
            for keyword in ["crate::", "super::", "self::"] {
                for (at, _) in code.match_indices(keyword) {
                    let before = bytes.get(at.wrapping_sub(1)).copied().unwrap_or(b' ');
                    if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                        continue;
                    }
                    let base = if keyword == "crate::" {
                        Vec::new()
                    } else {
                        let mut base = module.clone();
                        if keyword == "super::" {
                            base.pop();
                        }
                        base
                    };
                    let mut cursor = at + keyword.len();
                    let mut paths = Vec::new();
                    use_tree(bytes, &mut cursor, base, &mut paths);
                    let reexport = Self::in_pub_use(&code, at);
                    named.extend(paths.into_iter().map(|path| (path, reexport)));
                }
            }
            // `use child::...` (a path relative to this module), in `use` statements.
            for (at, _) in code.match_indices("use ") {
                let before = bytes.get(at.wrapping_sub(1)).copied().unwrap_or(b'\n');
                if !(before.is_ascii_whitespace() || before == b')') {
                    continue;
                }
                let mut cursor = at + "use ".len();
                let mut paths = Vec::new();
                use_tree(bytes, &mut cursor, module.clone(), &mut paths);
                let reexport = Self::in_pub_use(&code, at + "use ".len());
                for path in paths {
                    let child = path.get(module.len()).cloned();
                    let mut candidate = module.clone();
                    candidate.extend(child);
                    if candidate.len() > module.len() && imports.files.contains_key(&candidate) {
                        named.push((path, reexport));
                    }
                }
            }
            for (path, reexport) in &named {
                if *reexport && let Some(last) = path.last() {
                    imports
                        .reexports
                        .insert((module.clone(), last.clone()), path.clone());
                }
            }
            imports.named.insert(name, named);
        }
        imports
    }

    /// Whether the path at `at` is part of a `pub use` / `pub(crate) use` statement: the
    /// statement's text up to `at` (since the last `;`, attribute lines left out) starts so.
    fn in_pub_use(code: &str, at: usize) -> bool {
        let start = code[..at].rfind(';').map_or(0, |end| end + 1);
        let head: Vec<&str> = code[start..at]
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect();
        let head = head.join(" ");
        let head = head.trim_start();
        head.starts_with("pub use ") || head.starts_with("pub(crate) use ")
    }

    /// The file a path names: its longest module prefix, or the file a re-export there leads to.
    fn resolve(&self, path: &[String], depth: usize) -> Option<&String> {
        let prefix = (0..=path.len())
            .rev()
            .find(|n| self.files.contains_key(&path[..*n]))?;
        let module = path[..prefix].to_vec();
        if depth < 8
            && let Some(name) = path.get(prefix)
            && let Some(target) = self.reexports.get(&(module.clone(), name.clone()))
        {
            let mut through = target.clone();
            through.extend(path[prefix + 1..].iter().cloned());
            if through != path {
                return self.resolve(&through, depth + 1);
            }
        }
        self.files.get(&module)
    }

    /// Each file's imports of other files (re-exports are structure, not imports).
    fn edges(&self) -> std::collections::BTreeMap<&String, std::collections::BTreeSet<&String>> {
        let mut edges = std::collections::BTreeMap::new();
        for (file, named) in &self.named {
            let targets: &mut std::collections::BTreeSet<&String> = edges.entry(file).or_default();
            for (path, reexport) in named {
                if *reexport {
                    continue;
                }
                if let Some(target) = self.resolve(path, 0)
                    && target != file
                    && target != "lib.rs"
                    && target != "main.rs"
                {
                    targets.insert(target);
                }
            }
        }
        edges
    }
}

/// The import cycles between the files of `src` (strongly connected components of more than
/// one file), each sorted.
fn import_cycles(src: &Path) -> Vec<Vec<String>> {
    let imports = Imports::read(src);
    let edges = imports.edges();
    let nodes: Vec<&String> = edges.keys().copied().collect();
    // Tarjan's algorithm, iteratively enough for a few hundred files.
    struct Search<'a> {
        edges: &'a std::collections::BTreeMap<&'a String, std::collections::BTreeSet<&'a String>>,
        index: std::collections::BTreeMap<&'a String, usize>,
        low: std::collections::BTreeMap<&'a String, usize>,
        stack: Vec<&'a String>,
        on_stack: std::collections::BTreeSet<&'a String>,
        cycles: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a String) {
            let next = self.index.len();
            self.index.insert(node, next);
            self.low.insert(node, next);
            self.stack.push(node);
            self.on_stack.insert(node);
            for &target in self.edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(target) {
                    self.visit(target);
                    let low = self.low[node].min(self.low[target]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(target) {
                    let low = self.low[node].min(self.index[target]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.clone());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.cycles.push(component);
                }
            }
        }
    }
    let mut search = Search {
        edges: &edges,
        index: Default::default(),
        low: Default::default(),
        stack: Vec::new(),
        on_stack: Default::default(),
        cycles: Vec::new(),
    };
    for node in nodes {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    search.cycles.sort();
    search.cycles
}

/// Issue 30: no import cycle between files. Each group below imports itself through the
/// others; break it by moving what both sides need down a layer (see ARCHITECTURE.md).
#[test]
fn no_import_cycle_between_files() {
    let cycles = import_cycles(&crate_root().join("src"));
    assert!(
        cycles.is_empty(),
        "import cycles:\n{}",
        cycles
            .iter()
            .map(|cycle| cycle.join(" ↔ "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The cycle rule finds a planted cycle, through a grouped import and through a re-export, and
/// not a parent that re-exports its children.
#[test]
fn the_cycle_rule_finds_a_planted_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("model")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod model;\n").unwrap();
    std::fs::write(
        src.join("model/mod.rs"),
        "mod token;\nmod text;\npub use token::is_token;\n",
    )
    .unwrap();
    std::fs::write(src.join("model/token.rs"), "pub fn is_token() {}\n").unwrap();
    std::fs::write(
        src.join("model/text.rs"),
        "use crate::model::is_token; // a comment naming crate::a\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::{model::is_token, b::{B, C}};\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B;\n").unwrap();
    assert!(import_cycles(src).is_empty(), "{:?}", import_cycles(src));
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\nfn f() { crate::a::g() }\n#[cfg(test)]\nmod tests { use crate::model::text; }\n",
    )
    .unwrap();
    assert_eq!(import_cycles(src), [["a.rs", "b.rs"]]);
    // Through a re-export: the token file importing the text file, which imports the token
    // file by way of model's `pub use`.
    std::fs::write(src.join("b.rs"), "pub struct B;\n").unwrap();
    std::fs::write(
        src.join("model/token.rs"),
        "use super::text;\npub fn is_token() {}\n",
    )
    .unwrap();
    assert_eq!(import_cycles(src), [["model/text.rs", "model/token.rs"]]);
}

/// Whether `file` (relative to `src/`) is one of `patterns`: a file name, or a folder ending in
/// `/` for every file under it.
fn in_any(file: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|pattern| {
        if pattern.ends_with('/') {
            file.starts_with(pattern)
        } else {
            file == *pattern
        }
    })
}

/// The files of `config/` that hold its types: plain data, which the decision core may import.
/// The rest of `config/` reads the outside world (load.rs) or turns what it read into the types
/// (raw.rs, validate.rs, validate_scaling.rs).
const CONFIG_TYPES: &[&str] = &["config/mod.rs", "config/scaling.rs"];

/// The files `from` (a file under `src/`) imports that are outside `allowed` (file names, or
/// folders ending in `/`).
fn imports_outside(src: &Path, from_folder: &str, allowed: &[&str]) -> Vec<String> {
    let imports = Imports::read(src);
    let mut found = Vec::new();
    for (file, targets) in imports.edges() {
        if !file.starts_with(from_folder) {
            continue;
        }
        for target in targets {
            if !in_any(target, allowed) {
                found.push(format!("{file} imports {target}"));
            }
        }
    }
    found
}

/// Issue 30: the decision core imports only itself, the model and the config's types: never the
/// config's loading or validation (they read files), never anything else.
#[test]
fn decide_imports_the_config_types_only() {
    let mut allowed = vec!["decide/", "model/"];
    allowed.extend(CONFIG_TYPES);
    let found = imports_outside(&crate_root().join("src"), "decide/", &allowed);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Issue 30: the config's types are plain data: no I/O, no clock, no logging, and no import of
/// the crate but the model and the other types file.
#[test]
fn config_types_are_plain_data() {
    let mut found = Vec::new();
    for file in CONFIG_TYPES {
        let text = std::fs::read_to_string(crate_root().join("src").join(file)).unwrap();
        let code = code_of(&text);
        for name in FORBIDDEN {
            if code.contains(name) {
                found.push(format!("{file}: names `{name}`"));
            }
        }
    }
    let mut allowed = vec!["model/"];
    allowed.extend(CONFIG_TYPES);
    for file in CONFIG_TYPES {
        found.extend(
            imports_outside(&crate_root().join("src"), file, &allowed)
                .into_iter()
                .filter(|line| line.starts_with(file)),
        );
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The two rules above catch a planted import: `decide/` reaching config loading, and a config
/// types file reaching the file system.
#[test]
fn the_config_rules_catch_a_planted_import() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("decide")).unwrap();
    std::fs::create_dir_all(src.join("config")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod config;\nmod decide;\n").unwrap();
    std::fs::write(src.join("config/mod.rs"), "mod load;\npub struct Config;\n").unwrap();
    std::fs::write(src.join("config/load.rs"), "pub fn read() {}\n").unwrap();
    std::fs::write(src.join("decide/mod.rs"), "use crate::config::Config;\n").unwrap();
    let mut allowed = vec!["decide/", "model/"];
    allowed.extend(CONFIG_TYPES);
    assert!(imports_outside(src, "decide/", &allowed).is_empty());
    std::fs::write(
        src.join("decide/mod.rs"),
        "use crate::config::Config;\nfn f() { crate::config::load::read() }\n",
    )
    .unwrap();
    assert_eq!(
        imports_outside(src, "decide/", &allowed),
        ["decide/mod.rs imports config/load.rs"]
    );
    std::fs::write(src.join("config/mod.rs"), "mod load;\nuse crate::decide;\n").unwrap();
    assert_eq!(
        imports_outside(src, "config/mod.rs", &["model/", "config/mod.rs"]),
        ["config/mod.rs imports decide/mod.rs"]
    );
}

/// Issue 30: proptest reads a source file's saved failure seeds from the parallel path under
/// `proptest-regressions/` (`src/decide/policy.rs` → `proptest-regressions/decide/policy.txt`).
/// A seed file left at a path no longer holding property tests (after a move) is never
/// replayed: each must sit beside a source file that has them.
#[test]
fn saved_proptest_seeds_are_where_proptest_reads_them() {
    let seeds = crate_root().join("proptest-regressions");
    let mut files = Vec::new();
    let mut stack = vec![seeds.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty());
    for file in files {
        let relative = file.strip_prefix(&seeds).unwrap().with_extension("rs");
        let source = crate_root().join("src").join(&relative);
        let text = std::fs::read_to_string(&source).unwrap_or_default();
        assert!(
            text.contains("proptest!"),
            "{} is read for src/{}, which has no property test",
            file.display(),
            relative.display()
        );
    }
}

/// The commands (layer 3) and above: the only files that may import the top-level error.
const COMMANDS_AND_ABOVE: &[&str] = &[
    "main.rs",
    "app.rs",
    "reconcile.rs",
    "check.rs",
    "status.rs",
    "history.rs",
    "saved_plan.rs",
    "verbs/",
    "hosts/",
    "init.rs",
    "manual.rs",
    "simulate/",
];

/// Issue 30: only the commands and above import the top-level `error.rs`; the steps, the
/// adapters and the core return their own errors, which it wraps (so it imports them, never the
/// other way round).
#[test]
fn only_the_commands_import_the_top_level_error() {
    let imports = Imports::read(&crate_root().join("src"));
    let mut found = Vec::new();
    for (file, targets) in imports.edges() {
        if !in_any(file, COMMANDS_AND_ABOVE) && targets.iter().any(|target| *target == "error.rs") {
            found.push(file.clone());
        }
    }
    assert!(
        found.is_empty(),
        "import the top-level error, below the commands: {found:?}"
    );
}

/// The layer of a file under `src/` (ARCHITECTURE.md, "The layers"): 1 is the top. `None` for
/// the crate root and the test helpers.
fn layer_of(file: &str) -> Option<u8> {
    let in_any = |patterns: &[&str]| in_any(file, patterns);
    Some(if file == "lib.rs" || in_any(&["testing.rs", "testing/"]) {
        return None;
    } else if file == "main.rs" {
        1
    } else if file == "app.rs" {
        2
    } else if in_any(&[
        "reconcile.rs",
        "check.rs",
        "status.rs",
        "history.rs",
        "saved_plan.rs",
        "verbs/",
        "hosts/",
        "init.rs",
        "manual.rs",
        "simulate/",
        "error.rs",
    ]) {
        3
    } else if in_any(&[
        "observe.rs",
        "apply/",
        "report.rs",
        "notify.rs",
        "metrics.rs",
        "external.rs",
        "probe.rs",
    ]) {
        4
    } else if in_any(&["decide/"]) {
        6
    } else if in_any(&[
        "config/mod.rs",
        "config/scaling.rs",
        "model/",
        "error_chain.rs",
        "cli.rs",
    ]) {
        7
    } else {
        // The adapters: cloud/, haproxy/, store/, command, http, exchange, fs_atomic, logging,
        // failpoint, and the config's loading and validation.
        5
    })
}

/// Issue 30: every import goes down the layers (or stays in its own): a step never imports a
/// command, an adapter never a step, the core never an adapter.
#[test]
fn imports_go_down_the_layers() {
    let imports = Imports::read(&crate_root().join("src"));
    let mut found = Vec::new();
    for (file, targets) in imports.edges() {
        let Some(from) = layer_of(file) else { continue };
        for target in targets {
            if let Some(to) = layer_of(target)
                && to < from
            {
                found.push(format!(
                    "{file} (layer {from}) imports {target} (layer {to})"
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
