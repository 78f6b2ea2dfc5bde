//! Disk footprint by layer: bytes on disk for each layer's files (directories walked), with a
//! file reachable by several paths or hard links counted once across *all* layers, so the layers
//! add up to the total. A file counts the whole blocks it allocates, and an executable or shared
//! library what it would take installed, stripped of debug info and symbols, whoever built it
//! ([`installed`](super::installed): one rule for cvm's own binaries, a distribution's and a
//! user's alike).
//!
//! The one rule every backend follows: a layer is the executables it needs, their shared
//! libraries and the data files they read, as the backend lists them in
//! [`DiskLayers`](crate::backend::DiskLayers). A file two layers name is counted once, in the
//! lowest layer of the stack (layers are iterated bottom-up, the order of [`Layer`]), and is
//! reported as shared, so a reader sees what moved. A directory a layer names (a user's base
//! rootfs, Docker's stored image) holds only what no layer names itself, so the workload's
//! binary inside a base rootfs stays in `app`.
//!
//! A file that packs copies of files other layers count (a VM's initramfs holds the image's app
//! and libraries, byte for byte) is a [`Packed`] file: it counts only its own bytes, in the layer
//! that names it, so a VM's app and libraries are the same layers, of the same bytes, as a
//! container's. What cvm keeps beside a stack only to start it faster (a VM's decompressed
//! kernel) belongs to no layer: it is counted apart, as [`Footprint::cache`], as it lies on disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cvm_proto::metric::Layer;

use super::installed;

/// The backend configuration key listing the files two layers share.
pub const DISK_SHARED_KEY: &str = "disk_shared";

/// A file named by more than one layer: counted in `counted_in`, also needed by `also`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    pub path: PathBuf,
    pub counted_in: Layer,
    pub also: Vec<Layer>,
}

/// A file of `layer` that holds verbatim copies of files counted in their own layers: `copies`
/// of its bytes are theirs, the rest its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub layer: Layer,
    pub path: PathBuf,
    pub copies: u64,
}

/// Bytes on disk per layer (bottom-up), their total, the files two layers share, and the bytes
/// of cvm's caches beside the stack (in no layer, and not in the total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub per_layer: Vec<(Layer, u64)>,
    pub total: u64,
    pub shared: Vec<SharedFile>,
    pub cache: u64,
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

/// Counts `layers`, the `packed` files and the `cache` by the rule above.
pub fn footprint(
    layers: &BTreeMap<Layer, Vec<PathBuf>>,
    packed: &[Packed],
    cache: &[PathBuf],
) -> Footprint {
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
    for p in packed {
        let own = walk(&p.path, &mut seen).saturating_sub(p.copies);
        *bytes.entry(p.layer).or_default() += own;
    }
    // A cache is cvm's own file, kept as written: the blocks it allocates, no install rule.
    let cache = cache
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum();
    let total = bytes.values().sum();
    Footprint {
        per_layer: bytes.into_iter().collect(),
        total,
        shared,
        cache,
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
        installed::counted_bytes(path, &meta)
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
        let fp = footprint(&layers, &[], &[]);
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
        assert_eq!(footprint(&BTreeMap::new(), &[], &[]).total, 0);
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
        let fp = footprint(&layers, &[], &[]);
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

    /// One rule for every binary: an executable built with debug info (this test binary has
    /// line tables and a symbol table) counts exactly what its stripped copy counts, and that is
    /// what the stripped file really allocates, within one block.
    #[test]
    fn a_binary_with_debug_info_counts_as_its_stripped_copy() {
        let dir = tempfile::tempdir().unwrap();
        let built = dir.path().join("built");
        let stripped = dir.path().join("stripped");
        std::fs::copy(std::env::current_exe().unwrap(), &built).unwrap();
        // binutils' strip, which the Rust toolchain's linker step needs on this host anyway.
        let status = std::process::Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&built)
            .status()
            .expect("run strip (binutils)");
        assert!(status.success());
        let count = |p: &Path| {
            footprint(
                &BTreeMap::from([(Layer::Runtime, vec![p.into()])]),
                &[],
                &[],
            )
            .total
        };
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        assert!(
            blocks(&built) > blocks(&stripped) + installed::BLOCK,
            "the test binary should carry debug info or symbols"
        );
        assert_eq!(count(&built), count(&stripped));
        assert!(count(&stripped).abs_diff(blocks(&stripped)) <= installed::BLOCK);
    }

    /// A packed file counts its own bytes only; a cache is counted, but in no layer.
    #[test]
    fn a_packed_file_counts_its_own_bytes_and_a_cache_none_of_the_layers() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::write(&app, vec![1u8; 20_000]).unwrap();
        let archive = dir.path().join("initramfs");
        // The app's bytes, and 30 000 of the archive's own.
        std::fs::write(&archive, vec![2u8; 50_000]).unwrap();
        // An ELF with a symbol table, counted as it lies: a cache is not an installed binary.
        let cache = dir.path().join("vmlinux");
        std::fs::copy(std::env::current_exe().unwrap(), &cache).unwrap();
        let layers = BTreeMap::from([(Layer::App, vec![app.clone()])]);
        let packed = [Packed {
            layer: Layer::GuestOs,
            path: archive.clone(),
            copies: 20_000,
        }];
        let fp = footprint(&layers, &packed, std::slice::from_ref(&cache));
        let blocks = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        let of = |layer| fp.per_layer.iter().find(|(l, _)| *l == layer).unwrap().1;
        assert_eq!(of(Layer::App), blocks(&app));
        assert_eq!(of(Layer::GuestOs), blocks(&archive) - 20_000);
        assert_eq!(fp.total, blocks(&app) + blocks(&archive) - 20_000);
        assert_eq!(fp.cache, blocks(&cache));
        // Copies larger than the file (a stale figure) leave nothing, never wrap.
        let over = [Packed {
            copies: u64::MAX,
            ..packed[0].clone()
        }];
        assert_eq!(footprint(&layers, &over, &[]).total, blocks(&app));
    }
}
