//! App scenarios' parsers: the output of a real program's own standard client (`redis-benchmark`,
//! `pgbench`, `fio`, `sysbench`, `wrk`) or of a query of the server's own counter (Redis `INFO
//! stats`, PostgreSQL's `pg_stat_database`, nginx's `stub_status`), turned into metrics named
//! and united in `cvm_proto`.
//!
//! A parser never guesses: output that lacks a figure it must have (a client cut short, an
//! error message, another program's output) is an error naming what is missing, so a broken
//! client makes a failed run, never a zero.

mod fio;
mod pgbench;
mod redis;
mod sysbench;
mod wrk;

pub use cvm_proto::app::AppParser;
use cvm_proto::metric::Metric;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("the output has no {what}: the client was cut short, failed, or is not {parser}")]
    Missing { parser: &'static str, what: String },
    #[error("{parser} reported a failure, so its figures do not measure the server: {why}")]
    Refused { parser: &'static str, why: String },
    #[error("{parser}'s figure {what} is not a number: `{text}`")]
    NotANumber {
        parser: &'static str,
        what: String,
        text: String,
    },
}

/// Reads `text` by `parser`; `argv` is the client's command line (a figure the output leaves
/// out, such as `redis-benchmark`'s requests per test, is read from it).
pub fn parse(parser: AppParser, text: &str, argv: &[String]) -> Result<Figures, ParseError> {
    match parser {
        AppParser::RedisBenchmark => redis::benchmark(text, argv),
        AppParser::RedisInfo => redis::info(text),
        AppParser::Pgbench => pgbench::summary(text),
        AppParser::PgXactCommit => pgbench::xact_commit(text),
        AppParser::Fio => fio::terse(text),
        AppParser::Sysbench => sysbench::cpu_and_memory(text),
        AppParser::Wrk => wrk::summary(text),
        AppParser::NginxStubStatus => wrk::stub_status(text),
    }
}

/// What a parser read: the figures to record, and the count cross-checked against the server's
/// (a client's requests or transactions; a server query's counter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub values: Vec<(Metric, f64)>,
    pub count: Option<u64>,
}

/// The number after `key` on the first line that has it (`key` included in the search).
fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let at = l.find(key)?;
        l[at + key.len()..].split_whitespace().next()
    })
}

fn number(parser: &'static str, what: &str, text: Option<&str>) -> Result<f64, ParseError> {
    let text = text.ok_or_else(|| ParseError::Missing {
        parser,
        what: what.to_string(),
    })?;
    let cleaned = text
        .trim()
        .trim_matches(|c| c == '"' || c == '(' || c == ',');
    match cleaned.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(ParseError::NotANumber {
            parser,
            what: what.to_string(),
            text: text.to_string(),
        }),
    }
}
