//! `redis-benchmark --csv` and `redis-cli INFO stats`.

use cvm_proto::metric::Metric;

use super::{number, Figures, ParseError};

const BENCH: &str = "redis-benchmark";
/// `redis-benchmark`'s requests per test when `-n` is not given.
const DEFAULT_REQUESTS: u64 = 100_000;

/// The GET and SET rows of `--csv` output: `"test","rps","avg_latency_ms","min_latency_ms",
/// "p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"`. Both must be there.
pub fn benchmark(text: &str, argv: &[String]) -> Result<Figures, ParseError> {
    let mut values = Vec::new();
    let tests = [
        (
            "SET",
            Metric::RedisSetRps,
            Metric::RedisSetLatencyP50,
            Metric::RedisSetLatencyP99,
        ),
        (
            "GET",
            Metric::RedisGetRps,
            Metric::RedisGetLatencyP50,
            Metric::RedisGetLatencyP99,
        ),
    ];
    for (test, rps, p50, p99) in tests {
        let row = text.lines().find_map(|l| {
            let cells: Vec<&str> = l.split(',').map(|c| c.trim().trim_matches('"')).collect();
            (cells.first() == Some(&test)).then_some(cells)
        });
        let row = row.ok_or_else(|| ParseError::Missing {
            parser: BENCH,
            what: format!("{test} row"),
        })?;
        let cell =
            |i: usize, what: &str| number(BENCH, &format!("{test} {what}"), row.get(i).copied());
        values.push((rps, cell(1, "rps")?));
        // Milliseconds in the output; seconds in cvm.
        values.push((p50, cell(4, "p50_latency_ms")? / 1e3));
        values.push((p99, cell(6, "p99_latency_ms")? / 1e3));
    }
    let per_test = argv
        .iter()
        .position(|a| a == "-n")
        .and_then(|i| argv.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_REQUESTS);
    let count = per_test * tests.len() as u64;
    values.push((Metric::RedisRequests, count as f64));
    Ok(Figures {
        values,
        count: Some(count),
    })
}

/// `total_commands_processed:N` of `INFO stats`.
pub fn info(text: &str) -> Result<Figures, ParseError> {
    let key = "total_commands_processed:";
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(str::trim);
    let n = number("redis-info", key, value)?;
    Ok(Figures {
        values: vec![(Metric::RedisServerCommands, n)],
        count: Some(n as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = r#""test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","86956.52","0.320","0.080","0.303","0.479","0.623","1.879"
"GET","93457.94","0.295","0.072","0.287","0.431","0.543","1.263"
"#;

    #[test]
    fn reads_both_tests_in_seconds_and_counts_n_per_test() {
        let argv: Vec<String> = ["redis-benchmark", "-n", "5000"].map(String::from).to_vec();
        let f = benchmark(CSV, &argv).unwrap();
        assert!(f.values.contains(&(Metric::RedisGetRps, 93457.94)));
        assert!(f.values.contains(&(Metric::RedisSetLatencyP99, 0.000623)));
        assert_eq!(f.count, Some(10_000));
    }

    #[test]
    fn a_missing_test_or_cut_row_is_an_error_not_a_zero() {
        let cut = CSV.rsplit_once("\"GET\"").unwrap().0;
        let e = benchmark(cut, &[]).unwrap_err();
        assert!(e.to_string().contains("GET row"), "{e}");
        let short = CSV.replace(",\"0.543\",\"1.263\"", "");
        assert!(benchmark(&short, &[]).is_err());
        assert!(benchmark("Could not connect to Redis at 10.0.0.1:6379", &[]).is_err());
    }

    #[test]
    fn info_reads_the_commands_counter() {
        let text = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1234\r\n";
        assert_eq!(info(text).unwrap().count, Some(1234));
        assert!(info("# Stats\r\n").is_err());
    }
}
