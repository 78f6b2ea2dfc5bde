//! Disk footprint by layer: bytes allocated on disk for each layer's files (directories walked),
//! with a file reachable by several paths or hard links counted once across *all* layers, so the
//! layers add up to the total.
//!
//! The one rule every backend follows: a layer is the executables it needs, their shared
//! libraries and the data files they read, as the backend lists them in
//! [`DiskLayers`](crate::backend::DiskLayers). A file two layers name is counted once, in the
//! lowest layer of the stack (layers are iterated bottom-up, the order of [`Layer`]), and is
//! reported as shared, so a reader sees what moved. A directory a layer names (a user's base
//! rootfs, Docker's stored image) holds only what no layer names itself, so the workload's
//! binary inside a base rootfs stays in `app`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cvm_proto::metric::Layer;

/// The backend configuration key listing the files two layers share.
pub const DISK_SHARED_KEY: &str = "disk_shared";

/// A file named by more than one layer: counted in `counted_in`, also needed by `also`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    pub path: PathBuf,
    pub counted_in: Layer,
    pub also: Vec<Layer>,
}

/// Bytes on disk per layer (bottom-up), their total, and the files two layers share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub per_layer: Vec<(Layer, u64)>,
    pub total: u64,
    pub shared: Vec<SharedFile>,
}

impl Footprint {
    /// The shared files as one line for a backend's configuration (`none` when there are none).
    pub fn shared_summary(&self) -> String {
        if self.shared.is_empty() {
            return "none".into();
        }
        self.shared
            .iter()
            .map(|s| {
                let also: Vec<&str> = s.also.iter().map(|l| l.name()).collect();
                format!(
                    "{} (in {}, also {})",
                    s.path.display(),
                    s.counted_in.name(),
                    also.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Counts `layers` by the rule above.
pub fn footprint(layers: &BTreeMap<Layer, Vec<PathBuf>>) -> Footprint {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut bytes: BTreeMap<Layer, u64> = layers.keys().map(|l| (*l, 0)).collect();
    // Which layer claimed each named file, and which path it was named by there.
    let mut owner: HashMap<(u64, u64), usize> = HashMap::new();
    let mut shared: Vec<SharedFile> = Vec::new();
    // Named files claim their inodes first, bottom-up; then directories are walked for the rest.
    for (layer, paths) in layers {
        for p in paths.iter().filter(|p| !p.is_dir()) {
            let Ok(meta) = std::fs::metadata(p) else {
                continue;
            };
            let key = (meta.dev(), meta.ino());
            if let Some(&i) = owner.get(&key) {
                let entry: &mut SharedFile = &mut shared[i];
                if entry.counted_in != *layer && !entry.also.contains(layer) {
                    entry.also.push(*layer);
                }
                continue;
            }
            owner.insert(key, shared.len());
            shared.push(SharedFile {
                path: p.clone(),
                counted_in: *layer,
                also: Vec::new(),
            });
            *bytes.entry(*layer).or_default() += walk(p, &mut seen);
        }
    }
    shared.retain(|s| !s.also.is_empty());
    for (layer, paths) in layers {
        for p in paths.iter().filter(|p| p.is_dir()) {
            *bytes.entry(*layer).or_default() += walk(p, &mut seen);
        }
    }
    let total = bytes.values().sum();
    Footprint {
        per_layer: bytes.into_iter().collect(),
        total,
        shared,
    }
}

fn walk(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    // Follow a symlink named directly (e.g. /usr/bin/qemu-system-x86_64 → ...), not inside trees.
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if !seen.insert((meta.dev(), meta.ino())) {
        return 0;
    }
    if meta.is_dir() {
        let mut total = meta.blocks() * 512;
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_symlink() => {
                        if let Ok(m) = std::fs::symlink_metadata(&p) {
                            if seen.insert((m.dev(), m.ino())) {
                                total += m.blocks() * 512;
                            }
                        }
                    }
                    _ => total += walk(&p, seen),
                }
            }
        }
        total
    } else {
        meta.blocks() * 512
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_counts_once_in_the_lowest_layer_that_lists_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(&a, dir.path().join("a2")).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("b"), vec![2u8; 8 * 1024]).unwrap();

        let mut layers = BTreeMap::new();
        layers.insert(Layer::App, vec![a.clone()]);
        layers.insert(Layer::Libs, vec![dir.path().join("a2"), sub.clone()]);
        let fp = footprint(&layers);
        let (per_layer, total) = (fp.per_layer.clone(), fp.total);
        let app = per_layer.iter().find(|(l, _)| *l == Layer::App).unwrap().1;
        let libs = per_layer.iter().find(|(l, _)| *l == Layer::Libs).unwrap().1;
        // Counted here from each inode's own allocation, independently of `footprint`.
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        // a2 is the same inode as a, and libs is below app in the stack: the file is counted
        // once, in libs, the lowest layer that needs it.
        assert_eq!(libs, blocks(&a) + blocks(&sub) + blocks(&sub.join("b")));
        assert_eq!(app, 0);
        assert_eq!(total, blocks(&a) + blocks(&sub) + blocks(&sub.join("b")));
        assert_eq!(footprint(&BTreeMap::new()).total, 0);
        // Named by both layers: reported as shared, counted in libs, also needed by app.
        assert_eq!(
            fp.shared,
            vec![SharedFile {
                path: dir.path().join("a2"),
                counted_in: Layer::Libs,
                also: vec![Layer::App],
            }]
        );
        assert!(fp.shared_summary().contains("(in libs, also app)"));
    }

    #[test]
    fn a_binary_inside_a_base_rootfs_stays_in_app() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("bin/tool");
        std::fs::create_dir_all(app.parent().unwrap()).unwrap();
        std::fs::write(&app, vec![1u8; 32 * 1024]).unwrap();
        std::fs::write(dir.path().join("lib.so"), vec![2u8; 8 * 1024]).unwrap();
        let mut layers = BTreeMap::new();
        layers.insert(Layer::App, vec![app.clone()]);
        // The base rootfs as a whole is the libraries layer, and it contains the app binary.
        layers.insert(Layer::Libs, vec![dir.path().to_path_buf()]);
        let fp = footprint(&layers);
        // A directory's content is not "named": nothing is reported as shared.
        assert!(fp.shared.is_empty());
        assert_eq!(fp.shared_summary(), "none");
        let per_layer = fp.per_layer;
        let of = |layer| per_layer.iter().find(|(l, _)| *l == layer).unwrap().1;
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        assert_eq!(of(Layer::App), blocks(&app));
        assert!(of(Layer::Libs) >= blocks(&dir.path().join("lib.so")));
        assert!(of(Layer::Libs) < blocks(&app) + blocks(&dir.path().join("lib.so")));
    }
}
