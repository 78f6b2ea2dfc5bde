//! An app scenario's client, measured: a host command (pinned to the load client's CPUs) run
//! against the ready instance with the server's own count read before and after it, or the
//! workload itself as an inside client whose output is read when it exits. Output goes through
//! the scenario's parser (`crate::apps`): a client that fails, or whose output the parser
//! cannot read, makes a failed run with the reason, never a zero.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use cvm_proto::app::AppParser;

use super::runner::{RunEnd, Runner};
use crate::apps::{self, Figures};
use crate::backend::{command, placement::HostPin, Instance};
use crate::measure::startup;
use crate::results::{Phase, ResultsError};
use crate::scenario::{AppCommand, AppSpec, ClientSide};

/// How many of a failed client's last output lines its run's note quotes.
const QUOTED_LINES: usize = 4;
/// How long an inside client's last output lines may trail its exit.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

impl Runner<'_> {
    /// A host-side client's run against the ready instance; nothing for an inside client.
    pub(super) fn run_app_client(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        iteration: u32,
        phase: Phase,
    ) -> Result<RunEnd, ResultsError> {
        let Some(app) = self.scenario.app.clone() else {
            return Ok(RunEnd::Measured);
        };
        if app.client.side != ClientSide::Host {
            return Ok(RunEnd::Measured);
        }
        let Some(port) = self.scenario.readiness.port() else {
            return Ok(RunEnd::Failed(
                "a host-side client needs a readiness port".into(),
            ));
        };
        let Some(addr) = instance.endpoint(port) else {
            return Ok(RunEnd::Failed(format!(
                "the instance has no host endpoint for port {port}"
            )));
        };
        match self.measure_host_client(&app, addr, instance, timeline) {
            Ok(figures) => {
                self.record_figures(&figures, iteration, phase)?;
                Ok(RunEnd::Measured)
            }
            Err(reason) => Ok(RunEnd::Failed(reason)),
        }
    }

    /// The server's count, the client, the server's count again; the counts checked.
    fn measure_host_client(
        &self,
        app: &AppSpec,
        addr: SocketAddr,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
    ) -> Result<Figures, String> {
        let count = |c: &AppCommand| self.query_count(c, addr);
        let before = app.server_count.as_ref().map(count).transpose()?;
        let argv = app.client.command.as_ref().map(|c| c.get_ref().clone());
        let parser = known(app.client.parser.get_ref())?;
        let mut figures = run_parsed(
            &argv.unwrap_or_default(),
            parser,
            addr,
            &self.client_cpus,
            self.timeout,
        )?;
        // A server that died under the client makes the figures meaningless.
        startup::drain(instance, timeline);
        if let Some((exit, _)) = timeline.exit {
            return Err(format!(
                "the workload ended with {exit} while its client ran"
            ));
        }
        let Some((count_parser, before)) = before else {
            return Ok(figures);
        };
        let after = app.server_count.as_ref().map(count).transpose()?;
        let after = after.map_or(before, |(_, n)| n);
        // The first count query is itself counted by the server once.
        let served = after.saturating_sub(before).saturating_sub(1);
        let counted = figures.count.unwrap_or_default();
        if let Some(reason) = count_disagrees(served, counted, *app.client.connections.get_ref()) {
            return Err(reason);
        }
        if let Some(metric) = count_parser.server_metric() {
            figures.values.push((metric, served as f64));
        }
        Ok(figures)
    }

    /// The app's server count now (`[app.server_count]`), for a load phase that runs before
    /// the client; `None` without one. The query itself is counted by the server once between
    /// two reads.
    pub(super) fn app_server_count(&self, addr: SocketAddr) -> Option<Result<u64, String>> {
        let app = self.scenario.app.as_ref()?;
        let c = app.server_count.as_ref()?;
        Some(self.query_count(c, addr).map(|(_, n)| n))
    }

    /// One server count query, run and parsed.
    fn query_count(&self, c: &AppCommand, addr: SocketAddr) -> Result<(AppParser, u64), String> {
        let parser = known(c.parser.get_ref())?;
        let f = run_parsed(c.command.get_ref(), parser, addr, &[], self.timeout)?;
        Ok((parser, f.count.unwrap_or_default()))
    }

    /// An inside client's output (the workload's), read once it exited successfully.
    pub(super) fn record_inside_client(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        iteration: u32,
        phase: Phase,
    ) -> Result<RunEnd, ResultsError> {
        let Some(app) = &self.scenario.app else {
            return Ok(RunEnd::Measured);
        };
        if app.client.side != ClientSide::Inside {
            return Ok(RunEnd::Measured);
        }
        let parser = match known(app.client.parser.get_ref()) {
            Ok(p) => p,
            Err(reason) => return Ok(RunEnd::Failed(reason)),
        };
        let argv = self
            .scenario
            .workload
            .command
            .as_ref()
            .map(|c| c.get_ref().clone());
        let argv = argv.unwrap_or_default();
        let transcript = |t: &startup::Timeline| {
            let lines: Vec<&str> = t.transcript.iter().map(String::as_str).collect();
            lines.join("\n")
        };
        let mut parsed = apps::parse(parser, &transcript(timeline), &argv);
        if parsed.is_err() {
            // The last lines may still be on their way: wait for them once, then judge.
            startup::settle(instance, timeline, OUTPUT_GRACE);
            parsed = apps::parse(parser, &transcript(timeline), &argv);
        }
        match parsed {
            Ok(figures) => {
                self.record_figures(&figures, iteration, phase)?;
                Ok(RunEnd::Measured)
            }
            Err(e) => {
                let text = transcript(timeline);
                Ok(RunEnd::Failed(unreadable(
                    "the workload",
                    parser,
                    &e,
                    &text,
                )))
            }
        }
    }

    /// For an inside client that failed: its last output lines, as the end of the run's note
    /// (empty for any other workload, whose output is data of its own).
    pub(super) fn inside_client_said(&self, timeline: &startup::Timeline) -> String {
        let inside = self
            .scenario
            .app
            .as_ref()
            .is_some_and(|a| a.client.side == ClientSide::Inside);
        if !inside {
            return String::new();
        }
        let lines: Vec<&str> = timeline.transcript.iter().map(String::as_str).collect();
        format!("; its last output: {}", last_lines(&lines.join("\n")))
    }

    fn record_figures(
        &mut self,
        figures: &Figures,
        iteration: u32,
        phase: Phase,
    ) -> Result<(), ResultsError> {
        for &(metric, value) in &figures.values {
            self.sample(iteration, phase, metric, value)?;
        }
        Ok(())
    }
}

