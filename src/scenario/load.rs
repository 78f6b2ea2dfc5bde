//! Finding, parsing and validating scenario files.

use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cvm_proto::applet::{Applet, IoArgs};

use cvm_proto::isolation::{Aggressor, AggressorArgs, AuditArgs, ContainArgs};

use cvm_proto::app::AppParser;

use super::model::{
    AppSpec, BackendKind, ClientSide, IoStorage, IsolationSpec, LoadSpec, NetworkMode, Readiness,
    Scenario,
};

/// The built-in scenarios, embedded from `scenarios/` so the binary works from any directory.
const BUILTINS: &[(&str, &str)] = &[
    ("startup", include_str!("../../scenarios/startup.toml")),
    (
        "startup-cold",
        include_str!("../../scenarios/startup-cold.toml"),
    ),
    ("web", include_str!("../../scenarios/web.toml")),
    ("cpu", include_str!("../../scenarios/cpu.toml")),
    ("memory", include_str!("../../scenarios/memory.toml")),
    ("io", include_str!("../../scenarios/io.toml")),
    ("density", include_str!("../../scenarios/density.toml")),
    ("sweep", include_str!("../../scenarios/sweep.toml")),
    ("isolation", include_str!("../../scenarios/isolation.toml")),
    ("redis", include_str!("../../scenarios/redis.toml")),
    ("fio", include_str!("../../scenarios/fio.toml")),
    ("sysbench", include_str!("../../scenarios/sysbench.toml")),
    ("postgres", include_str!("../../scenarios/postgres.toml")),
    ("nginx", include_str!("../../scenarios/nginx.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("no built-in scenario or file named `{name}`; built-in scenarios: {builtins}")]
    NotFound { name: String, builtins: String },
    #[error("cannot read scenario file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{col}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        col: usize,
        message: String,
    },
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _)| *n).collect()
}

/// Every built-in scenario, parsed (they are tested to parse).
pub fn builtins() -> Vec<Result<Scenario, ScenarioError>> {
    BUILTINS
        .iter()
        .map(|(name, text)| parse(text, &format!("<built-in {name}>")))
        .collect()
}

/// Whether a scenario (or suite) argument is a path rather than a built-in name: it has a `/`
/// or ends in `.toml`.
pub(super) fn looks_like_path(name_or_path: &str) -> bool {
    name_or_path.contains('/') || name_or_path.ends_with(".toml")
}

