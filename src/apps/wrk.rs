//! `wrk --latency` and nginx's `stub_status` page.

use cvm_proto::metric::Metric;

use super::{after, number, Figures, ParseError};

const WRK: &str = "wrk";

/// `Requests/sec:`, the `N requests in` line, and the 50 % and 99 % rows of the latency
/// distribution (`--latency`). A run with socket errors or non-2xx responses measured
/// something else than the file being served, so it is refused with what went wrong.
pub fn summary(text: &str) -> Result<Figures, ParseError> {
    for bad in ["Non-2xx or 3xx responses:", "Socket errors:"] {
        if let Some(line) = text.lines().find(|l| l.contains(bad)) {
            // wrk prints the socket errors line only when there were some.
            return Err(ParseError::Refused {
                parser: WRK,
                why: line.trim().to_string(),
            });
        }
    }
    let rps = number(WRK, "Requests/sec", after(text, "Requests/sec:"))?;
    let requests = text.lines().find_map(|l| {
        let (n, rest) = l.trim().split_once(' ')?;
        rest.starts_with("requests in").then_some(n)
    });
    let requests = number(WRK, "`N requests in` line", requests)?;
    let p50 = latency(text, "50%")?;
    let p99 = latency(text, "99%")?;
    Ok(Figures {
        values: vec![
            (Metric::WrkRps, rps),
            (Metric::WrkLatencyP50, p50),
            (Metric::WrkLatencyP99, p99),
            (Metric::WrkRequests, requests),
        ],
        count: Some(requests as u64),
    })
}

/// One row of `Latency Distribution` (`  99%    1.23ms`), in seconds.
fn latency(text: &str, row: &str) -> Result<f64, ParseError> {
    let what = format!("latency distribution row {row} (run wrk with --latency)");
    let cell = text
        .lines()
        .skip_while(|l| !l.contains("Latency Distribution"))
        .find_map(|l| {
            let mut cells = l.split_whitespace();
            (cells.next() == Some(row)).then(|| cells.next()).flatten()
        });
    let cell = cell.ok_or_else(|| ParseError::Missing {
        parser: WRK,
        what: what.clone(),
    })?;
    // wrk's units, longest suffix first ("ms" before "s").
    let scales = [
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let (digits, scale) = scales
        .iter()
        .find_map(|(suffix, scale)| cell.strip_suffix(suffix).map(|d| (d, *scale)))
        .unwrap_or((cell, f64::NAN));
    let value = number(WRK, &what, Some(digits))? * scale;
    if value.is_nan() {
        return Err(ParseError::NotANumber {
            parser: WRK,
            what,
            text: cell.to_string(),
        });
    }
    Ok(value)
}

/// `stub_status`: `server accepts handled requests` then a line of three counters; the third.
pub fn stub_status(text: &str) -> Result<Figures, ParseError> {
    let counters = text
        .lines()
        .skip_while(|l| !l.contains("server accepts handled requests"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(2));
    let n = number("nginx-stub-status", "requests counter", counters)?;
    Ok(Figures {
        values: vec![(Metric::NginxServerRequests, n)],
        count: Some(n as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 3s test @ http://10.0.0.2:8080/static.bin
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.12us  120.02us   5.10ms   90.00%
    Req/Sec    12.80k     1.01k   14.00k    70.00%
  Latency Distribution
     50%  290.00us
     75%  340.00us
     90%  410.00us
     99%    1.20ms
  38412 requests in 3.00s, 44.12MB read
Requests/sec:  12801.77
Transfer/sec:     14.70MB
";

    #[test]
    fn reads_rate_count_and_latency_rows_in_seconds() {
        let f = summary(OUT).unwrap();
        assert_eq!(f.count, Some(38412));
        assert!(f.values.contains(&(Metric::WrkRps, 12801.77)));
        let p = |m| f.values.iter().find(|(x, _)| *x == m).unwrap().1;
        assert!((p(Metric::WrkLatencyP50) - 290e-6).abs() < 1e-12);
        assert!((p(Metric::WrkLatencyP99) - 1.2e-3).abs() < 1e-12);
    }

    #[test]
    fn a_cut_or_failing_run_is_an_error_not_a_zero() {
        let cut = OUT.split("  38412").next().unwrap();
        assert!(summary(cut)
            .unwrap_err()
            .to_string()
            .contains("Requests/sec"));
        let no_dist = OUT.replace("     99%    1.20ms\n", "");
        assert!(summary(&no_dist).unwrap_err().to_string().contains("99%"));
        let errors = OUT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 38412\nRequests/sec",
        );
        let e = summary(&errors).unwrap_err().to_string();
        assert!(e.contains("Non-2xx or 3xx responses: 38412"), "{e}");
        assert!(summary("unable to connect to 10.0.0.2:8080 Connection refused").is_err());
    }

    #[test]
    fn stub_status_reads_the_requests_counter() {
        let text = "Active connections: 1 \nserver accepts handled requests\n 7 7 1042 \n\
                    Reading: 0 Writing: 1 Waiting: 0 \n";
        assert_eq!(stub_status(text).unwrap().count, Some(1042));
        assert!(stub_status("<html>404 Not Found</html>").is_err());
    }
}
