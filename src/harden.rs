//! Process hardening at start: no core dumps, not ptrace-able by other
//! processes of the same user, and optionally all memory locked so plaintext
//! never reaches swap. Every command that holds a secret calls it first:
//! `serve` (plaintext in flight), `decrypt` and `keygen` (secret keys,
//! passphrases, plaintext), `pull` and `ack` (the staff token).
//!
//! It only changes this process's own limits and flags, through `rustix`
//! (the crate forbids `unsafe`). It never touches files or the network.

/// Why hardening the process failed.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    /// `setrlimit(RLIMIT_CORE, 0)` failed.
    #[error("cannot disable core dumps (setrlimit RLIMIT_CORE): {0}")]
    CoreLimit(std::io::Error),
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): {0}")]
    Dumpable(std::io::Error),
    /// `mlockall` failed, usually for lack of `LimitMEMLOCK`/`CAP_IPC_LOCK`.
    #[error(
        "cannot lock memory (mlockall): {0}; raise the memlock limit (LimitMEMLOCK, `ulimit -l`) \
         or do without (abuse.mlockall = false for serve, no --mlock for the other commands)"
    )]
    Mlock(std::io::Error),
}

/// Disables core dumps and marks the process non-dumpable; with `mlock`,
/// also locks current and future memory.
pub fn harden_process(mlock: bool) -> Result<(), HardenError> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| HardenError::CoreLimit(e.into()))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| HardenError::Dumpable(e.into()))?;
    if mlock {
        use rustix::mm::{MlockAllFlags, mlockall};
        mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE)
            .map_err(|e| HardenError::Mlock(e.into()))?;
    }
    Ok(())
}
