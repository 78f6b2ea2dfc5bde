//! Disk footprint by layer: bytes allocated on disk for each layer's files (directories walked),
//! with a file reachable by several paths or hard links counted once across *all* layers, so the
//! layers add up to the total. Who owns a file two layers reach: a file a layer names itself
//! belongs to the lowest layer that names it (layers are iterated bottom-up); a directory a
//! layer names (a user's base rootfs) holds only what no layer names itself, so the workload's
//! binary inside a base rootfs stays in `app`.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cvm_proto::metric::Layer;

/// Bytes on disk per layer, bottom-up, and their total.
pub fn footprint(layers: &BTreeMap<Layer, Vec<PathBuf>>) -> (Vec<(Layer, u64)>, u64) {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut bytes: BTreeMap<Layer, u64> = layers.keys().map(|l| (*l, 0)).collect();
    // Named files claim their inodes first, then directories are walked for the rest.
    for walk_dirs in [false, true] {
        for (layer, paths) in layers {
            for p in paths.iter().filter(|p| p.is_dir() == walk_dirs) {
                *bytes.entry(*layer).or_default() += walk(p, &mut seen);
            }
        }
    }
    let total = bytes.values().sum();
    (bytes.into_iter().collect(), total)
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
        let (per_layer, total) = footprint(&layers);
        let app = per_layer.iter().find(|(l, _)| *l == Layer::App).unwrap().1;
        let libs = per_layer.iter().find(|(l, _)| *l == Layer::Libs).unwrap().1;
        // Counted here from each inode's own allocation, independently of `footprint`.
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        // a2 is the same inode as a, and libs is below app in the stack: the file is counted
        // once, in libs, the lowest layer that needs it.
        assert_eq!(libs, blocks(&a) + blocks(&sub) + blocks(&sub.join("b")));
        assert_eq!(app, 0);
        assert_eq!(total, blocks(&a) + blocks(&sub) + blocks(&sub.join("b")));
        assert_eq!(footprint(&BTreeMap::new()).1, 0);
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
        let (per_layer, _) = footprint(&layers);
        let of = |layer| per_layer.iter().find(|(l, _)| *l == layer).unwrap().1;
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        assert_eq!(of(Layer::App), blocks(&app));
        assert!(of(Layer::Libs) >= blocks(&dir.path().join("lib.so")));
        assert!(of(Layer::Libs) < blocks(&app) + blocks(&dir.path().join("lib.so")));
    }
}
