//! The bytes a file takes once installed: the one rule for executables of every stack.
//!
//! A binary counts as a distribution installs it, stripped, whoever built it: cvm's own
//! `cvm-runtime` and `cvm-guest` come out of a build with line tables (backtraces need them),
//! Debian's runc, QEMU and dockerd are stripped by their packages, and a Docker CLI installed by
//! hand may carry its debug info. Counting files as they lie would weigh the build profile, not
//! the software. So an ELF executable or shared library (`ET_EXEC`, `ET_DYN`) counts
//!
//! - its loadable image: the file bytes of its `PT_LOAD` segments, from offset 0 to the end of
//!   the last one (the ELF and program headers are inside the first), and
//! - every section outside that image that stripping keeps (`.comment`, notes), the section
//!   names they need and their section headers,
//!
//! and leaves out what `strip` removes: debug info (`.debug_*`, compressed `.zdebug_*`) and the
//! symbol table (`.symtab` with its `.strtab`). The sum is what a stripped copy's file holds
//! written out in full, as a package manager writes it (up to alignment padding and the few
//! bytes a linker saves by sharing name suffixes), and it
//! is the same number for a binary and for its stripped copy, since it reads only what both
//! keep. It is counted in whole filesystem blocks, like every other file, and never more than
//! the file allocates. Any other file (data, a kernel image, a kernel module, whose symbol table
//! the kernel needs to load it, an ELF class other than 64-bit little-endian) counts the blocks
//! it allocates.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The unit files are counted in: one filesystem block (ext4, xfs and btrfs on x86-64).
pub const BLOCK: u64 = 4096;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
/// `e_shstrndx` saying the real index is in section 0's `sh_link` (more than 0xff00 sections).
const SHN_XINDEX: u16 = 0xffff;

/// Bytes a file counts on disk by the rule above (`meta` is its followed metadata).
pub fn counted_bytes(path: &Path, meta: &std::fs::Metadata) -> u64 {
    let allocated = meta.blocks() * 512;
    if !meta.is_file() {
        return allocated;
    }
    match installed_len(path) {
        Some(len) => round_up(len).min(allocated),
        None => allocated,
    }
}

/// `len` in whole blocks.
pub fn round_up(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// The length of the file an installed (stripped) copy of the ELF executable or shared library
/// at `path` has; `None` for anything else, or a file too short or malformed to read as one.
pub fn installed_len(path: &Path) -> Option<u64> {
    let mut file = File::open(path).ok()?;
    let mut ident = [0u8; 64];
    file.read_exact(&mut ident).ok()?;
    let header = ElfHeader::parse(&ident)?;
    if header.kind != ET_EXEC && header.kind != ET_DYN {
        return None;
    }
    let mut elf = Elf { file, header };
    let image_end = elf.loadable_end()?;
    let sections = elf.sections().unwrap_or_default();
    Some(image_end + kept_outside(&sections, image_end))
}

/// The bytes stripping keeps outside the loadable image: sections that are neither debug info
/// nor the symbol table, their names and their headers (with the null section and the section
/// name table itself). No section headers at all (a binary stripped of them): nothing.
fn kept_outside(sections: &[Section], image_end: u64) -> u64 {
    let Some(header_size) = sections.first().map(|s| s.header_size) else {
        return 0;
    };
    let symtab_strings: Vec<u32> = sections
        .iter()
        .filter(|s| s.kind == SHT_SYMTAB)
        .map(|s| s.link)
        .collect();
    let kept: Vec<&Section> = sections
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, s)| {
            let removed = s.kind == SHT_SYMTAB
                || symtab_strings.contains(&(*i as u32))
                || s.name.starts_with(".debug")
                || s.name.starts_with(".zdebug");
            !removed && !s.is_names
        })
        .map(|(_, s)| s)
        .collect();
    let contents: u64 = kept
        .iter()
        .filter(|s| s.kind != SHT_NOBITS && s.offset >= image_end)
        .map(|s| s.size)
        .sum();
    // The name table a stripped copy writes: a leading NUL, then each kept name and its own.
    let names: u64 = 1
        + kept.iter().map(|s| s.name.len() as u64 + 1).sum::<u64>()
        + ".shstrtab".len() as u64
        + 1;
    let headers = (kept.len() as u64 + 2) * header_size;
    contents + names + headers
}

