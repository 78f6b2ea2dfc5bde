//! The HTTP throughput chart: requests per second per backend.

use super::grouped::grouped;
use super::{Chart, ChartKind};
use crate::results::RunSummary;
use cvm_proto::metric::Metric;

pub fn http_rps_chart(s: &RunSummary) -> Option<Chart> {
    let mut data = grouped(s, &[Metric::HttpRps.name()], |_| {
        "requests per second".into()
    });
    if data.groups.is_empty() {
        return None;
    }
    data.quantity = "requests per second".into();
    // Throughput is compared as a fraction of the best: always linear, from zero.
    data.log = false;
    Some(Chart {
        id: "http-rps",
        title: "HTTP throughput (medians)".into(),
        caption: format!(
            "Requests per second under identical load settings on every backend; whiskers: the \
             median's interval ({}).",
            crate::report::format::medians_levels(s, |m| m == Metric::HttpRps.name()).words()
        ),
        kind: ChartKind::Grouped(data),
    })
}
