//! The image exported as an initramfs: a newc cpio archive the kernel unpacks into its rootfs.
//!
//! The archive holds the image's rootfs unchanged (so a VM runs the byte-identical files a
//! container runs), the two device nodes the kernel needs before anything is mounted
//! (`/dev/console`, which becomes PID 1's stdio, and `/dev/null`), the kernel modules the guest
//! loads, in `/lib/modules/`, and files the backend adds (init's VM configuration).
//!
//! The newc writer is written here rather than taken from a crate: the format is a 110-byte ASCII
//! header per entry plus 4-byte padding, and owning it lets the archive be deterministic (inode
//! numbers in order, mtime 0, uid/gid 0), which keeps the content-hash cache honest.
//!
//! Compression is a choice with a measured answer (see [`Compression`]): under TCG every byte
//! the guest decompresses costs emulated instructions, while an uncompressed archive only costs
//! QEMU a host-side copy into guest memory.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Bumped whenever the archive's layout changes, so old cache entries are not reused.
const LAYOUT_VERSION: &str = "1";
/// Where the kernel modules go inside the archive.
pub const MODULES_DIR: &str = "/lib/modules";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("cannot read {path} for the initramfs")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the initramfs {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot compress the initramfs with {tool} (install it; scripts/setup.sh does)")]
    Compress {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("archive path {0:?} is not absolute")]
    RelativePath(String),
}

/// How the archive is compressed. The kernel accepts all of these (Debian enables every
/// `CONFIG_RD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Measured fastest under TCG (see the module docs and the VM backend's notes).
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses `none`, `gzip` or `zstd`.
    pub fn parse(s: &str) -> Option<Compression> {
        match s.trim() {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Compression::None => "cpio",
            Compression::Gzip => "cpio.gz",
            Compression::Zstd => "cpio.zst",
        }
    }
}

/// A streaming newc ("070701") cpio writer. Paths are written without the leading `/`, as the
/// kernel and GNU cpio expect.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        let name = if name.is_empty() { "." } else { name };
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{path}: too large for a newc archive")))?;
        let namesize = name.len() + 1;
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino += 1;
            self.next_ino - 1
        };
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 0, 0, 0, rdev.0, rdev.1, 0
        );
        debug_assert_eq!(header.len(), 110);
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Header+name and data are each padded to a multiple of 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }
}

/// What goes into one initramfs.
#[derive(Debug, Clone, Default)]
pub struct InitramfsSpec {
    /// The image's rootfs directory, archived as `/`.
    pub rootfs: PathBuf,
    /// Host `.ko` files, stored flat in [`MODULES_DIR`] under their file names.
    pub modules: Vec<PathBuf>,
    /// Extra files: (absolute path in the archive, contents), mode 0644.
    pub files: Vec<(String, Vec<u8>)>,
    pub compression: Compression,
}

impl InitramfsSpec {
    /// Where `module` ends up inside the archive.
    pub fn module_path(module: &Path) -> String {
        let name = module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{MODULES_DIR}/{name}")
    }
}

/// Builds the archive into `dir` (named by its content hash) unless it is already there.
pub fn build(spec: &InitramfsSpec, dir: &Path) -> Result<PathBuf, InitramfsError> {
    let write_err = |path: &Path, source| InitramfsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut cpio = CpioWriter::new(Vec::with_capacity(16 << 20));
    archive(&mut cpio, spec).map_err(|e| match e {
        ArchiveError::Read(path, source) => InitramfsError::Read { path, source },
        ArchiveError::Relative(p) => InitramfsError::RelativePath(p),
        ArchiveError::Io(source) => write_err(dir, source),
    })?;
    let raw = cpio.finish().map_err(|e| write_err(dir, e))?;

    let mut hasher = Sha256::new();
    hasher.update(LAYOUT_VERSION);
    hasher.update(spec.compression.as_str());
    hasher.update(&raw);
    let name = format!(
        "{}.{}",
        &format!("{:x}", hasher.finalize())[..16],
        spec.compression.extension()
    );
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let bytes = match spec.compression {
        Compression::None => raw,
        Compression::Gzip => compress("gzip", &["-c", "-6"], &raw)?,
        Compression::Zstd => compress("zstd", &["-c", "-q", "-3"], &raw)?,
    };
    // Written beside the final name and renamed: a concurrent cvm never reads half an archive.
    // Unique per write, not only per process: threads of one process may build the same one.
    static WRITES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tmp = dir.join(format!(
        ".initramfs.tmp-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    fs::write(&tmp, &bytes).map_err(|e| write_err(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        write_err(&path, e)
    })?;
    Ok(path)
}