/// The fields of an ELF64 little-endian file header this module reads.
struct ElfHeader {
    kind: u16,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

impl ElfHeader {
    fn parse(b: &[u8; 64]) -> Option<ElfHeader> {
        // Magic, ELFCLASS64, ELFDATA2LSB.
        if &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
            return None;
        }
        Some(ElfHeader {
            kind: u16_at(b, 16)?,
            phoff: u64_at(b, 32)?,
            shoff: u64_at(b, 40)?,
            phentsize: u16_at(b, 54)?,
            phnum: u16_at(b, 56)?,
            shentsize: u16_at(b, 58)?,
            shnum: u16_at(b, 60)?,
            shstrndx: u16_at(b, 62)?,
        })
    }
}

/// One section header, with its name read from the section name table.
#[derive(Debug, Clone, Default)]
struct Section {
    name: String,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    header_size: u64,
    /// This is the section name table (`e_shstrndx`).
    is_names: bool,
}

struct Elf {
    file: File,
    header: ElfHeader,
}

impl Elf {
    fn read_at(&mut self, offset: u64, len: usize) -> Option<Vec<u8>> {
        // Bounded: a header table or name table is never near this size in a real binary.
        if len > 64 << 20 {
            return None;
        }
        let mut buf = vec![0u8; len];
        self.file.seek(SeekFrom::Start(offset)).ok()?;
        self.file.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    /// The end of the last `PT_LOAD` segment's file bytes; `None` without one.
    fn loadable_end(&mut self) -> Option<u64> {
        let h = &self.header;
        let (entsize, phnum, phoff) = (usize::from(h.phentsize), usize::from(h.phnum), h.phoff);
        if entsize < 56 || phnum == 0 {
            return None;
        }
        let table = self.read_at(phoff, entsize * phnum)?;
        table
            .chunks_exact(entsize)
            .filter(|p| u32_at(p, 0) == Some(PT_LOAD))
            .filter_map(|p| Some(u64_at(p, 8)? + u64_at(p, 32)?))
            .max()
    }

    /// Every section header with its name; `None` where the table cannot be read.
    fn sections(&mut self) -> Option<Vec<Section>> {
        let (shoff, shnum, shstrndx) = (self.header.shoff, self.header.shnum, self.header.shstrndx);
        let entsize = usize::from(self.header.shentsize);
        if shoff == 0 || entsize < 64 {
            return None;
        }
        let first = self.read_at(shoff, entsize)?;
        // More than 0xff00 sections: the count and the name table's index live in section 0.
        let count = match shnum {
            0 => usize::try_from(u64_at(&first, 32)?).ok()?,
            n => usize::from(n),
        };
        let names_index = match shstrndx {
            SHN_XINDEX => usize::try_from(u32_at(&first, 40)?).ok()?,
            i => usize::from(i),
        };
        let table = self.read_at(shoff, entsize.checked_mul(count)?)?;
        let mut sections: Vec<Section> = table
            .chunks_exact(entsize)
            .map(|s| Section {
                name: String::new(),
                kind: u32_at(s, 4).unwrap_or(0),
                offset: u64_at(s, 24).unwrap_or(0),
                size: u64_at(s, 32).unwrap_or(0),
                link: u32_at(s, 40).unwrap_or(0),
                header_size: entsize as u64,
                is_names: false,
            })
            .collect();
        let name_offsets: Vec<u32> = table
            .chunks_exact(entsize)
            .map(|s| u32_at(s, 0).unwrap_or(0))
            .collect();
        let names_section = sections.get(names_index)?.clone();
        let names = self.read_at(
            names_section.offset,
            usize::try_from(names_section.size).ok()?,
        )?;
        for (i, (s, off)) in sections.iter_mut().zip(name_offsets).enumerate() {
            s.name = c_string_at(&names, off as usize);
            s.is_names = i == names_index;
        }
        Some(sections)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn c_string_at(table: &[u8], at: usize) -> String {
    let rest = table.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 executable: headers and `.text` in one PT_LOAD of `image` bytes, then
    /// `.comment`, `.debug_info`, `.symtab`, `.strtab`, `.shstrtab` and the section headers.
    fn tiny_elf(image: u64, comment: u64, debug: u64) -> Vec<u8> {
        let names = b"\0.text\0.comment\0.debug_info\0.symtab\0.strtab\0.shstrtab\0";
        let name_at = |n: &str| {
            let needle = format!("\0{n}\0");
            names
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let comment_at = image;
        let debug_at = comment_at + comment;
        let symtab_at = debug_at + debug;
        let strtab_at = symtab_at + 48;
        let names_at = strtab_at + 16;
        let shoff = names_at + names.len() as u64;
        let mut f = vec![0u8; shoff as usize];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        let put16 =
            |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put16(&mut f, 16, ET_EXEC);
        put64(&mut f, 32, 64);
        put64(&mut f, 40, shoff);
        put16(&mut f, 54, 56);
        put16(&mut f, 56, 1);
        put16(&mut f, 58, 64);
        put16(&mut f, 60, 7);
        put16(&mut f, 62, 6);
        put32(&mut f, 64, PT_LOAD);
        put64(&mut f, 64 + 8, 0);
        put64(&mut f, 64 + 32, image);
        f[names_at as usize..].copy_from_slice(names);
        // (name, type, offset, size, link)
        let sections: [(&str, u32, u64, u64, u32); 7] = [
            ("", 0, 0, 0, 0),
            (".text", 1, 120, image - 120, 0),
            (".comment", 1, comment_at, comment, 0),
            (".debug_info", 1, debug_at, debug, 0),
            (".symtab", SHT_SYMTAB, symtab_at, 48, 5),
            (".strtab", 3, strtab_at, 16, 0),
            (".shstrtab", 3, names_at, names.len() as u64, 0),
        ];
        for (name, kind, offset, size, link) in sections {
            let mut h = vec![0u8; 64];
            if !name.is_empty() {
                put32(&mut h, 0, name_at(name));
            }
            put32(&mut h, 4, kind);
            put64(&mut h, 24, offset);
            put64(&mut h, 32, size);
            put32(&mut h, 40, link);
            f.extend_from_slice(&h);
        }
        f
    }

    #[test]
    fn an_elf_counts_its_image_and_what_stripping_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tool");
        std::fs::write(&path, tiny_elf(10_000, 40, 50_000)).unwrap();
        // The image, .comment, the names ".text", ".comment", ".shstrtab" with their NULs and
        // the leading one, and four headers (null, .text, .comment, .shstrtab).
        let names = 1 + 6 + 9 + 10;
        assert_eq!(installed_len(&path), Some(10_000 + 40 + names + 4 * 64));
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.blocks() * 512 >= 60_000);
        assert_eq!(counted_bytes(&path, &meta), 3 * BLOCK);
        // More debug info changes nothing.
        std::fs::write(&path, tiny_elf(10_000, 40, 500_000)).unwrap();
        assert_eq!(installed_len(&path), Some(10_000 + 40 + names + 4 * 64));
    }

    #[test]
    fn other_files_count_the_blocks_they_allocate() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, vec![7u8; 70_000]).unwrap();
        let meta = std::fs::metadata(&data).unwrap();
        assert_eq!(installed_len(&data), None);
        assert_eq!(counted_bytes(&data, &meta), meta.blocks() * 512);
        // A relocatable object (a kernel module) keeps its symbol table: counted as it lies.
        let mut module = tiny_elf(10_000, 40, 50_000);
        module[16..18].copy_from_slice(&1u16.to_le_bytes());
        let ko = dir.path().join("virtio.ko");
        std::fs::write(&ko, &module).unwrap();
        let meta = std::fs::metadata(&ko).unwrap();
        assert_eq!(installed_len(&ko), None);
        assert_eq!(counted_bytes(&ko, &meta), meta.blocks() * 512);
        // Truncated headers are not an ELF this module can read.
        std::fs::write(&ko, &module[..40]).unwrap();
        assert_eq!(installed_len(&ko), None);
    }
}
