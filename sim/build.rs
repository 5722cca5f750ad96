//! Build script: records the commit the simulation is built from, for the seed line a
//! failing seeded run prints (`bloodraven_sim::rng::BUILD_COMMIT`). `BLOODRAVEN_GIT_COMMIT`
//! overrides it (builds from a source tarball); without git it is `unknown`.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BLOODRAVEN_GIT_COMMIT");
    let commit = std::env::var("BLOODRAVEN_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let head = git(&["rev-parse", "HEAD"])?;
            // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch's ref and
            // packed-refs (a commit), in the worktree's and the common git directory.
            for dir in [
                git(&["rev-parse", "--absolute-git-dir"]),
                git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
            ]
            .into_iter()
            .flatten()
            {
                let dir = PathBuf::from(dir);
                println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
                println!(
                    "cargo:rerun-if-changed={}",
                    dir.join("packed-refs").display()
                );
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    println!("cargo:rerun-if-changed={}", dir.join(branch).display());
                }
            }
            Some(head)
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BLOODRAVEN_GIT_COMMIT={commit}");
}
