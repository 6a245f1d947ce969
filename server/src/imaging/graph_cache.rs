//! Optimised graphs, saved on first load and reused: ONNX Runtime spends a large part of a big
//! model's load time rewriting its graph (constant folding, fusions, the CPU's blocked layouts).
//! The first load of a model writes the rewritten graph (weights as external data) to
//! `<cache>/<key>/`; later loads open that with graph optimisation off, so a second start skips
//! the work. `easel models optimize NAME` does the first load ahead of time.
//!
//! The key covers everything the rewritten graph depends on: the model folder's files (names,
//! sizes, modification times), the ONNX Runtime library, the execution provider and the CPU's
//! vector extensions (the blocked layouts are chosen for them). A cache entry appears whole or
//! not at all (written to a temporary folder, then renamed), so processes sharing a models
//! folder never read half of one. Small graphs load fast anyway and are not cached.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Where optimised graphs go and which graphs are worth it.
#[derive(Debug, Clone)]
pub struct GraphCache {
    pub dir: PathBuf,
    /// Model folders smaller than this (graph and weights) are loaded as they are.
    pub min_bytes: u64,
}

/// Bump when the way entries are written changes, so old entries are ignored.
const FORMAT: u32 = 1;
const GRAPH: &str = "model.onnx";
const WEIGHTS: &str = "model.onnx.data";

/// What to do for one model file.
pub enum Plan {
    /// Load this saved optimised graph instead (optimisation off).
    Reuse(PathBuf),
    /// Load the original and save the optimised graph to `graph` (in the temporary folder
    /// `staging`, which [`GraphCache::commit`] turns into the entry `entry`).
    Save {
        staging: PathBuf,
        entry: PathBuf,
        graph: PathBuf,
    },
    /// Not cached (small, or the folder cannot be read).
    Skip,
}

impl GraphCache {
    /// The file names ONNX Runtime is told to write the weights to, next to the graph.
    pub fn weights_file_name() -> &'static str {
        WEIGHTS
    }

    pub fn plan(&self, file: &Path, runtime_id: &str) -> Plan {
        let Some((key, bytes)) = key(file, runtime_id) else {
            return Plan::Skip;
        };
        if bytes < self.min_bytes {
            return Plan::Skip;
        }
        let entry = self.dir.join(&key);
        let graph = entry.join(GRAPH);
        // An entry appears whole (renamed into place), so its graph stands for all of it; the
        // weights file is absent when every initializer is small enough to stay inline.
        if graph.is_file() {
            return Plan::Reuse(graph);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let staging = self
            .dir
            .join(format!(".{key}.{}.{nanos}", std::process::id()));
        Plan::Save {
            graph: staging.join(GRAPH),
            staging,
            entry,
        }
    }

    /// Makes a saved staging folder the entry. Another process may have won the race: then its
    /// entry stays and ours goes.
    pub fn commit(staging: &Path, entry: &Path) {
        let written = staging.join(GRAPH).is_file();
        if written && std::fs::rename(staging, entry).is_ok() {
            tracing::info!("optimised graph saved to {}", entry.display());
            return;
        }
        let _ = std::fs::remove_dir_all(staging);
    }
}

/// The cache key of a model file, and the size of its folder. The folder holds the graph and
/// its external data (diffusers' layout: one component per folder).
fn key(file: &Path, runtime_id: &str) -> Option<(String, u64)> {
    let folder = file.parent()?;
    let mut entries: Vec<(String, u64, u128)> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                (
                    e.file_name().to_string_lossy().into_owned(),
                    meta.len(),
                    modified,
                )
            })
        })
        .collect();
    entries.sort();
    let bytes = entries.iter().map(|(_, len, _)| len).sum();
    // FNV-1a over a stable encoding: the same inputs give the same key on every build.
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    FORMAT.hash(&mut hasher);
    runtime_id.hash(&mut hasher);
    cpu_features().hash(&mut hasher);
    std::fs::canonicalize(file)
        .unwrap_or_else(|_| file.to_path_buf())
        .hash(&mut hasher);
    entries.hash(&mut hasher);
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    Some((format!("{name}-{:016x}", hasher.finish()), bytes))
}

/// The vector extensions ONNX Runtime's CPU kernels pick their layouts for.
fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut out = String::from("x86_64");
        for (name, on) in [
            ("avx", std::is_x86_feature_detected!("avx")),
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
            ("avx512bw", std::is_x86_feature_detected!("avx512bw")),
            ("avx512vnni", std::is_x86_feature_detected!("avx512vnni")),
        ] {
            if on {
                out.push('+');
                out.push_str(name);
            }
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_files_and_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("unet");
        std::fs::create_dir_all(&folder).unwrap();
        let file = folder.join("model.onnx");
        std::fs::write(&file, b"graph").unwrap();
        let (a, bytes) = key(&file, "ort-1").unwrap();
        assert_eq!(bytes, 5);
        assert_eq!(key(&file, "ort-1").unwrap().0, a, "stable");
        assert_ne!(key(&file, "ort-2").unwrap().0, a, "another runtime");
        std::fs::write(folder.join("model.onnx_data"), b"weights").unwrap();
        let (b, bytes) = key(&file, "ort-1").unwrap();
        assert_ne!(b, a, "another file in the folder");
        assert_eq!(bytes, 12);
        assert!(b.starts_with("unet-"));

        let cache = GraphCache {
            dir: dir.path().join("cache"),
            min_bytes: 100,
        };
        assert!(matches!(cache.plan(&file, "ort-1"), Plan::Skip), "small");
        let cache = GraphCache {
            min_bytes: 0,
            ..cache
        };
        let Plan::Save {
            staging,
            entry,
            graph,
        } = cache.plan(&file, "ort-1")
        else {
            panic!("a first load saves");
        };
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(&graph, b"optimised").unwrap();
        std::fs::write(staging.join(WEIGHTS), b"w").unwrap();
        GraphCache::commit(&staging, &entry);
        assert!(!staging.exists());
        assert!(matches!(cache.plan(&file, "ort-1"), Plan::Reuse(p) if p == entry.join(GRAPH)));
    }
}