enum ArchiveError {
    Read(PathBuf, io::Error),
    Relative(String),
    Io(io::Error),
}

impl From<io::Error> for ArchiveError {
    fn from(e: io::Error) -> Self {
        ArchiveError::Io(e)
    }
}

/// How many of the stored archive's bytes (`stored`, built from `spec`) are the data of the
/// rootfs files `named` (host paths inside `spec.rootfs`; a directory names every regular file
/// under it): the part of an initramfs that packs files counted in their own disk layers. A
/// member's data is stored verbatim, so uncompressed that is the members' lengths; compressed,
/// each is charged the archive's overall ratio (its stored bytes over its archived bytes).
pub fn packed_bytes(
    spec: &InitramfsSpec,
    stored: &Path,
    named: &[PathBuf],
) -> Result<u64, InitramfsError> {
    let read = |path: &Path, source| InitramfsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut members: Vec<PathBuf> = Vec::new();
    for p in named.iter().filter(|p| p.starts_with(&spec.rootfs)) {
        regular_files(p, &mut members).map_err(|e| read(p, e))?;
    }
    members.sort();
    members.dedup();
    let mut data = 0;
    for m in &members {
        data += fs::symlink_metadata(m).map_err(|e| read(m, e))?.len();
    }
    if spec.compression == Compression::None {
        return Ok(data);
    }
    // The archive's raw length: written again, to a sink, trailer included.
    let mut counted = CpioWriter::new(io::sink());
    archive(&mut counted, spec)
        .and_then(|()| Ok(counted.entry("TRAILER!!!", 0, 1, (0, 0), &[])?))
        .map_err(|e| match e {
            ArchiveError::Read(path, source) => InitramfsError::Read { path, source },
            ArchiveError::Relative(p) => InitramfsError::RelativePath(p),
            ArchiveError::Io(source) => read(stored, source),
        })?;
    let raw = counted.written.max(1);
    let stored_len = fs::metadata(stored).map_err(|e| read(stored, e))?.len();
    Ok((u128::from(data) * u128::from(stored_len) / u128::from(raw)) as u64)
}

/// Every regular file at or under `path`, symlinks not followed (the archive stores them as
/// links).
fn regular_files(path: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() {
        out.push(path.to_path_buf());
    } else if meta.is_dir() {
        for e in fs::read_dir(path)? {
            regular_files(&e?.path(), out)?;
        }
    }
    Ok(())
}

fn archive<W: Write>(cpio: &mut CpioWriter<W>, spec: &InitramfsSpec) -> Result<(), ArchiveError> {
    cpio.dir("/", 0o755)?;
    walk(cpio, &spec.rootfs, "")?;
    // The kernel opens /dev/console for PID 1's stdio before any devtmpfs is mounted; without
    // the node init would start with no descriptors at all.
    if !spec.rootfs.join("dev").is_dir() {
        cpio.dir("/dev", 0o755)?;
    }
    cpio.char_device("/dev/console", 0o600, 5, 1)?;
    cpio.char_device("/dev/null", 0o666, 1, 3)?;
    if !spec.modules.is_empty() {
        let mut dir = String::new();
        for part in MODULES_DIR.trim_start_matches('/').split('/') {
            dir.push('/');
            dir.push_str(part);
            if !spec.rootfs.join(dir.trim_start_matches('/')).is_dir() {
                cpio.dir(&dir, 0o755)?;
            }
        }
        for m in &spec.modules {
            let data = fs::read(m).map_err(|e| ArchiveError::Read(m.clone(), e))?;
            cpio.file(&InitramfsSpec::module_path(m), 0o644, &data)?;
        }
    }
    for (path, data) in &spec.files {
        if !path.starts_with('/') {
            return Err(ArchiveError::Relative(path.clone()));
        }
        // Parent directories the rootfs does not already have.
        let mut parent = String::new();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            parent.push('/');
            parent.push_str(part);
            if !spec.rootfs.join(parent.trim_start_matches('/')).is_dir() {
                cpio.dir(&parent, 0o755)?;
            }
        }
        cpio.file(path, 0o644, data)?;
    }
    Ok(())
}