/// Loads a scenario by built-in name or by path. A name that is both wins as a file only when it
/// looks like a path (has a `/` or ends in `.toml`), so `web` always means the built-in.
pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
    if !looks_like_path(name_or_path) {
        if let Some((name, text)) = BUILTINS.iter().find(|(n, _)| *n == name_or_path) {
            return parse(text, &format!("<built-in {name}>"));
        }
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(ScenarioError::NotFound {
            name: name_or_path.to_string(),
            builtins: builtin_names().join(", "),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates one scenario text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let invalid = |span: Option<Range<usize>>, message: String| {
        let (line, col) = line_col(text, span.map_or(0, |s| s.start));
        ScenarioError::Invalid {
            origin: origin.to_string(),
            line,
            col,
            message,
        }
    };
    let scenario: Scenario =
        toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
    validate(&scenario, &Positions::of(text))
        .map_err(|(span, message)| invalid(Some(span), message))?;
    Ok(scenario)
}

/// Where keys that the model does not keep spans for sit in the text, for error positions.
#[derive(Default, serde::Deserialize)]
struct Positions {
    #[serde(default)]
    readiness: Option<toml::Spanned<toml::Table>>,
    #[serde(default)]
    resources: Option<ResourcePositions>,
}

#[derive(Default, serde::Deserialize)]
struct ResourcePositions {
    #[serde(default)]
    network: Option<toml::Spanned<toml::Value>>,
}

impl Positions {
    /// The text parsed already as a [`Scenario`], so this cannot fail in practice; positions
    /// fall back to the start of the file if it does.
    fn of(text: &str) -> Positions {
        toml::from_str(text).unwrap_or_default()
    }

    /// `resources.network` where it is written, else the `[readiness]` table.
    fn network_or_readiness(&self) -> Range<usize> {
        self.resources
            .as_ref()
            .and_then(|r| r.network.as_ref())
            .map(toml::Spanned::span)
            .or_else(|| self.readiness.as_ref().map(toml::Spanned::span))
            .unwrap_or(0..0)
    }
}

/// A validation failure: where in the text, and the message.
type Invalid = Result<(), (Range<usize>, String)>;

fn fail(span: Range<usize>, msg: impl Into<String>) -> Invalid {
    Err((span, msg.into()))
}

/// Checks what serde's types cannot: ranges, names, consistency between sections. One check
/// per section, in the order a reader meets them.
fn validate(s: &Scenario, at: &Positions) -> Invalid {
    validate_run(s)?;
    validate_workload(s)?;
    validate_resources(s, at)?;
    if let Some(load) = &s.load {
        validate_load(s, load)?;
    }
    if let Some(d) = &s.density {
        if !(1..=1000).contains(d.instances.get_ref()) {
            return fail(
                d.instances.span(),
                "`density.instances` must be between 1 and 1000",
            );
        }
    }
    if let Some(iso) = &s.isolation {
        validate_isolation(s, iso)?;
    }
    for cap in s.security.cap_add.get_ref() {
        if !cvm_proto::caps::NAMES.contains(&cap.as_str()) {
            return fail(
                s.security.cap_add.span(),
                format!("`security.cap_add`: unknown capability `{cap}` (kernel names, such as CAP_SYS_ADMIN)"),
            );
        }
    }
    validate_image(s)?;
    if let Some(app) = &s.app {
        validate_app(s, app)?;
    }
    Ok(())
}

/// The run's own settings: name, runs, time limits, backends.
fn validate_run(s: &Scenario) -> Invalid {
    if s.name.trim().is_empty() {
        return fail(0..0, "`name` must not be empty");
    }
    if *s.runs.get_ref() == 0 {
        return fail(s.runs.span(), "`runs` must be at least 1");
    }
    let t = *s.timeout_s.get_ref();
    if !(t.is_finite() && t > 0.0 && t <= 86_400.0) {
        return fail(
            s.timeout_s.span(),
            "`timeout_s` must be between 0 and 86400 seconds",
        );
    }
    let gap = *s.start.idle_gap_s.get_ref();
    if !(gap.is_finite() && (0.0..=3600.0).contains(&gap)) {
        return fail(
            s.start.idle_gap_s.span(),
            "`start.idle_gap_s` must be between 0 and 3600 seconds",
        );
    }
    if s.backends.get_ref().is_empty() {
        return fail(
            s.backends.span(),
            "`backends` must name at least one backend",
        );
    }
    for b in s.backends.get_ref() {
        if let Err(msg) = b.get_ref().parse::<BackendKind>() {
            return fail(b.span(), msg);
        }
    }
    Ok(())
}

/// `[workload]`: an applet with arguments its own option table accepts, or a command; the io
/// storage only where something writes to it.
fn validate_workload(s: &Scenario) -> Invalid {
    let io = &s.resources.io_storage;
    let writes_io = s.workload.applet() == Some(Applet::Io) || s.workload.io_dir.is_some();
    if *io.get_ref() != IoStorage::Disk && !writes_io {
        return fail(
            io.span(),
            "`resources.io_storage` applies only to the `io` applet or a command's \
             `workload.io_dir`; remove it or use `applet = \"io\"`",
        );
    }
    if let Some(dir) = &s.workload.io_dir {
        let ok = s.workload.command.is_some()
            && dir.get_ref().starts_with('/')
            && dir.get_ref().len() > 1;
        if !ok {
            return fail(
                dir.span(),
                "`workload.io_dir` is a command's io directory: an absolute path other than `/`, \
                 with `workload.command` (the io applet takes `--dir`)",
            );
        }
        if !(1..=1 << 20).contains(s.workload.io_mib.get_ref()) {
            return fail(
                s.workload.io_mib.span(),
                "`workload.io_mib` must be between 1 and 1048576",
            );
        }
    }
    match (&s.workload.applet, &s.workload.command) {
        (Some(_), Some(c)) => fail(
            c.span(),
            "give either `workload.applet` or `workload.command`, not both",
        ),
        (None, None) => fail(0..0, "`[workload]` needs `applet` or `command`"),
        (Some(a), None) => validate_applet(s, a),
        (None, Some(c)) if c.get_ref().is_empty() || c.get_ref()[0].is_empty() => {
            fail(c.span(), "`workload.command` must start with a program")
        }
        _ => Ok(()),
    }
}

/// The applet exists and its arguments pass the guest's own option tables: an argument the
/// applet would refuse fails here, at the scenario's line, instead of in every instance.
fn validate_applet(s: &Scenario, a: &toml::Spanned<String>) -> Invalid {
    let Some(applet) = Applet::from_name(a.get_ref()).filter(|a| *a != Applet::Init) else {
        let valid: Vec<&str> = Applet::workloads().map(Applet::name).collect();
        return fail(
            a.span(),
            format!(
                "unknown applet `{}`; valid applets: {}",
                a.get_ref(),
                valid.join(", ")
            ),
        );
    };
    let args: Vec<OsString> = s.workload.args.iter().map(OsString::from).collect();
    let checked = match applet {
        Applet::Io => IoArgs::parse(&args).map(drop),
        Applet::Aggressor => AggressorArgs::parse(&args).map(drop),
        Applet::Audit => AuditArgs::parse(&args).map(drop),
        Applet::Contain => ContainArgs::parse(&args).map(drop),
        other => other.parse(&args).map(drop),
    };
    match checked {
        Err(e) => fail(a.span(), format!("`workload.args` for `{applet}`: {e}")),
        Ok(()) => Ok(()),
    }
}

/// `[resources]` in range, and a readiness port only where the host can reach it.
fn validate_resources(s: &Scenario, at: &Positions) -> Invalid {
    let vcpus = *s.resources.vcpus.get_ref();
    if !(1..=64).contains(&vcpus) {
        return fail(
            s.resources.vcpus.span(),
            "`resources.vcpus` must be between 1 and 64",
        );
    }
    let mem = *s.resources.memory_mib.get_ref();
    if !(16..=1 << 20).contains(&mem) {
        return fail(
            s.resources.memory_mib.span(),
            "`resources.memory_mib` must be between 16 and 1048576",
        );
    }
    if let Some(pids) = &s.resources.pids {
        if !(16..=65536).contains(pids.get_ref()) {
            return fail(pids.span(), "`resources.pids` must be between 16 and 65536");
        }
    }
    if let Readiness::Tcp { port } | Readiness::Http { port, .. } = s.readiness {
        if port == 0 {
            return fail(0..0, "`readiness.port` must not be 0");
        }
        if s.resources.network == NetworkMode::None {
            // With no network, a container's port is unreachable from the host.
            return fail(
                at.network_or_readiness(),
                "`readiness` of kind \"http\" or \"tcp\" connects from the host, which \
                 `network = \"none\"` (the default) does not allow: set `network = \"private\"` \
                 in `[resources]`, or use `readiness` of kind \"marker\"",
            );
        }
    }
    Ok(())
}

/// An HTTP `[load]`: a port to load, durations, connections and rates in range.
fn validate_load(s: &Scenario, load: &LoadSpec) -> Invalid {
    let LoadSpec {
        duration_s,
        connections,
        client_threads,
        rate,
        rates,
        ..
    } = load;
    if !matches!(s.readiness, Readiness::Http { .. } | Readiness::Tcp { .. }) {
        return fail(
            0..0,
            "an HTTP `[load]` needs `readiness` of kind \"http\" or \"tcp\" (it names the port)",
        );
    }
    let d = *duration_s.get_ref();
    if !(d.is_finite() && d > 0.0 && d <= 3600.0) {
        return fail(
            duration_s.span(),
            "`load.duration_s` must be between 0 and 3600 seconds",
        );
    }
    if !(1..=1024).contains(connections.get_ref()) {
        return fail(
            connections.span(),
            "`load.connections` must be between 1 and 1024",
        );
    }
    if !(1..=*connections.get_ref().min(&64)).contains(client_threads.get_ref()) {
        return fail(
            client_threads.span(),
            "`load.client_threads` must be between 1 and `load.connections` (at most 64): \
             a thread without a connection would measure nothing",
        );
    }
    if let Some(rates) = rates {
        let list = rates.get_ref();
        if list.is_empty()
            || list.len() > 32
            || list.iter().any(|r| !(1.0..=10_000_000.0).contains(r))
        {
            return fail(
                rates.span(),
                "`load.rates` must list 1 to 32 rates, each between 1 and 10000000 requests \
                 per second",
            );
        }
    }
    if let Some(rate) = rate {
        if !(1.0..=10_000_000.0).contains(rate.get_ref()) {
            return fail(
                rate.span(),
                "`load.rate` must be between 1 and 10000000 requests per second",
            );
        }
    }
    Ok(())
}

/// `[image]`'s packages and files: package names as Debian spells them, absolute paths.
fn validate_image(s: &Scenario) -> Invalid {
    let bad_package = |p: &String| {
        p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.:".contains(c))
    };
    if let Some(p) = s.image.packages.iter().find(|p| bad_package(p)) {
        return fail(
            0..0,
            format!("`image.packages`: `{p}` is not a Debian package name"),
        );
    }
    if let Some(f) = s.image.files.iter().find(|f| !f.is_absolute()) {
        return fail(
            0..0,
            format!("`image.files`: `{}` is not an absolute path", f.display()),
        );
    }
    Ok(())
}

fn known_parser(p: &toml::Spanned<String>) -> Result<AppParser, (Range<usize>, String)> {
    AppParser::from_name(p.get_ref()).ok_or_else(|| {
        (
            p.span(),
            format!(
                "unknown parser `{}`; valid parsers: {}",
                p.get_ref(),
                AppParser::valid_names()
            ),
        )
    })
}

/// `[app]`: a known parser for the client and the server count, a host client's command and
/// the port it reaches, an inside client that is the workload and runs to completion.
fn validate_app(s: &Scenario, app: &AppSpec) -> Invalid {
    let client = &app.client;
    if known_parser(&client.parser)?.server_metric().is_some() {
        return fail(
            client.parser.span(),
            "`app.client.parser` reads a server's count: use it in `[app.server_count]`",
        );
    }
    if !(1..=100_000).contains(client.connections.get_ref()) {
        return fail(
            client.connections.span(),
            "`app.client.connections` must be between 1 and 100000",
        );
    }
    match (client.side, &client.command) {
        (ClientSide::Host, None) => {
            return fail(0..0, "`app.client` on the host needs a `command`")
        }
        (ClientSide::Host, Some(c)) if c.get_ref().first().is_none_or(String::is_empty) => {
            return fail(c.span(), "`app.client.command` must start with a program")
        }
        (ClientSide::Host, Some(_)) if s.readiness.port().is_none() => {
            return fail(
                0..0,
                "`app.client` on the host reaches the workload's port: set `readiness` of kind \
                 \"tcp\" or \"http\"",
            )
        }
        (ClientSide::Inside, Some(c)) => {
            return fail(
                c.span(),
                "an inside client is the workload itself (`workload.command`): remove \
                 `app.client.command`",
            )
        }
        (ClientSide::Inside, None) if !s.workload.runs_to_completion() => {
            return fail(
                0..0,
                "an inside client's output is read when the workload exits: set \
                 `workload.exits = true`",
            )
        }
        _ => {}
    }
    if let Some(count) = &app.server_count {
        if known_parser(&count.parser)?.server_metric().is_none() {
            return fail(
                count.parser.span(),
                "`app.server_count.parser` must read a server's count (redis-info, pg-xact-commit, \
                 nginx-stub-status)",
            );
        }
        if client.side != ClientSide::Host || count.command.get_ref().is_empty() {
            return fail(
                count.command.span(),
                "`[app.server_count]` is a host command read before and after a host-side client",
            );
        }
    }
    // cvm's own load runs first, then the client as its cross-check, both against the one
    // server: a client that is the workload, a rate sweep or an isolation victim has no room.
    if let Some(load) = &s.load {
        if client.side != ClientSide::Host || load.rates.is_some() || s.isolation.is_some() {
            return fail(
                0..0,
                "`[app]` with an HTTP `[load]` needs a host-side client and a single load phase \
                 (no `load.rates`, no `[isolation]`)",
            );
        }
    }
    Ok(())
}

/// `[isolation]` needs a victim under an HTTP load whose rate it chooses itself, and a pids
/// limit for its fork bomb and fork aggressor to run into.
fn validate_isolation(s: &Scenario, iso: &IsolationSpec) -> Result<(), (Range<usize>, String)> {
    let fail = |span: Range<usize>, msg: &str| Err((span, msg.to_string()));
    let Some(load) = &s.load else {
        return fail(
            0..0,
            "`[isolation]` measures a victim under an HTTP load: add a `[load]` section (and \
             `readiness` of kind \"http\")",
        );
    };
    if let Some(rate) = load.rate.as_ref() {
        return fail(
            rate.span(),
            "`load.rate` is chosen by the isolation experiment (a share of the calibrated \
             rate, `isolation.offered_share`): remove it",
        );
    }
    if let Some(rates) = load.rates.as_ref() {
        return fail(
            rates.span(),
            "`load.rates` cannot be combined with `[isolation]`",
        );
    }
    if s.density.is_some() {
        return fail(0..0, "`[density]` cannot be combined with `[isolation]`");
    }
    let c = *iso.calibration_s.get_ref();
    if !(c.is_finite() && c > 0.0 && c <= 600.0) {
        return fail(
            iso.calibration_s.span(),
            "`isolation.calibration_s` must be between 0 and 600 seconds",
        );
    }
    let share = *iso.offered_share.get_ref();
    if !(share.is_finite() && share > 0.0 && share <= 1.0) {
        return fail(
            iso.offered_share.span(),
            "`isolation.offered_share` must be above 0 and at most 1",
        );
    }
    let names = iso.aggressors.get_ref();
    for (i, name) in names.iter().enumerate() {
        if Aggressor::from_name(name).is_none() || names[..i].contains(name) {
            let valid: Vec<&str> = Aggressor::ALL.iter().map(|a| a.name()).collect();
            return Err((
                iso.aggressors.span(),
                format!(
                    "`isolation.aggressors`: `{name}` is unknown or repeated; valid kinds: {}",
                    valid.join(", ")
                ),
            ));
        }
    }
    let forks = iso.containment || names.iter().any(|n| n == Aggressor::Fork.name());
    if forks && s.resources.pids.is_none() {
        return fail(
            0..0,
            "the fork bomb and the fork aggressor must run into the instance's pids limit: set \
             `pids` in `[resources]` (or remove `fork` and set `containment = false`)",
        );
    }
    Ok(())
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn every_builtin_parses() {
        for (name, s) in builtin_names().into_iter().zip(builtins()) {
            let s = s.unwrap_or_else(|e| panic!("built-in {name}: {e}"));
            assert_eq!(s.name, name);
        }
    }

    #[test]
    fn cold_starts_need_a_sane_idle_gap() {
        let base = "name = \"x\"\n[workload]\napplet = \"hello\"\n[start]\nmode = \"cold\"\n";
        let e = err(&format!("{base}idle_gap_s = -1.0\n"));
        assert!(
            e.starts_with("t.toml:6:") && e.contains("idle_gap_s"),
            "{e}"
        );
        let e = err(&format!("{base}mode2 = 1\n"));
        assert!(e.contains("mode2"), "{e}");
        let e = err("name = \"x\"\n[workload]\napplet = \"hello\"\n[start]\nmode = \"lukewarm\"\n");
        assert!(e.contains("lukewarm") || e.contains("variant"), "{e}");
    }

    #[test]
    fn syntax_error_points_at_line_and_column() {
        let e = err("name = \"x\"\n[workload\napplet = \"hello\"\n");
        assert!(e.starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_position() {
        let e = err("name = \"x\"\nrunz = 3\n[workload]\napplet = \"hello\"\n");
        assert!(e.starts_with("t.toml:2:1:"), "{e}");
        assert!(e.contains("runz"), "{e}");
    }

    #[test]
    fn negative_runs_are_rejected_with_position() {
        let e = err("name = \"x\"\nruns = -1\n[workload]\napplet = \"hello\"\n");
        assert!(e.starts_with("t.toml:2:8:"), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let e = err("name = \"x\"\nruns = 0\n[workload]\napplet = \"hello\"\n");
        assert_eq!(e, "t.toml:2:8: `runs` must be at least 1");
        let e =
            err("name = \"x\"\nbackends = [\"native\", \"lxc\"]\n[workload]\napplet = \"hello\"\n");
        assert!(e.starts_with("t.toml:2:23: unknown backend `lxc`"), "{e}");
        let e = err("name = \"x\"\n[workload]\napplet = \"nope\"\n");
        assert!(e.starts_with("t.toml:3:10: unknown applet"), "{e}");
    }

    #[test]
    fn load_threads_and_rates_are_checked_where_they_are_written() {
        let web = |load: &str| {
            format!(
                "name = \"x\"\n[workload]\napplet = \"http\"\n[readiness]\nkind = \"http\"\n\
                 port = 8080\n[resources]\nnetwork = \"private\"\n[load]\nkind = \"http\"\n\
                 connections = 2\n{load}\n"
            )
        };
        let e = err(&web("client_threads = 3"));
        assert!(e.starts_with("t.toml:12:18: `load.client_threads`"), "{e}");
        let e = err(&web("rate = 0"));
        assert!(e.starts_with("t.toml:12:8: `load.rate`"), "{e}");
        let e = err(&web("rates = [100, -1]"));
        assert!(e.starts_with("t.toml:12:9: `load.rates`"), "{e}");
        let ok = parse(&web("client_threads = 2\nrates = [100, 200]"), "t.toml").unwrap();
        let load = ok.load.unwrap();
        assert_eq!(*load.client_threads.get_ref(), 2);
        assert_eq!(load.rates.unwrap().get_ref(), &vec![100.0, 200.0]);
    }

    #[test]
    fn applet_arguments_are_checked_with_the_guests_own_tables() {
        let e = err("name = \"x\"\n[workload]\napplet = \"io\"\nargs = [\"--size\", \"1\"]\n");
        assert!(
            e.starts_with("t.toml:3:10: `workload.args` for `io`"),
            "{e}"
        );
        assert!(e.contains("--size"), "{e}");
        let e = err("name = \"x\"\n[workload]\napplet = \"init\"\n");
        assert!(e.contains("unknown applet `init`"), "{e}");
    }

    #[test]
    fn isolation_needs_a_victim_under_load_and_a_pids_limit() {
        let victim = "name = \"x\"\n[workload]\napplet = \"http\"\n[readiness]\nkind = \"http\"\n\
                      port = 8080\n[resources]\nnetwork = \"private\"\n";
        let load = "[load]\nkind = \"http\"\n";
        let s = parse(&format!("{victim}pids = 64\n{load}[isolation]\n"), "t.toml").unwrap();
        let iso = s.isolation.as_ref().unwrap();
        assert_eq!(iso.aggressor_kinds().len(), 4);
        assert!(iso.audit && iso.containment);
        assert!(err(&format!("{victim}[isolation]\n")).contains("add a `[load]`"));
        assert!(err(&format!("{victim}{load}[isolation]\n")).contains("pids"));
        let no_forks =
            format!("{victim}{load}[isolation]\naggressors = [\"cpu\"]\ncontainment = false\n");
        assert!(parse(&no_forks, "t.toml").is_ok());
        let e = err(&format!(
            "{victim}pids = 64\n{load}[isolation]\naggressors = [\"cpu\", \"disk\"]\n"
        ));
        assert!(e.contains("`disk` is unknown") && e.contains("fork"), "{e}");
        let e = err(&format!(
            "{victim}pids = 64\n{load}rate = 100.0\n[isolation]\n"
        ));
        assert!(e.contains("`load.rate` is chosen"), "{e}");
        let e = err(&format!(
            "{victim}pids = 64\n{load}[isolation]\noffered_share = 1.5\n"
        ));
        assert!(e.contains("offered_share"), "{e}");
        let e = err(&format!("{victim}pids = 3\n"));
        assert!(
            e.starts_with("t.toml:9:") && e.contains("`resources.pids`"),
            "{e}"
        );
    }

    #[test]
    fn security_names_kernel_capabilities() {
        let base = "name = \"x\"\n[workload]\napplet = \"hello\"\n[security]\n";
        let s = parse(
            &format!("{base}cap_add = [\"CAP_SYS_ADMIN\"]\nseccomp = \"unconfined\"\n"),
            "t.toml",
        )
        .unwrap();
        assert!(!s.security.is_default());
        assert_eq!(
            s.security.capabilities().len(),
            cvm_proto::caps::DEFAULT.len() + 1
        );
        let e = err(&format!("{base}cap_add = [\"SYS_ADMIN\"]\n"));
        assert!(
            e.starts_with("t.toml:5:") && e.contains("unknown capability"),
            "{e}"
        );
        assert!(err(&format!("{base}seccomp = \"off\"\n")).contains("unconfined"));
    }

    #[test]
    fn the_io_aggressor_gets_the_io_storage_rule() {
        let s = parse(
            "name = \"x\"\n[workload]\napplet = \"aggressor\"\n\
             args = [\"--kind\", \"io\", \"--dir\", \"/data\"]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            s.workload.io_target(),
            Some(("/data".to_string(), super::super::model::AGGRESSOR_IO_MIB))
        );
        let cpu = parse(
            "name = \"x\"\n[workload]\napplet = \"aggressor\"\nargs = [\"--kind\", \"cpu\"]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(cpu.workload.io_target(), None);
    }

    #[test]
    fn io_storage_is_validated_and_only_for_the_io_applet() {
        let io = "name = \"x\"\n[workload]\napplet = \"io\"\n[resources]\n";
        let s = parse(&format!("{io}io_storage = \"memory\"\n"), "t.toml").unwrap();
        assert_eq!(*s.resources.io_storage.get_ref(), IoStorage::Memory);
        let s = parse(io, "t.toml").unwrap();
        assert_eq!(*s.resources.io_storage.get_ref(), IoStorage::Disk);
        let e = err(&format!("{io}io_storage = \"ssd\"\n"));
        assert!(e.starts_with("t.toml:5:14:"), "{e}");
        assert!(e.contains("disk") && e.contains("memory"), "{e}");
        let e = err(
            "name = \"x\"\n[workload]\napplet = \"hello\"\n[resources]\nio_storage = \"memory\"\n",
        );
        assert_eq!(
            e,
            "t.toml:5:14: `resources.io_storage` applies only to the `io` applet or a command's \
             `workload.io_dir`; remove it or use `applet = \"io\"`"
        );
    }

    #[test]
    fn the_io_directory_is_read_in_both_option_forms() {
        for args in [
            r#"["--dir=/data", "--mib", "8"]"#,
            r#"["--mib=8", "--dir", "/data"]"#,
        ] {
            let text = format!("name = \"x\"\n[workload]\napplet = \"io\"\nargs = {args}\n");
            let s = parse(&text, "t.toml").unwrap();
            assert_eq!(
                s.workload.io_target(),
                Some(("/data".to_string(), 8)),
                "{args}"
            );
        }
    }

    #[test]
    fn a_port_readiness_without_a_network_is_rejected_where_it_is_written() {
        let http = "name = \"x\"\n[workload]\napplet = \"http\"\n\
                    [readiness]\nkind = \"http\"\nport = 8080\n";
        // No network given: the error points at the readiness table.
        let e = err(http);
        assert!(e.starts_with("t.toml:4:1: "), "{e}");
        assert!(
            e.contains("network = \"private\"") && e.contains("\"marker\""),
            "{e}"
        );
        // network = "none" written out: the error points at its value.
        let e = err(&format!("{http}[resources]\nnetwork = \"none\"\n"));
        assert!(e.starts_with("t.toml:8:11: "), "{e}");
        let tcp = "name = \"x\"\n[workload]\napplet = \"http\"\n\
                   [readiness]\nkind = \"tcp\"\nport = 80\n";
        assert!(err(tcp).starts_with("t.toml:4:1: "));
        // A private network, or a marker readiness, is fine.
        for ok in [
            format!("{http}[resources]\nnetwork = \"private\"\n"),
            format!("{tcp}[resources]\nnetwork = \"private\"\n"),
            "name = \"x\"\n[workload]\napplet = \"hello\"\n[readiness]\nkind = \"marker\"\n".into(),
        ] {
            parse(&ok, "t.toml").unwrap_or_else(|e| panic!("{e}\n{ok}"));
        }
    }

    #[test]
    fn an_app_client_is_checked_for_its_side_parser_and_port() {
        let server = "name = \"a\"\n[workload]\ncommand = [\"/bin/srv\"]\n";
        let port = "[readiness]\nkind = \"tcp\"\nport = 6379\n[resources]\nnetwork = \"private\"\n";
        let host = "[app.client]\nside = \"host\"\nparser = \"redis-benchmark\"\n";
        let cmd = "command = [\"redis-benchmark\", \"-p\", \"{port}\"]\n";
        parse(&format!("{server}{port}{host}{cmd}"), "t.toml").unwrap();
        assert!(err(&format!("{server}{port}{host}")).contains("needs a `command`"));
        assert!(err(&format!("{server}{host}{cmd}")).contains("readiness"));
        let bad = format!(
            "{server}{port}{}{cmd}",
            host.replace("redis-benchmark", "nope")
        );
        let e = err(&bad);
        assert!(
            e.starts_with("t.toml:") && e.contains("valid parsers: redis-benchmark"),
            "{e}"
        );
        let count = "[app.server_count]\ncommand = [\"redis-cli\"]\nparser = \"redis-benchmark\"\n";
        assert!(err(&format!("{server}{port}{host}{cmd}{count}")).contains("server's count"));
        // An inside client is the workload, read when it exits.
        let inside = "[app.client]\nside = \"inside\"\nparser = \"sysbench\"\n";
        assert!(err(&format!("{server}{inside}")).contains("exits = true"));
        let exits = "name = \"a\"\n[workload]\ncommand = [\"/bin/srv\"]\nexits = true\n";
        parse(&format!("{exits}{inside}"), "t.toml").unwrap();
        assert!(err(&format!("{exits}{inside}{cmd}")).contains("workload itself"));
        // cvm's own load, then the client as its cross-check; never beside a rate sweep.
        let load = "[load]\nkind = \"http\"\nduration_s = 1\n";
        parse(&format!("{server}{port}{host}{cmd}{load}"), "t.toml").unwrap();
        let sweep = format!("{load}rates = [100, 200]\n");
        let e = err(&format!("{server}{port}{host}{cmd}{sweep}"));
        assert!(e.contains("single load phase"), "{e}");
    }

    #[test]
    fn a_commands_io_dir_gets_the_io_storage_rule() {
        let s = parse(
            "name = \"f\"\n[workload]\ncommand = [\"/bin/sh\"]\nio_dir = \"/data\"\nio_mib = 96\n\
             [resources]\nio_storage = \"memory\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(s.workload.io_target(), Some(("/data".to_string(), 96)));
        let e = err("name = \"f\"\n[workload]\napplet = \"hello\"\nio_dir = \"/data\"\n");
        assert!(e.contains("`workload.io_dir`"), "{e}");
        let e = err("name = \"f\"\n[workload]\ncommand = [\"/bin/sh\"]\nio_dir = \"data\"\n");
        assert!(e.contains("absolute"), "{e}");
        let e = err(
            "name = \"f\"\n[workload]\ncommand = [\"/bin/sh\"]\n[image]\npackages = [\"a b\"]\n",
        );
        assert!(e.contains("Debian package name"), "{e}");
    }

    #[test]
    fn missing_scenario_lists_builtins() {
        let e = load("no-such-scenario").unwrap_err().to_string();
        assert!(e.contains("startup") && e.contains("web"), "{e}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
