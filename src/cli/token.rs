//! `sealform token`: mint a staff API token and print the entry its hash
//! takes in the config (scoped: the safer form first). The token is shown once (or written to a 0600 file)
//! and stored nowhere by sealform.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::durable;
use crate::staff_token::{TokenHash, mint};

/// Mints a token; writes it to `out` (new file, mode 0600) or prints it.
pub fn run(out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let token = mint();
    let hash = TokenHash::of(&token);
    match out {
        Some(path) => {
            let mut f = durable::create_private_file(path)
                .with_context(|| format!("while creating {}", path.display()))?;
            writeln!(f, "{}", token.as_str())?;
            println!(
                "token written to {} (give it to staff: `sealform pull --token-file`)",
                path.display()
            );
        }
        None => {
            println!("token (shown once; give it to staff, keep it in a file for --token-file):");
            println!("  {}", token.as_str());
        }
    }
    println!(
        "add an entry for it to the `tokens` list under [staff] in config.toml, giving it only \
         what its holder needs (can: list, download, ack; forms: form ids, or leave it out for \
         every form), then restart the server:"
    );
    println!("  tokens = [{{ hash = \"{hash}\", can = [\"list\", \"download\"] }}]");
    println!(
        "(with tokens already listed, add it to the same list, after a comma; the bare hash, \
         \"{hash}\", may do everything for every form)"
    );
    Ok(ExitCode::SUCCESS)
}