fn known(name: &str) -> Result<AppParser, String> {
    AppParser::from_name(name).ok_or_else(|| format!("unknown parser `{name}`"))
}

/// `argv` with `{host}` and `{port}` replaced by `addr`'s.
pub(super) fn substitute(argv: &[String], addr: SocketAddr) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace("{host}", &addr.ip().to_string())
                .replace("{port}", &addr.port().to_string())
        })
        .collect()
}

/// Runs a host command against `addr` (its threads on `cpus` where given) and parses what it
/// printed; the reason it cannot be trusted otherwise.
fn run_parsed(
    argv: &[String],
    parser: AppParser,
    addr: SocketAddr,
    cpus: &[usize],
    limit: Duration,
) -> Result<Figures, String> {
    let argv = substitute(argv, addr);
    let Some((program, args)) = argv.split_first() else {
        return Err("the client's command is empty".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    // The child inherits the pinned thread's CPUs: the load client's, apart from the instance's.
    let pin = (!cpus.is_empty()).then(|| HostPin::to(cpus)).flatten();
    let done = command::run_within(&mut cmd, limit);
    drop(pin);
    let done = done.map_err(|e| format!("the client `{program}` did not run: {e}"))?;
    let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
    if !done.success() {
        return Err(format!(
            "the client `{program}` ended with {}: {}",
            done.status,
            last_lines(&format!("{stdout}\n{}", done.stderr_text()))
        ));
    }
    apps::parse(parser, &stdout, &argv).map_err(|e| unreadable(program, parser, &e, &stdout))
}

fn unreadable(who: &str, parser: AppParser, e: &apps::ParseError, text: &str) -> String {
    format!(
        "the output of {who} cannot be read by the `{parser}` parser: {e}; its last output: {}",
        last_lines(text)
    )
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(QUOTED_LINES)..];
    if tail.is_empty() {
        "(nothing)".into()
    } else {
        tail.join(" | ")
    }
}

/// Why the server's count over the client's run and the client's own disagree, if they do by
/// more than the requests the client's connections may have had in flight (or its set-up
/// commands): a client that counted more than the server did is always wrong.
pub(super) fn count_disagrees(served: u64, counted: u64, connections: u64) -> Option<String> {
    if served < counted {
        return Some(format!(
            "the client counted {counted} requests but the server's own count rose by only \
             {served}: the client's figures cannot be trusted"
        ));
    }
    let gap = served - counted;
    (gap > connections).then(|| {
        format!(
            "the server's own count rose by {served} while the client counted {counted}: they \
             differ by {gap}, more than the client's {connections} connections explain"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_the_instances_address() {
        let addr: SocketAddr = "10.1.2.3:6379".parse().unwrap();
        let argv = ["redis-benchmark", "-h", "{host}", "-p", "{port}"].map(String::from);
        assert_eq!(
            substitute(&argv, addr),
            ["redis-benchmark", "-h", "10.1.2.3", "-p", "6379"].map(String::from)
        );
    }

    #[test]
    fn counts_agree_within_the_connections_only() {
        assert_eq!(count_disagrees(10_002, 10_000, 4), None);
        assert!(count_disagrees(10_005, 10_000, 4)
            .unwrap()
            .contains("differ by 5"));
        assert!(count_disagrees(9_999, 10_000, 4).is_some());
    }

    #[test]
    fn a_client_that_fails_or_prints_too_little_is_a_reason_not_a_zero() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let limit = Duration::from_secs(10);
        let fails = ["/bin/sh", "-c", "echo partial; exit 3"].map(String::from);
        let e = run_parsed(&fails, AppParser::RedisBenchmark, addr, &[], limit).unwrap_err();
        assert!(e.contains("exit code 3") && e.contains("partial"), "{e}");
        let cut = ["/bin/sh", "-c", "echo '\"SET\",\"100.0\"'"].map(String::from);
        let e = run_parsed(&cut, AppParser::RedisBenchmark, addr, &[], limit).unwrap_err();
        assert!(
            e.contains("cannot be read by the `redis-benchmark` parser"),
            "{e}"
        );
        let missing = ["/nonexistent/client"].map(String::from);
        assert!(run_parsed(&missing, AppParser::Sysbench, addr, &[], limit).is_err());
    }
}
