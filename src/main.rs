//! `cvm`: thin edge. Parse the command line, call into the library, print the error chain, and
//! exit with the documented code (0 done, 1 a run failed, 2 bad input or usage, 130 interrupted).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cvm::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with success, usage errors to stderr.
            let code = if e.use_stderr() {
                cvm::exit::USAGE
            } else {
                cvm::exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cvm::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("Error: {:#}", err.error);
            ExitCode::from(err.code)
        }
    }
}
