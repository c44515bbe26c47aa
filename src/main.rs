//! The `sealform` binary: parse the command line, run the command, map
//! errors to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match sealform::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sealform: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
