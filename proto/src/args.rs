//! A tiny `--name value` flag parser, shared by the guest's applets and the host.
//!
//! The guest is a static binary that runs as PID 1 and is timed against a bare fork+exec, so it
//! carries no argument-parsing framework: each applet names its options in a table and reads
//! typed values with defaults. The host parses a scenario's applet arguments with the same
//! tables (see [`crate::applet`]), so both sides always agree on what a command line means.
//! `--name=value` is accepted too, and numbers may use `_` as a digit separator (`20_000_000`).

use std::ffi::OsString;
use std::fmt;
use std::str::FromStr;

/// One option an applet accepts.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// The name without the leading `--`.
    pub name: &'static str,
    /// `true` for `--name value`, `false` for a bare switch like `--bandwidth`.
    pub takes_value: bool,
}

impl Opt {
    /// An option that takes a value.
    pub const fn value(name: &'static str) -> Opt {
        Opt {
            name,
            takes_value: true,
        }
    }

    /// A switch.
    pub const fn switch(name: &'static str) -> Opt {
        Opt {
            name,
            takes_value: false,
        }
    }
}

/// Why the command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// `--help` or `-h`: not an error, the caller prints usage and exits 0.
    Help,
    /// An option the applet does not know.
    Unknown(String),
    /// `--name` at the end with no value.
    MissingValue(&'static str),
    /// `--switch=value`.
    UnexpectedValue(&'static str),
    /// A value that does not parse as the option's type.
    Invalid { name: &'static str, value: String },
    /// A word that is not an option.
    Positional(String),
    /// An argument that is not valid UTF-8.
    NotUnicode(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Help => write!(f, "help requested"),
            ArgError::Unknown(arg) => write!(f, "unknown option '{arg}'"),
            ArgError::MissingValue(name) => write!(f, "option '--{name}' needs a value"),
            ArgError::UnexpectedValue(name) => write!(f, "option '--{name}' takes no value"),
            ArgError::Invalid { name, value } => {
                write!(f, "invalid value '{value}' for '--{name}'")
            }
            ArgError::Positional(arg) => write!(f, "unexpected argument '{arg}'"),
            ArgError::NotUnicode(arg) => write!(f, "argument '{arg}' is not valid UTF-8"),
        }
    }
}

impl std::error::Error for ArgError {}

/// The options found on a command line.
#[derive(Debug, Default)]
pub struct Parsed {
    found: Vec<(&'static str, Option<String>)>,
}

/// Parses `args` (without the applet name) against the applet's option table.
pub fn parse(args: &[OsString], opts: &[Opt]) -> Result<Parsed, ArgError> {
    let mut parsed = Parsed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| ArgError::NotUnicode(arg.to_string_lossy().into()))?;
        if arg == "--help" || arg == "-h" {
            return Err(ArgError::Help);
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ArgError::Positional(arg.to_string()));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let opt = opts
            .iter()
            .find(|opt| opt.name == name)
            .ok_or_else(|| ArgError::Unknown(arg.to_string()))?;
        let value = match (opt.takes_value, inline) {
            (true, Some(value)) => Some(value.to_string()),
            (true, None) => {
                let next = iter.next().ok_or(ArgError::MissingValue(opt.name))?;
                let next = next
                    .to_str()
                    .ok_or_else(|| ArgError::NotUnicode(next.to_string_lossy().into()))?;
                Some(next.to_string())
            }
            (false, Some(_)) => return Err(ArgError::UnexpectedValue(opt.name)),
            (false, None) => None,
        };
        parsed.found.push((opt.name, value));
    }
    Ok(parsed)
}

impl Parsed {
    /// Whether a switch was given.
    pub fn switch(&self, name: &str) -> bool {
        self.found.iter().any(|(n, _)| *n == name)
    }

    /// The value of an option; the last one wins when it is repeated.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.found
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// A number (or anything else `FromStr`), or `default` when the option is absent.
    pub fn number<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ArgError> {
        match self.value(name) {
            None => Ok(default),
            Some(raw) => raw.replace('_', "").parse().map_err(|_| ArgError::Invalid {
                name,
                value: raw.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt::value("port"),
        Opt::value("bind"),
        Opt::switch("bandwidth"),
    ];

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn reads_values_switches_and_defaults() {
        let p = parse(&args(&["--port", "9000", "--bandwidth"]), OPTS).unwrap();
        assert_eq!(p.number::<u16>("port", 8080), Ok(9000));
        assert!(p.switch("bandwidth"));
        assert_eq!(p.value("bind"), None);
        assert_eq!(p.number::<u64>("bind", 7), Ok(7));
    }

    #[test]
    fn accepts_inline_values_separators_and_repeats() {
        let p = parse(
            &args(&["--port=1_000", "--bind", "::1", "--port", "2_000"]),
            OPTS,
        )
        .unwrap();
        assert_eq!(p.number::<u32>("port", 0), Ok(2000));
        assert_eq!(p.value("bind"), Some("::1"));
        assert!(!p.switch("bandwidth"));
    }

    #[test]
    fn empty_command_line_is_fine() {
        let p = parse(&[], OPTS).unwrap();
        assert_eq!(p.number::<u16>("port", 8080), Ok(8080));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            parse(&args(&["--nope"]), OPTS).unwrap_err(),
            ArgError::Unknown("--nope".into())
        );
        assert_eq!(
            parse(&args(&["--port"]), OPTS).unwrap_err(),
            ArgError::MissingValue("port")
        );
        assert_eq!(
            parse(&args(&["--bandwidth=yes"]), OPTS).unwrap_err(),
            ArgError::UnexpectedValue("bandwidth")
        );
        assert_eq!(
            parse(&args(&["stray"]), OPTS).unwrap_err(),
            ArgError::Positional("stray".into())
        );
        assert_eq!(
            parse(&args(&["-p"]), OPTS).unwrap_err(),
            ArgError::Positional("-p".into())
        );
        assert_eq!(parse(&args(&["--help"]), OPTS).unwrap_err(), ArgError::Help);
        let p = parse(&args(&["--port", "http"]), OPTS).unwrap();
        assert_eq!(
            p.number::<u16>("port", 0),
            Err(ArgError::Invalid {
                name: "port",
                value: "http".into()
            })
        );
        let p = parse(&args(&["--port", "70000"]), OPTS).unwrap();
        assert!(p.number::<u16>("port", 0).is_err());
        let p = parse(&args(&["--port", "-1"]), OPTS).unwrap();
        assert!(p.number::<u64>("port", 0).is_err());
    }

    #[test]
    fn refuses_non_unicode() {
        use std::os::unix::ffi::OsStringExt;
        let bad = vec![
            OsString::from("--bind"),
            OsString::from_vec(vec![0xff, 0xfe]),
        ];
        assert!(matches!(parse(&bad, OPTS), Err(ArgError::NotUnicode(_))));
    }
}
