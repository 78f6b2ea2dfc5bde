//! Published figures a site sets beside the measured ones: facts typed in by hand, each with
//! where it comes from, and the comparison of each with this host's ratio to native.
//!
//! The one set so far is the IBM study that set the standard for this comparison. Its ratios
//! were computed from the authors' own raw result logs (the runs the paper's tables and figures
//! plot), aggregated as the authors' scripts aggregate them; `docs/study.md` shows the
//! computation, so every figure here can be checked.

use cvm_proto::metric::Metric;

use crate::results::{BackendSummary, RunSummary};
use crate::stats::Estimate;

/// A published set of figures.
#[derive(Debug)]
pub struct Published {
    pub id: &'static str,
    /// Authors, title, venue and year.
    pub citation: &'static str,
    /// Where the raw figures were read.
    pub data: &'static str,
    pub figures: &'static [Figure],
}

/// One benchmark of the publication: its Docker/native and KVM/native ratios, oriented like the
/// cvm metric it stands beside (higher is better for throughput).
#[derive(Debug)]
pub struct Figure {
    /// The cvm metric whose ratio to native it is compared with.
    pub metric: Metric,
    /// The publication's benchmark and unit.
    pub benchmark: &'static str,
    pub docker: f64,
    pub kvm: f64,
    /// The table or figure, and the raw files and aggregation the ratios come from.
    pub source: &'static str,
}

pub const FELTER_2014: Published = Published {
    id: "felter-2014",
    citation: "W. Felter, A. Ferreira, R. Rajamony, J. Rubio: An Updated Performance Comparison \
               of Virtual Machines and Linux Containers, IBM Research Report RC25482, 2014 \
               (ISPASS 2015)",
    data: "the authors' raw result logs, github.com/thewmf/kvm-docker-comparison at commit \
           6820500",
    figures: &[
        Figure {
            metric: Metric::CpuScore,
            benchmark: "Linpack",
            docker: 290.8678 / 290.8286,
            kvm: 284.1987 / 290.8286,
            source: LINPACK,
        },
        Figure {
            metric: Metric::SysbenchCpuEvents,
            benchmark: "Linpack (the study's CPU benchmark)",
            docker: 290.8678 / 290.8286,
            kvm: 284.1987 / 290.8286,
            source: LINPACK,
        },
        Figure {
            metric: Metric::MemBandwidthTriad,
            benchmark: "STREAM Triad",
            docker: 25.1433 / 25.1503,
            kvm: 24.8676 / 25.1503,
            source: "GB/s, one socket, 16 threads: \
                     Stream/results/{linux,docker,vm}.single-socket.localalloc.log, 10 runs \
                     each (each STREAM's best of 10 iterations), their mean as the authors' \
                     munge.awk takes it: native 25.15, Docker 25.14, KVM 24.87 GB/s (on two \
                     sockets: 100% and 98.7%)",
        },
        Figure {
            metric: Metric::FioRandreadIops,
            benchmark: "fio random read",
            docker: 84092.0 / 84044.0,
            kvm: 46173.0 / 84044.0,
            source: "IOPS, 4 KiB, 8 jobs × queue depth 16, direct I/O: fio/results/linux.log \
                     and docker.log, and vm.log at commit b72ae3e (the \
                     KVM run the authors' fio results.xlsx charts; a later 32-vCPU run gives \
                     50.6%), job random-read-16x8, one run each: 84,044, 84,092 and 46,173 IOPS",
        },
        Figure {
            metric: Metric::RedisGetRps,
            benchmark: "Redis GET",
            docker: 58490.0 / 76724.0,
            kvm: 27868.0 / 76724.0,
            source: "requests/s, 4 clients, Docker with NAT, KVM with 1 vCPU: \
                     redis/results/run_{native,dockerbridge,vm}_*.txt, redis-benchmark GET at 4 \
                     clients, the mean of every run (12 native, 10 Docker, 10 KVM): 76,724, \
                     58,490 and 27,868 requests/s. The authors' own averages are not in the \
                     repository, so these are reconstructed: indicative, ±10% (Docker with \
                     --net=host: 103%)",
        },
        Figure {
            metric: Metric::PgbenchTps,
            benchmark: "MySQL OLTP, read-only",
            docker: 3178.0 / 3394.0,
            kvm: 2033.0 / 3394.0,
            source: "SysBench OLTP, transactions/s, 10 threads, Docker with NAT and AUFS: \
                     mysql/results/performance-governor/{bml,docker-nofs-nonet,KVM}/records-*, \
                     10 threads, the mean of 10 runs as the authors' proc.script takes it: \
                     3,394, 3,178 and 2,033 transactions/s (Docker with --net=host and a \
                     volume: 99.3%). A different database and a read-only load: PostgreSQL's \
                     pgbench here writes",
        },
    ],
};

const LINPACK: &str =
    "GFLOPS: linpack/results/{linux,docker,vm}.log, two sockets, 32 threads, the mean \
                       of 10 trials each as the authors' linpack.xlsx charts it: native 290.8, \
                       Docker 290.9, KVM 284.2 GFLOPS (KVM tuned: host CPU model, its topology, \
                       vCPUs pinned)";

