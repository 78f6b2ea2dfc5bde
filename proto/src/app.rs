//! App scenarios' vocabulary: the parsers a scenario names for its client's output (and for a
//! query of the server's own count), each with the metrics it yields, and the line the `fio`
//! scenario's script writes to say whether direct I/O was allowed.

use crate::metric::Metric;

named_enum! {
    /// How a client's (or a server count query's) output is read.
    pub enum AppParser {
        /// `redis-benchmark --csv` of the `get` and `set` tests.
        RedisBenchmark => "redis-benchmark",
        /// `redis-cli INFO stats`: `total_commands_processed`.
        RedisInfo => "redis-info",
        /// `pgbench`'s summary: tps, average latency, transactions processed.
        Pgbench => "pgbench",
        /// One integer, `psql -At` of `pg_stat_database.xact_commit`.
        PgXactCommit => "pg-xact-commit",
        /// `fio --minimal` (terse version 3) lines of jobs named `randread`, `randwrite` and
        /// `seqwrite`, after a line [`FIO_DIRECT_LINE`]`0|1`.
        Fio => "fio",
        /// `sysbench cpu run` then `sysbench memory run`.
        Sysbench => "sysbench",
        /// `wrk --latency`: requests/s, the latency distribution's 50 % and 99 %, the
        /// requests completed; socket errors or non-2xx responses make it unreadable.
        Wrk => "wrk",
        /// nginx's `stub_status` page: its `requests` counter.
        NginxStubStatus => "nginx-stub-status",
    }
}

/// The environment variable that gives a command workload on native its io directory (its
/// `workload.io_dir` elsewhere, where a mount namespace puts the storage there).
pub const IO_DIR_ENV: &str = "CVM_IO_DIR";

/// The line (followed by 0 or 1) the fio scenario's script writes before its jobs: whether
/// the storage allowed direct I/O.
pub const FIO_DIRECT_LINE: &str = "cvm-fio-direct=";

impl AppParser {
    /// The metric a server count query's figure is recorded as (its change over the client's
    /// run); `None` for a client's parser.
    pub const fn server_metric(self) -> Option<Metric> {
        match self {
            AppParser::RedisInfo => Some(Metric::RedisServerCommands),
            AppParser::PgXactCommit => Some(Metric::PgServerCommits),
            AppParser::NginxStubStatus => Some(Metric::NginxServerRequests),
            _ => None,
        }
    }

    /// Every parser's name, for an error message.
    pub fn valid_names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
        names.join(", ")
    }
}
