//! `fio --minimal` (terse version 3): one `;`-separated line per job, read then write
//! sections, completion latency percentiles as `P%=usec` fields.

use cvm_proto::app::FIO_DIRECT_LINE as DIRECT_LINE;
use cvm_proto::metric::Metric;

use super::{number, Figures, ParseError};

const FIO: &str = "fio";
/// Fields of one direction (read or write) in terse version 3: kb, bw, iops, runtime, slat ×4,
/// clat ×4, 20 clat percentiles, lat ×4, bw ×5 (as fio 3.33 writes it).
const SECTION: usize = 41;
/// Where the read section starts (after version, fio version, job name, group, error).
const READ: usize = 5;
const WRITE: usize = READ + SECTION;
/// Offsets inside a section.
const BW_KIB: usize = 1;
const IOPS: usize = 2;
const CLAT_PCT: usize = 12;

pub fn terse(text: &str) -> Result<Figures, ParseError> {
    let direct = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(DIRECT_LINE))
        .map(str::trim);
    let direct = number(FIO, "`cvm-fio-direct=` line", direct)?;
    let mut values = vec![(Metric::FioDirect, direct)];
    let (read, read_p99) = job(text, "randread", READ)?;
    values.push((Metric::FioRandreadIops, read[IOPS]));
    values.push((Metric::FioRandreadP99, read_p99));
    let (write, write_p99) = job(text, "randwrite", WRITE)?;
    values.push((Metric::FioRandwriteIops, write[IOPS]));
    values.push((Metric::FioRandwriteP99, write_p99));
    let (seq, _) = job(text, "seqwrite", WRITE)?;
    values.push((Metric::FioSeqwriteBandwidth, seq[BW_KIB] * 1024.0));
    Ok(Figures {
        values,
        count: None,
    })
}

/// The first numbers of `name`'s section at `start` (kb, bw, iops), and its p99 completion
/// latency in seconds.
fn job(text: &str, name: &str, start: usize) -> Result<([f64; 3], f64), ParseError> {
    let fields: Vec<&str> = text
        .lines()
        .map(|l| l.trim().split(';').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == "3" && f[2] == name)
        .ok_or_else(|| ParseError::Missing {
            parser: FIO,
            what: format!("terse line of job `{name}`"),
        })?;
    let section = fields
        .get(start..start + SECTION)
        .ok_or_else(|| ParseError::Missing {
            parser: FIO,
            what: format!(
                "complete terse line of job `{name}` ({} fields)",
                fields.len()
            ),
        })?;
    let what = |f: &str| format!("{name} {f}");
    let mut first = [0.0; 3];
    for (i, f) in first.iter_mut().enumerate() {
        *f = number(FIO, &what("bandwidth/iops"), section.get(i).copied())?;
    }
    let p99 = section[CLAT_PCT..CLAT_PCT + 20]
        .iter()
        .find_map(|f| f.strip_prefix("99.000000%="));
    let p99_us = number(FIO, &what("clat p99"), p99)?;
    Ok((first, p99_us / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terse v3 line with `iops` and a p99 of `p99` µs in the section at `at`.
    fn line(name: &str, at: usize, bw: u32, iops: u32, p99: u32) -> String {
        let mut f: Vec<String> = vec![
            "3".into(),
            "fio-3.33".into(),
            name.into(),
            "0".into(),
            "0".into(),
        ];
        f.resize(READ + 2 * SECTION + 10, "0".into());
        f[at + BW_KIB] = bw.to_string();
        f[at + IOPS] = iops.to_string();
        for (i, p) in ["1.000000", "50.000000", "99.000000"].iter().enumerate() {
            f[at + CLAT_PCT + i] = format!("{p}%={}", if i == 2 { p99 } else { 1 });
        }
        f.join(";")
    }

    #[test]
    fn reads_each_job_from_its_own_section() {
        let text = [
            "cvm-fio-direct=1".to_string(),
            line("randread", READ, 40_000, 10_000, 250),
            line("randwrite", WRITE, 20_000, 5_000, 900),
            line("seqwrite", WRITE, 204_800, 200, 5000),
        ]
        .join("\n");
        let f = terse(&text).unwrap();
        assert!(f.values.contains(&(Metric::FioDirect, 1.0)));
        assert!(f.values.contains(&(Metric::FioRandreadIops, 10_000.0)));
        assert!(f.values.contains(&(Metric::FioRandwriteP99, 0.0009)));
        assert!(f
            .values
            .contains(&(Metric::FioSeqwriteBandwidth, 204_800.0 * 1024.0)));
        // A job cut short (its line missing or truncated) fails the parse.
        let cut = &text[..text.len() - 200];
        assert!(terse(cut).is_err());
        let no_seq = text.rsplit_once('\n').unwrap().0;
        assert!(terse(no_seq).unwrap_err().to_string().contains("seqwrite"));
    }
}