const ALL: [&Published; 1] = [&FELTER_2014];

/// The publication with this id.
pub fn published(id: &str) -> Option<&'static Published> {
    ALL.into_iter().find(|p| p.id == id)
}

impl Published {
    pub fn figure(&self, metric: Metric) -> Option<&'static Figure> {
        self.figures.iter().find(|f| f.metric == metric)
    }
}

/// Which of the publication's columns a backend of this host stands beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counterpart {
    Docker,
    Kvm,
}

impl Counterpart {
    pub fn of(backend: &str) -> Option<Counterpart> {
        match backend {
            "docker" => Some(Counterpart::Docker),
            "vm" | "vm-minimal" | "vm-classic" | "vm-user" => Some(Counterpart::Kvm),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Counterpart::Docker => "Docker",
            Counterpart::Kvm => "KVM",
        }
    }

    pub fn value(self, f: &Figure) -> f64 {
        match self {
            Counterpart::Docker => f.docker,
            Counterpart::Kvm => f.kvm,
        }
    }
}

/// How this host's ratio stands to the publication's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agreement {
    /// The published ratio lies within this host's interval.
    Agrees,
    /// This host's whole interval lies below (or above) the published ratio.
    Lower,
    Higher,
    /// This host's VM ran under TCG emulation: not the hardware virtualisation the study measured.
    Emulated,
}

/// One backend of one scenario: its ratio to native here, and the publication's beside it.
#[derive(Debug, Clone)]
pub struct Measured {
    pub backend: String,
    pub ratio: Estimate,
    pub counterpart: Option<(Counterpart, f64, Agreement)>,
}

/// One scenario's row: its headline metric, the publication's figure for it (if it has one),
/// and every backend's ratio.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub metric: Metric,
    pub figure: Option<&'static Figure>,
    pub measured: Vec<Measured>,
}

/// The first throughput metric the run measured on native, as the verdict panel picks it.
fn headline(s: &RunSummary) -> Option<Metric> {
    let native = s.backend("native")?;
    cvm_proto::metric::THROUGHPUT_KEPT
        .into_iter()
        .find(|m| native.metrics.contains_key(m.name()))
}

fn agreement(b: &BackendSummary, ratio: &Estimate, published: f64) -> Agreement {
    if super::findings::is_tcg(b) {
        Agreement::Emulated
    } else if ratio.upper < published {
        Agreement::Lower
    } else if ratio.lower > published {
        Agreement::Higher
    } else {
        Agreement::Agrees
    }
}

/// The comparison of each run (named by its folder) with the publication: the runs the
/// publication has a figure for first, the others after, each in the order given.
pub fn compare(runs: &[(&str, &RunSummary)], p: &Published) -> Vec<Row> {
    let mut rows: Vec<Row> = runs
        .iter()
        .filter_map(|(name, s)| {
            let metric = headline(s)?;
            let figure = p.figure(metric);
            let measured = s
                .backends
                .iter()
                .filter(|b| b.info.backend != "native")
                .filter_map(|b| {
                    let ratio = b.metrics.get(metric.name())?.ratio_to_native?;
                    let counterpart = figure.zip(Counterpart::of(&b.info.backend)).map(|(f, c)| {
                        let v = c.value(f);
                        (c, v, agreement(b, &ratio, v))
                    });
                    Some(Measured {
                        backend: b.info.backend.clone(),
                        ratio,
                        counterpart,
                    })
                })
                .collect();
            Some(Row {
                scenario: name.to_string(),
                metric,
                figure,
                measured,
            })
        })
        .collect();
    rows.sort_by_key(|r| r.figure.is_none());
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_the_study_measured_come_first() {
        let (meta, rows) = crate::results::testdata::web_run();
        let web = crate::results::summarize(&meta, &rows);
        let cpu_rows: Vec<_> = rows
            .iter()
            .cloned()
            .map(|mut r| {
                if r.metric == "http_rps" {
                    r.metric = "cpu_score".into();
                }
                r
            })
            .collect();
        let cpu = crate::results::summarize(&meta, &cpu_rows);
        let order: Vec<String> = compare(&[("web", &web), ("cpu", &cpu)], &FELTER_2014)
            .into_iter()
            .map(|r| r.scenario)
            .collect();
        assert_eq!(order, ["cpu", "web"]);
    }

    #[test]
    fn every_reference_a_suite_may_name_is_here_with_its_figures() {
        for id in crate::scenario::REFERENCES {
            let p = published(id).unwrap_or_else(|| panic!("no figures for {id}"));
            assert!(!p.figures.is_empty());
            for f in p.figures {
                assert!(f.docker > 0.0 && f.kvm > 0.0, "{}", f.benchmark);
                assert!(!f.source.is_empty());
                // Each metric once: a row has one published figure.
                assert_eq!(p.figures.iter().filter(|g| g.metric == f.metric).count(), 1);
            }
        }
    }
}
