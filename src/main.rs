//! The `sealform` binary: parse the command line, run the command, map
//! errors to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match sealform::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sealform: error: {}", sealform::cli::describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// jemalloc, not glibc's malloc: Sequoia allocates two 4 MiB write buffers
/// per sealed message, and under load glibc handed that memory back to the
/// kernel after each message and faulted it in again for the next one (a
/// `madvise`, page faults and TLB shootdowns per submission: about a fifth of
/// the end-to-end throughput; see BENCHMARKS.md). jemalloc keeps freed pages
/// for a second before returning them zero-filled to the kernel (options in
/// `.cargo/config.toml`; a background thread does it when the server is
/// idle); the server's memory at rest is the same as with glibc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
