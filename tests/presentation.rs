//! What a reader meets first: every backend kind drawn in its own colour, a README short enough
//! to finish whose every link leads somewhere.

use cvm::report::charts::backend_color;
use cvm::scenario::BackendKind;

#[test]
fn every_backend_kind_has_its_own_colour() {
    let colours: Vec<_> = BackendKind::ALL
        .iter()
        .map(|k| (k.as_str(), backend_color(k.as_str())))
        .collect();
    for (i, (a, ca)) in colours.iter().enumerate() {
        for (b, cb) in &colours[i + 1..] {
            assert_ne!(ca, cb, "{a} and {b} share a colour");
        }
    }
}

/// The README stays short and every page it sends a reader to exists; each `docs/` page is one
/// click from it, and the links of each page resolve too.
#[test]
fn the_readme_is_short_and_every_link_resolves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 160, "README.md has {lines} lines");
    let linked = check_links(root, "README.md");
    let docs = std::fs::read_dir(root.join("docs")).unwrap();
    let mut pages = 0;
    for page in docs {
        let name = page.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".md") {
            continue;
        }
        pages += 1;
        let path = format!("docs/{name}");
        assert!(linked.contains(&path), "README.md does not link {path}");
        check_links(root, &path);
    }
    assert!(pages >= 10, "{pages} pages in docs/");
}

/// Every relative link target of the Markdown file at `path` (under `root`) exists; the
/// targets, relative to `root`.
fn check_links(root: &std::path::Path, path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(path)).unwrap();
    let dir = std::path::Path::new(path).parent().unwrap();
    let mut targets = Vec::new();
    for (at, _) in text.match_indices("](") {
        let rest = &text[at + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split('#').next().unwrap();
        if target.is_empty() || target.contains("://") {
            continue;
        }
        let resolved = dir.join(target);
        assert!(
            root.join(&resolved).exists(),
            "{path} links {target}, which does not exist"
        );
        // `docs/../README.md` and `README.md` are the same page.
        let normal: Vec<_> = resolved.components().fold(Vec::new(), |mut parts, c| {
            match c {
                std::path::Component::ParentDir => {
                    parts.pop();
                }
                std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                _ => {}
            }
            parts
        });
        targets.push(normal.join("/"));
    }
    targets
}

/// The pages `cvm --help` points to exist.
#[test]
fn the_docs_pages_the_help_names_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cvm"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let named: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
        .filter(|w| w.starts_with("docs/") && w.ends_with(".md"))
        .collect();
    assert!(named.len() >= 5, "{help}");
    for page in named {
        assert!(
            root.join(page).is_file(),
            "--help names {page}, which does not exist"
        );
    }
}
