//! Keeps the models on offer in step with the models folder while a server runs: a model
//! copied in, removed, replaced or quantised (`easel models quantize`) is offered or withdrawn
//! within seconds, without a restart. The folder is looked at every [`LOOK_EVERY`] (a few
//! hundred `stat` calls at most, no file is read); a change is taken up once the folder looks
//! the same twice in a row, so a copy still in progress is not opened half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::registry::ModelEntry;
use super::ImageEngine;

/// How often the models folder is looked at.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// What the models folder looked like: every entry up to three levels down (model folders,
/// their component folders, the files in those), by path under the folder, with its size and
/// modification time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderStamp(BTreeMap<PathBuf, (u64, Option<SystemTime>)>);

impl FolderStamp {
    pub fn of(dir: &Path) -> FolderStamp {
        let mut entries = BTreeMap::new();
        stamp_into(dir, Path::new(""), 3, &mut entries);
        FolderStamp(entries)
    }

    /// Whether `entry` (a model folder of `root`) looks the same in both stamps. The fp32 and
    /// int8 entries of one folder ignore each other's UNet: quantising leaves the fp32 entry,
    /// and the sessions it has loaded, as they were.
    pub fn same_for(&self, other: &FolderStamp, entry: &ModelEntry, root: &Path) -> bool {
        let Ok(folder) = entry.dir.strip_prefix(root) else {
            return false;
        };
        let other_unet = folder.join(if entry.int8 {
            "unet"
        } else {
            super::int8::FOLDER
        });
        // The folder's own time changes with anything added to it, `unet_int8/` too; what
        // was added is listed anyway.
        let part = |stamp: &FolderStamp| {
            stamp
                .0
                .iter()
                .filter(|(path, _)| {
                    path.starts_with(folder)
                        && path.as_path() != folder
                        && !path.starts_with(&other_unet)
                })
                .map(|(path, stamp)| (path.clone(), *stamp))
                .collect::<Vec<_>>()
        };
        part(self) == part(other)
    }
}

fn stamp_into(
    dir: &Path,
    under: &Path,
    depth: u32,
    out: &mut BTreeMap<PathBuf, (u64, Option<SystemTime>)>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Follows links, as the scan does (a model folder may be a link to another disk).
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let path = under.join(entry.file_name());
        let size = if meta.is_dir() { 0 } else { meta.len() };
        out.insert(path.clone(), (size, meta.modified().ok()));
        if meta.is_dir() && depth > 1 {
            stamp_into(&entry.path(), &path, depth - 1, out);
        }
    }
}

/// Looks at the engine's models folder until the engine is dropped, rescanning it after a
/// change has settled.
pub(super) fn spawn(engine: &ImageEngine) {
    let weak = Arc::downgrade(&engine.inner);
    tokio::spawn(async move {
        let mut settling: Option<FolderStamp> = None;
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            // Held only while looking: a dropped engine ends the watch.
            let Some(inner) = weak.upgrade() else { return };
            let engine = ImageEngine { inner };
            let looking = engine.clone();
            let now = tokio::task::spawn_blocking(move || looking.folder_stamp_if_changed())
                .await
                .ok()
                .flatten();
            if now.is_some() && now == settling {
                let _ = tokio::task::spawn_blocking(move || engine.rescan()).await;
                settling = None;
            } else {
                settling = now;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantising_leaves_the_fp32_entry_and_new_weights_change_it() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("m");
        std::fs::create_dir_all(model.join("unet")).unwrap();
        std::fs::write(model.join("unet/model.onnx"), b"fp32").unwrap();
        let fp32 = ModelEntry::open(&model);
        let mut int8 = ModelEntry::open(&model);
        int8.int8 = true;
        let before = FolderStamp::of(root.path());
        assert_eq!(before, FolderStamp::of(root.path()), "nothing changed");

        std::fs::create_dir_all(model.join("unet_int8")).unwrap();
        std::fs::write(model.join("unet_int8/model.onnx"), b"int8").unwrap();
        let quantised = FolderStamp::of(root.path());
        assert_ne!(before, quantised);
        assert!(before.same_for(&quantised, &fp32, root.path()));
        assert!(!before.same_for(&quantised, &int8, root.path()));

        std::fs::write(model.join("unet/model.onnx"), b"new fp32 weights").unwrap();
        let replaced = FolderStamp::of(root.path());
        assert!(!quantised.same_for(&replaced, &fp32, root.path()));
        assert!(quantised.same_for(&replaced, &int8, root.path()));

        // A file beside the components (a new easel.toml) concerns both.
        std::fs::write(model.join("easel.toml"), b"default_size = \"64x64\"").unwrap();
        let configured = FolderStamp::of(root.path());
        assert!(!replaced.same_for(&configured, &fp32, root.path()));
        assert!(!replaced.same_for(&configured, &int8, root.path()));
    }
}
