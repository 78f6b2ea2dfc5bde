//! Disk footprint by layer: bytes allocated on disk for each layer's files (directories walked),
//! with a file reachable by several paths or hard links counted once across *all* layers — the
//! first layer to name it owns it — so the layers add up to the total.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cvm_proto::metric::Layer;

/// Bytes on disk per layer, in the order of `layers`, and their total.
pub fn footprint(layers: &BTreeMap<Layer, Vec<PathBuf>>) -> (Vec<(Layer, u64)>, u64) {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut out = Vec::new();
    for (layer, paths) in layers {
        let mut bytes = 0;
        for p in paths {
            bytes += walk(p, &mut seen);
        }
        out.push((*layer, bytes));
    }
    let total = out.iter().map(|(_, b)| b).sum();
    (out, total)
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
}