/// Archives the tree under `dir` as `prefix/...`, entries sorted so the archive is deterministic.
fn walk<W: Write>(cpio: &mut CpioWriter<W>, dir: &Path, prefix: &str) -> Result<(), ArchiveError> {
    let read = |e| ArchiveError::Read(dir.to_path_buf(), e);
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let meta =
            fs::symlink_metadata(&path).map_err(|err| ArchiveError::Read(path.clone(), err))?;
        let perm = meta.permissions().mode();
        if meta.file_type().is_symlink() {
            let target =
                fs::read_link(&path).map_err(|err| ArchiveError::Read(path.clone(), err))?;
            cpio.symlink(&name, &target.to_string_lossy())?;
        } else if meta.is_dir() {
            cpio.dir(&name, perm)?;
            walk(cpio, &path, &name)?;
        } else if meta.is_file() {
            let data = fs::read(&path).map_err(|err| ArchiveError::Read(path.clone(), err))?;
            cpio.file(&name, perm, &data)?;
        }
        // Sockets, fifos and device nodes in an image directory are skipped: the guest makes
        // its own /dev (devtmpfs).
    }
    Ok(())
}

fn compress(tool: &'static str, args: &[&str], data: &[u8]) -> Result<Vec<u8>, InitramfsError> {
    let fail = |source| InitramfsError::Compress { tool, source };
    let out = super::filter::pipe_through(tool, args, data).map_err(fail)?;
    if !out.status.success() {
        return Err(fail(io::Error::other(format!(
            "{tool} failed: {}",
            out.status
        ))));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// (name, mode, contents, (rdev major, rdev minor))
    type Entry = (String, u32, Vec<u8>, (u32, u32));

    /// A minimal newc reader, enough to check the writer's output entry by entry.
    fn parse(mut data: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let total = data.len();
        let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
        loop {
            let start = total - data.len();
            assert_eq!(start % 4, 0, "entries are 4-byte aligned");
            assert_eq!(&data[..6], b"070701");
            let field = |i: usize| hex(&data[6 + i * 8..14 + i * 8]);
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let rdev = (field(9), field(10));
            let name = std::str::from_utf8(&data[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(data[110 + namesize - 1], 0, "names are NUL-terminated");
            let data_start = (110 + namesize).div_ceil(4) * 4;
            let body = data[data_start..data_start + size].to_vec();
            data = &data[(data_start + size).div_ceil(4) * 4..];
            if name == "TRAILER!!!" {
                assert!(data.is_empty());
                return out;
            }
            out.push((name, mode, body, rdev));
        }
    }

    #[test]
    fn writes_newc_entries_with_padding_and_a_trailer() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/", 0o755).unwrap();
        w.dir("/bin", 0o755).unwrap();
        w.file("/bin/a", 0o755, b"hello").unwrap();
        w.symlink("/init", "bin/a").unwrap();
        w.char_device("/dev/console", 0o600, 5, 1).unwrap();
        let bytes = w.finish().unwrap();
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, [".", "bin", "bin/a", "init", "dev/console"]);
        assert_eq!(entries[2].1, S_IFREG | 0o755);
        assert_eq!(entries[2].2, b"hello");
        assert_eq!(entries[3].1 & 0o170000, S_IFLNK);
        assert_eq!(entries[3].2, b"bin/a");
        assert_eq!(entries[4].1, S_IFCHR | 0o600);
        assert_eq!(entries[4].3, (5, 1));
    }

    #[test]
    fn gnu_cpio_reads_what_we_write() {
        let present = Command::new("cpio").arg("--version").output().is_ok();
        if !crate::host_has(present, "cpio installed") {
            return;
        }
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/etc", 0o755).unwrap();
        w.file("/etc/x", 0o644, b"abc").unwrap();
        let bytes = w.finish().unwrap();
        let mut child = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "etc\netc/x\n");
    }

    #[test]
    fn builds_a_deterministic_archive_with_devices_modules_and_extra_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("lib/modules")).unwrap();
        fs::write(root.join("bin/tool"), b"x").unwrap();
        std::os::unix::fs::symlink("bin/tool", root.join("init")).unwrap();
        let module = tmp.path().join("virtio.ko");
        fs::write(&module, b"ko").unwrap();
        let spec = InitramfsSpec {
            rootfs: root,
            modules: vec![module],
            files: vec![("/etc/cvm/vm.conf".into(), b"arg hello\n".to_vec())],
            compression: Compression::None,
        };
        let out = tmp.path().join("out");
        let a = build(&spec, &out).unwrap();
        let b = build(&spec, &out).unwrap();
        assert_eq!(a, b, "content-addressed");
        let entries = parse(&fs::read(&a).unwrap());
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                ".",
                "bin",
                "bin/tool",
                "init",
                "lib",
                "lib/modules",
                "dev",
                "dev/console",
                "dev/null",
                "lib/modules/virtio.ko",
                "etc",
                "etc/cvm",
                "etc/cvm/vm.conf"
            ]
        );
    }

    /// The bytes an archive packs of named rootfs files: their data, verbatim when
    /// uncompressed, and their share of the compressed archive otherwise.
    #[test]
    fn packed_bytes_are_the_named_files_data_in_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("lib")).unwrap();
        fs::write(root.join("bin/app"), vec![b'a'; 10_000]).unwrap();
        fs::write(root.join("lib/one.so"), vec![b'b'; 3_000]).unwrap();
        fs::write(root.join("lib/two.so"), vec![b'c'; 1_000]).unwrap();
        std::os::unix::fs::symlink("one.so", root.join("lib/alias.so")).unwrap();
        let module = tmp.path().join("virtio.ko");
        fs::write(&module, vec![b'k'; 5_000]).unwrap();
        let mut spec = InitramfsSpec {
            rootfs: root.clone(),
            modules: vec![module],
            files: Vec::new(),
            compression: Compression::None,
        };
        let out = tmp.path().join("out");
        let plain = build(&spec, &out).unwrap();
        // A file, and a directory that holds it again and a link: each file's data once; the
        // module and anything outside the rootfs are the archive's own.
        let named = [root.join("bin/app"), root.join("lib"), root.join("bin/app")];
        assert_eq!(packed_bytes(&spec, &plain, &named).unwrap(), 14_000);
        assert_eq!(
            packed_bytes(&spec, &plain, &[tmp.path().join("x")]).unwrap(),
            0
        );
        let len = fs::metadata(&plain).unwrap().len();
        assert!(
            len > 14_000 + 5_000,
            "the archive holds the members verbatim"
        );

        if which_gzip() {
            spec.compression = Compression::Gzip;
            let packed = build(&spec, &out).unwrap();
            let stored = fs::metadata(&packed).unwrap().len();
            let share = packed_bytes(&spec, &packed, &named).unwrap();
            // The members' share of the stored bytes, as of the raw archive.
            assert_eq!(share, 14_000 * stored / len);
        }
    }

    fn which_gzip() -> bool {
        Command::new("gzip").arg("--version").output().is_ok()
    }
}
