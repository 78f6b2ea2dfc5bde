//! The guest kernel: found on the host (or named with `--kernel`), its version read from the
//! bzImage header, and for direct boot its uncompressed ELF `vmlinux` extracted and cached.
//!
//! Why extract: under TCG the bzImage's own decompressor runs as emulated code and takes a
//! large share of boot (on the reference host, microvm + bzImage 4.2 s vs microvm + PVH vmlinux
//! 1.9 s), while
//! the host decompresses the same payload natively in well under a second, once per kernel.
//!
//! How: the x86 boot protocol header says where the compressed payload starts and how long it is
//! (`payload_offset`/`payload_length`, protocol 2.08+); its first bytes name the format. The
//! payload is piped through the Debian tools `xz`, `gzip`, `zstd` (e2fsprogs' neighbours in
//! scripts/setup.sh) rather than decompression crates: no C libraries to build into cvm (xz2 and
//! zstd wrap liblzma and libzstd), the tools are the fastest implementations available, and this
//! runs once per kernel. Only the end of the input is forgiven: the payload range is cut so the
//! decompressor sees the compressed stream and nothing after it except what the kernel build
//! itself appends (zstd: the uncompressed size), and a tool that fails for any other reason
//! (a corrupt or truncated stream) is an error, never a short vmlinux.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no guest kernel found in /boot (install linux-image-amd64, or pass --kernel PATH)")]
    NotFound,
    #[error("cannot read the kernel {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an x86 bzImage: {reason}")]
    NotBzImage { path: PathBuf, reason: String },
    #[error("{path}: the bzImage payload is {format}, which cvm cannot extract")]
    UnsupportedPayload { path: PathBuf, format: &'static str },
    #[error("cannot run {tool} to extract the kernel (install it; scripts/setup.sh does)")]
    Tool {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{tool} cannot decompress the payload of {path} ({status})")]
    Decompress {
        tool: &'static str,
        path: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("{tool} did not produce an ELF vmlinux from {path}")]
    NotElf { tool: &'static str, path: PathBuf },
    #[error("cannot write the extracted kernel to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Which guest kernel a VM backend boots (`--kernel`, the scenario's `[vm] kernel`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KernelChoice {
    /// The distribution's kernel: the newest readable `/boot/vmlinuz-*`.
    #[default]
    Distro,
    /// cvm's own, built by `cvm kernel build` (see [`super::minimal`]).
    Minimal,
    /// A bzImage the user names.
    Path(PathBuf),
}

impl KernelChoice {
    /// `minimal`, `distro`, or anything else as a path.
    pub fn parse(s: &str) -> KernelChoice {
        match s.trim() {
            "minimal" => KernelChoice::Minimal,
            "distro" | "" => KernelChoice::Distro,
            path => KernelChoice::Path(PathBuf::from(path)),
        }
    }

    /// The profile recorded with every sample: `distro`, `minimal` or `path`.
    pub fn profile(&self) -> &'static str {
        match self {
            KernelChoice::Distro => "distro",
            KernelChoice::Minimal => super::minimal::PROFILE,
            KernelChoice::Path(_) => "path",
        }
    }

    /// The bzImage path given, if any (`find` falls back to /boot without one).
    pub fn path(&self) -> Option<&Path> {
        match self {
            KernelChoice::Path(p) => Some(p),
            _ => None,
        }
    }
}

/// The compression of a bzImage payload, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    Lzma,
    Lzo,
    Lz4,
    /// Already an ELF (a bzImage built with no compression).
    Elf,
}

