//! `pgbench`'s summary and `psql -At` of `pg_stat_database.xact_commit`.

use cvm_proto::metric::Metric;

use super::{after, number, Figures, ParseError};

const PGBENCH: &str = "pgbench";

pub fn summary(text: &str) -> Result<Figures, ParseError> {
    let tps = number(PGBENCH, "tps", after(text, "tps = "))?;
    // Milliseconds in the output; seconds in cvm.
    let latency = number(
        PGBENCH,
        "latency average",
        after(text, "latency average = "),
    )? / 1e3;
    let what = "transactions actually processed";
    let done = number(
        PGBENCH,
        what,
        after(text, "number of transactions actually processed: "),
    )?;
    // `N/M` when a limit was set: the processed count is before the slash.
    Ok(Figures {
        values: vec![
            (Metric::PgbenchTps, tps),
            (Metric::PgbenchLatencyAvg, latency),
            (Metric::PgbenchTransactions, done),
        ],
        count: Some(done as u64),
    })
}

pub fn xact_commit(text: &str) -> Result<Figures, ParseError> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    let n = number("pg-xact-commit", "xact_commit", line)?;
    Ok(Figures {
        values: vec![(Metric::PgServerCommits, n)],
        count: Some(n as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_and_refuses_a_cut_one() {
        let text = "transaction type: <builtin: TPC-B (sort of)>\nnumber of clients: 4\n\
                    number of transactions actually processed: 1234\nlatency average = 3.241 ms\n\
                    tps = 308.512 (without initial connection time)\n";
        let f = summary(text).unwrap();
        assert_eq!(f.count, Some(1234));
        assert!(f.values.contains(&(Metric::PgbenchTps, 308.512)));
        let cut = text.split("tps =").next().unwrap();
        assert!(summary(cut).unwrap_err().to_string().contains("tps"));
        assert_eq!(xact_commit(" 42\n").unwrap().count, Some(42));
        assert!(xact_commit("psql: error: connection refused").is_err());
    }
}
