//! `sysbench cpu run` and `sysbench memory run`, one after the other in one output.

use cvm_proto::metric::Metric;

use super::{after, number, Figures, ParseError};

const SYSBENCH: &str = "sysbench";

pub fn cpu_and_memory(text: &str) -> Result<Figures, ParseError> {
    let events = number(
        SYSBENCH,
        "cpu events per second",
        after(text, "events per second:"),
    )?;
    // `102400.00 MiB transferred (12345.67 MiB/sec)`
    let mib_s = text
        .lines()
        .find(|l| l.contains("MiB transferred ("))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|l| l.split_whitespace().next());
    let mib_s = number(SYSBENCH, "memory MiB/sec", mib_s)?;
    Ok(Figures {
        values: vec![
            (Metric::SysbenchCpuEvents, events),
            (Metric::SysbenchMemoryBandwidth, mib_s * 1024.0 * 1024.0),
        ],
        count: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_events_and_memory_bandwidth_in_bytes() {
        let text = "CPU speed:\n    events per second:  1234.56\n\nTotal operations: 10 \
                    (1.00 per second)\n\n2048.00 MiB transferred (1024.50 MiB/sec)\n";
        let f = cpu_and_memory(text).unwrap();
        assert!(f.values.contains(&(Metric::SysbenchCpuEvents, 1234.56)));
        assert!(f
            .values
            .contains(&(Metric::SysbenchMemoryBandwidth, 1024.5 * 1048576.0)));
        let cpu_only = text.split("2048.00").next().unwrap();
        assert!(cpu_and_memory(cpu_only).is_err());
    }
}