impl Payload {
    pub fn detect(bytes: &[u8]) -> Option<Payload> {
        let table: &[(&[u8], Payload)] = &[
            (&[0x1f, 0x8b], Payload::Gzip),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Payload::Xz),
            (&[0x28, 0xb5, 0x2f, 0xfd], Payload::Zstd),
            (b"BZh", Payload::Bzip2),
            (&[0x5d, 0x00, 0x00], Payload::Lzma),
            (&[0x89, b'L', b'Z', b'O'], Payload::Lzo),
            (&[0x02, 0x21, 0x4c, 0x18], Payload::Lz4),
            (&[0x7f, b'E', b'L', b'F'], Payload::Elf),
        ];
        table
            .iter()
            .find(|(magic, _)| bytes.starts_with(magic))
            .map(|(_, p)| *p)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Payload::Gzip => "gzip",
            Payload::Xz => "xz",
            Payload::Zstd => "zstd",
            Payload::Bzip2 => "bzip2",
            Payload::Lzma => "lzma",
            Payload::Lzo => "lzo",
            Payload::Lz4 => "lz4",
            Payload::Elf => "uncompressed",
        }
    }

    /// Whether the decompressor's exit status means it wrote the whole stream: gzip exits 2 for
    /// a warning, which trailing bytes after the stream are; every other failure is an error.
    fn succeeded(self, status: std::process::ExitStatus) -> bool {
        status.success() || (self == Payload::Gzip && status.code() == Some(2))
    }

    /// The tool and arguments that decompress it from stdin to stdout.
    fn tool(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Payload::Gzip => Some(("gzip", &["-dc"])),
            // --single-stream: the payload may be followed by padding.
            Payload::Xz => Some(("xz", &["-dc", "--single-stream"])),
            Payload::Zstd => Some(("zstd", &["-dcq"])),
            Payload::Bzip2 => Some(("bzip2", &["-dc"])),
            Payload::Lzma => Some(("xz", &["-dc", "--format=lzma"])),
            Payload::Lz4 => Some(("lz4", &["-dc"])),
            Payload::Lzo | Payload::Elf => None,
        }
    }
}

/// What the boot protocol header of a bzImage says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BzImageInfo {
    /// The kernel's version string (`6.1.0-56-amd64 (debian-kernel@...) #1 SMP ...`).
    pub version: String,
    /// Byte range of the compressed payload in the file.
    pub payload: std::ops::Range<usize>,
    pub format: Payload,
}

impl BzImageInfo {
    /// The release alone (`6.1.0-56-amd64`): the first word of the version string.
    pub fn release(&self) -> &str {
        self.version.split_whitespace().next().unwrap_or("")
    }
}

/// Parses the x86 boot protocol header (Documentation/arch/x86/boot.rst).
pub fn parse_bzimage(bytes: &[u8]) -> Result<BzImageInfo, String> {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if bytes.get(0x202..0x206) != Some(b"HdrS") {
        return Err("no HdrS boot header signature".into());
    }
    let protocol = u16_at(0x206).ok_or("truncated header")?;
    if protocol < 0x208 {
        return Err(format!(
            "boot protocol {:x}.{:02x} has no payload fields (2.08+ needed)",
            protocol >> 8,
            protocol & 0xff
        ));
    }
    let setup_sects = match bytes[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let pm_start = (setup_sects + 1) * 512;
    let offset = u32_at(0x248).ok_or("truncated header")? as usize;
    let length = u32_at(0x24c).ok_or("truncated header")? as usize;
    let start = pm_start + offset;
    let payload = start..start + length;
    let head = bytes
        .get(payload.clone())
        .ok_or("the payload lies beyond the end of the file")?;
    let format = Payload::detect(head).ok_or("unknown payload compression")?;
    let version = u16_at(0x20e)
        .map(|p| usize::from(p) + 0x200)
        .and_then(|o| bytes.get(o..))
        .map(|s| {
            let end = s.iter().position(|&b| b == 0).unwrap_or(0).min(256);
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .unwrap_or_default();
    Ok(BzImageInfo {
        version,
        payload,
        format,
    })
}

/// The guest kernel's timer frequency (`CONFIG_HZ`), from the config file distributions install
/// beside it (`/boot/config-<release>`); `None` when there is none.
pub fn config_hz(release: &str) -> Option<u64> {
    let text = fs::read_to_string(Path::new("/boot").join(format!("config-{release}"))).ok()?;
    parse_config_hz(&text)
}

fn parse_config_hz(config: &str) -> Option<u64> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
}

/// The guest kernel to boot: `explicit` if given, else the newest readable `/boot/vmlinuz-*`.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, KernelError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    find_host_kernel().ok_or(KernelError::NotFound)
}

/// The newest readable kernel image in /boot.
pub fn find_host_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<_> = fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .filter(|p| fs::File::open(p).is_ok())
        .collect();
    kernels.sort();
    kernels.pop()
}

/// A bzImage read and understood.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub bzimage: PathBuf,
    pub info: BzImageInfo,
    /// Content hash of the bzImage (cache key for the vmlinux and the accel probe).
    pub hash: String,
}

