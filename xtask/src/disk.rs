//! Free space on the disk that holds `target/`.
//!
//! A full disk does not fail a build politely: the linker writes its output through a memory
//! map and dies with "signal 7 [Bus error]", which reads like a toolchain bug. A fresh
//! `cargo xtask test` writes about 7 GB under `target/` (measured on a clean clone; 15 GB while
//! dev builds carried line tables), so `test` says up front when less than that is free, and
//! any failure says how much was left.

use std::path::Path;
use std::process::Command;

/// What a fresh `cargo xtask test` writes under `target/`: 7.0 GB at its peak, measured on a
/// clean clone (debug build, all suites), rounded up.
const FRESH_TEST_BUILD: u64 = 8 << 30;
/// What a rebuild after a change may add (incremental caches, every test binary relinked).
const REBUILD: u64 = 4 << 30;

/// Bytes free for the folder's file system, from POSIX `df -Pk` (None where there is no `df`).
pub fn free_bytes(folder: &Path) -> Option<u64> {
    let output = Command::new("df").arg("-Pk").arg(folder).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // Second line: filesystem, 1024-blocks, used, available, capacity, mount point.
    let available = text.lines().nth(1)?.split_whitespace().nth(3)?;
    available.parse::<u64>().ok().map(|kib| kib << 10)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Before a test build: a warning when the disk may not hold it.
pub fn warn_if_short(root: &Path) {
    let fresh = !root.join("target/debug/deps").is_dir();
    let needed = if fresh { FRESH_TEST_BUILD } else { REBUILD };
    if let Some(free) = free_bytes(root) {
        if free < needed {
            eprintln!(
                "xtask: warning: {} free on the disk holding {}; {} `cargo xtask test` may \
                 write about {} under target/",
                gib(free),
                root.display(),
                if fresh { "a fresh" } else { "this" },
                gib(needed)
            );
        }
    }
}

/// After a failure: how much space was left, so a linker killed by a full disk is recognised.
pub fn report(root: &Path) {
    if let Some(free) = free_bytes(root) {
        eprintln!(
            "xtask: {} free on the disk holding {}{}",
            gib(free),
            root.display(),
            if free < 1 << 30 {
                " (nearly full: a linker that died with a Bus error ran out of space)"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_free_space_of_this_disk() {
        let free = free_bytes(Path::new(env!("CARGO_MANIFEST_DIR")));
        // Every machine this project builds on has `df`; a parse that fails would say None.
        assert!(matches!(free, Some(bytes) if bytes > 0), "{free:?}");
    }
}