impl Kernel {
    pub fn load(path: &Path) -> Result<Kernel, KernelError> {
        let bytes = fs::read(path).map_err(|source| KernelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let info = parse_bzimage(&bytes).map_err(|reason| KernelError::NotBzImage {
            path: path.to_path_buf(),
            reason,
        })?;
        let hash = format!("{:x}", Sha256::digest(&bytes))[..16].to_string();
        Ok(Kernel {
            bzimage: path.to_path_buf(),
            info,
            hash,
        })
    }

    /// The uncompressed vmlinux for PVH direct boot, extracted once into `cache`.
    pub fn vmlinux(&self, cache: &Path) -> Result<PathBuf, KernelError> {
        let dir = cache.join("kernels").join(&self.hash);
        let out = dir.join("vmlinux");
        if out.is_file() {
            return Ok(out);
        }
        let bytes = fs::read(&self.bzimage).map_err(|source| KernelError::Read {
            path: self.bzimage.clone(),
            source,
        })?;
        let elf = extract(
            &bytes[self.info.payload.clone()],
            self.info.format,
            &self.bzimage,
        )?;
        let write = |source| KernelError::Write {
            path: out.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(write)?;
        let tmp = dir.join(format!(".vmlinux.tmp-{}", std::process::id()));
        fs::write(&tmp, &elf).map_err(write)?;
        fs::rename(&tmp, &out).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            write(e)
        })?;
        Ok(out)
    }
}

/// Decompresses a payload to the ELF vmlinux it holds.
pub fn extract(payload: &[u8], format: Payload, path: &Path) -> Result<Vec<u8>, KernelError> {
    if format == Payload::Elf {
        return Ok(payload.to_vec());
    }
    let Some((tool, args)) = format.tool() else {
        return Err(KernelError::UnsupportedPayload {
            path: path.to_path_buf(),
            format: format.as_str(),
        });
    };
    // The kernel build appends the uncompressed size after some streams (zstd's and, in older
    // kernels, every format's); zstd refuses trailing bytes, so without them is tried too.
    let trimmed = &payload[..payload.len().saturating_sub(SIZE_TRAILER)];
    let attempts: [&[u8]; 2] = match format {
        Payload::Zstd => [trimmed, payload],
        _ => [payload, trimmed],
    };
    let mut failed = None;
    for input in attempts {
        let out = crate::image::filter::pipe_through(tool, args, input)
            .map_err(|source| KernelError::Tool { tool, source })?;
        if !format.succeeded(out.status) {
            failed = Some(out.status);
            continue;
        }
        if !out.stdout.starts_with(b"\x7fELF") {
            return Err(KernelError::NotElf {
                tool,
                path: path.to_path_buf(),
            });
        }
        return Ok(out.stdout);
    }
    Err(KernelError::Decompress {
        tool,
        path: path.to_path_buf(),
        status: failed.expect("at least one attempt ran"),
    })
}

/// The kernel build's appended uncompressed size: 32 bits, little-endian.
const SIZE_TRAILER: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic bzImage: header fields at their boot-protocol offsets, then `payload`.
    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 3u8;
        let pm_start = (usize::from(setup_sects) + 1) * 512;
        let offset = 0x40usize;
        let mut b = vec![0u8; pm_start + offset];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        // kernel_version points (minus 0x200) at a NUL-terminated string.
        b[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        b[0x300..0x300 + 12].copy_from_slice(b"6.1.0-test #");
        b[0x248..0x24c].copy_from_slice(&(offset as u32).to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        b.extend_from_slice(&[0u8; 16]); // trailing bytes a real bzImage has too
        b
    }

    #[test]
    fn kernel_choices_parse_with_anything_else_a_path() {
        assert_eq!(KernelChoice::parse("minimal"), KernelChoice::Minimal);
        assert_eq!(KernelChoice::parse("distro"), KernelChoice::Distro);
        assert_eq!(
            KernelChoice::parse("/boot/vmlinuz-x"),
            KernelChoice::Path("/boot/vmlinuz-x".into())
        );
        assert_eq!(KernelChoice::Minimal.profile(), "minimal");
        assert_eq!(KernelChoice::parse("./minimal").profile(), "path");
        assert_eq!(KernelChoice::Distro.path(), None);
    }

    #[test]
    fn detects_payload_formats_by_magic() {
        assert_eq!(Payload::detect(&[0x1f, 0x8b, 8]), Some(Payload::Gzip));
        assert_eq!(Payload::detect(b"\xfd7zXZ\x00\x00"), Some(Payload::Xz));
        assert_eq!(
            Payload::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Payload::Zstd)
        );
        assert_eq!(Payload::detect(b"\x7fELF\x02"), Some(Payload::Elf));
        assert_eq!(Payload::detect(b"BZh9"), Some(Payload::Bzip2));
        assert_eq!(Payload::detect(b"nope"), None);
    }

    #[test]
    fn parses_the_boot_header() {
        let img = fake_bzimage(b"\xfd7zXZ\x00rest");
        let info = parse_bzimage(&img).unwrap();
        assert_eq!(info.format, Payload::Xz);
        assert_eq!(info.release(), "6.1.0-test");
        assert_eq!(&img[info.payload.clone()], b"\xfd7zXZ\x00rest");
        assert!(parse_bzimage(&[0u8; 1024]).is_err());
        let mut old = img.clone();
        old[0x206..0x208].copy_from_slice(&0x206u16.to_le_bytes());
        assert!(parse_bzimage(&old).unwrap_err().contains("2.08"));
    }

    fn compress(tool: &str, args: &[&str], data: &[u8]) -> Option<Vec<u8>> {
        let out = crate::image::filter::pipe_through(tool, args, data).ok()?;
        out.status.success().then_some(out.stdout)
    }

    #[test]
    fn a_corrupt_payload_is_an_error_not_a_short_vmlinux() {
        for (tool, magic) in [
            ("xz", &b"\xfd7zXZ\x00"[..]),
            ("gzip", &[0x1f, 0x8b, 0x08, 0x00][..]),
            ("zstd", &[0x28, 0xb5, 0x2f, 0xfd][..]),
        ] {
            let installed = crate::image::filter::pipe_through(tool, &["--version"], b"").is_ok();
            if !crate::host_has(installed, &format!("{tool} installed")) {
                continue;
            }
            let mut payload = magic.to_vec();
            payload.extend((0..4096u32).map(|i| (i * 7 % 253) as u8));
            let format = Payload::detect(&payload).unwrap();
            let err = extract(&payload, format, Path::new("corrupt")).unwrap_err();
            assert!(
                matches!(err, KernelError::Decompress { .. }),
                "{tool}: {err}"
            );
        }
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        let elf: Vec<u8> = b"\x7fELF\x02".iter().copied().chain(0..=255).collect();
        let packed = compress("xz", &["-c", "--check=crc32"], &elf);
        if !crate::host_has(packed.is_some(), "xz installed") {
            return;
        }
        let packed = packed.expect("host_has passed, so xz ran");
        let cut = &packed[..packed.len() / 2];
        assert!(matches!(
            extract(cut, Payload::Xz, Path::new("cut")),
            Err(KernelError::Decompress { tool: "xz", .. })
        ));
    }

    #[test]
    fn extracts_xz_gzip_and_zstd_payloads() {
        let elf: Vec<u8> = b"\x7fELF\x02\x01\x01"
            .iter()
            .copied()
            .chain((0..4096u32).map(|i| (i % 251) as u8))
            .collect();
        for (tool, args) in [
            ("xz", &["-c", "--check=crc32"][..]),
            ("gzip", &["-c"]),
            ("zstd", &["-c", "-q"]),
        ] {
            let compressed = compress(tool, args, &elf);
            if !crate::host_has(compressed.is_some(), &format!("{tool} installed")) {
                continue;
            }
            let mut payload = compressed.expect("host_has passed, so the tool ran");
            if tool == "zstd" {
                // As the kernel build does: the uncompressed size after the frame.
                payload.extend_from_slice(&(elf.len() as u32).to_le_bytes());
            }
            let img = fake_bzimage(&payload);
            let info = parse_bzimage(&img).unwrap();
            let got = extract(&img[info.payload.clone()], info.format, Path::new("test")).unwrap();
            assert_eq!(got, elf, "{tool}");
        }
    }

    #[test]
    fn reads_the_timer_frequency_from_a_kernel_config() {
        let config = "# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n";
        assert_eq!(parse_config_hz(config), Some(250));
        assert_eq!(parse_config_hz("CONFIG_HZ_250=y\n"), None);
    }
}
