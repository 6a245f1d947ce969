//! "Get a model": the server downloads a model from the hub with the code of `easel models
//! pull` (resumable, size-checked), one download at a time per process, keeps its progress for
//! the page, scans the models folder again and loads the new model once, so it is usable the
//! moment it lands (no restart) and a model this machine cannot run is reported, not offered.

use std::sync::Mutex;

use super::hub::{self, Hub, PullProgress};
use super::ImageEngine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Idle,
    Downloading,
    /// Downloaded; the folder is being checked and the model loaded once.
    Checking,
    Ready,
    Failed,
}

impl Phase {
    pub fn busy(self) -> bool {
        matches!(self, Phase::Downloading | Phase::Checking)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DownloadStatus {
    pub phase: Phase,
    pub repo: String,
    pub done: u64,
    pub total: u64,
    pub file: String,
    /// The model's id once it is ready.
    pub model: Option<String>,
    pub error: Option<String>,
}

#[derive(Default)]
pub(super) struct Downloads {
    status: Mutex<DownloadStatus>,
}

impl Downloads {
    fn update(&self, change: impl FnOnce(&mut DownloadStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("a download is already running ({0})")]
    Busy(String),
    #[error("{0}")]
    Invalid(String),
}

impl ImageEngine {
    /// The hub repository "Get a model" downloads when none is named.
    pub fn recommended_model(&self) -> &str {
        &self.inner.settings.recommended_model
    }

    pub fn download_status(&self) -> DownloadStatus {
        self.inner
            .downloads
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts downloading `repo` (default: the recommended model) into the models folder, in
    /// the background. Refused while another download runs.
    pub fn start_download(
        &self,
        repo: Option<&str>,
        hub: Hub,
    ) -> Result<DownloadStatus, DownloadError> {
        let repo = repo
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or(self.recommended_model())
            .to_string();
        hub::check_repo_name(&repo).map_err(|e| DownloadError::Invalid(e.to_string()))?;
        let folder = repo.rsplit('/').next().unwrap_or(&repo);
        let folder =
            hub::safe_folder_name(folder).map_err(|e| DownloadError::Invalid(e.to_string()))?;
        let dest = self.read().registry.dir.join(folder);
        {
            let mut status = self
                .inner
                .downloads
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if status.phase.busy() {
                return Err(DownloadError::Busy(status.repo.clone()));
            }
            *status = DownloadStatus {
                phase: Phase::Downloading,
                repo: repo.clone(),
                ..DownloadStatus::default()
            };
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let result = engine.download(&hub, &repo, &dest).await;
            engine.inner.downloads.update(|s| match result {
                Ok(model) => {
                    s.phase = Phase::Ready;
                    s.model = Some(model);
                    s.file.clear();
                }
                Err(error) => {
                    tracing::warn!(%repo, "model download failed: {error}");
                    s.phase = Phase::Failed;
                    s.error = Some(error);
                }
            });
        });
        Ok(self.download_status())
    }

    async fn download(
        &self,
        hub: &Hub,
        repo: &str,
        dest: &std::path::Path,
    ) -> Result<String, String> {
        let downloads = &self.inner.downloads;
        let progress = |p: &PullProgress| {
            downloads.update(|s| {
                s.done = p.done;
                s.total = p.total;
                s.file = p.file.clone();
            })
        };
        hub.pull(repo, "main", dest, &progress)
            .await
            .map_err(|e| e.to_string())?;
        downloads.update(|s| s.phase = Phase::Checking);
        let engine = self.clone();
        let id = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        tokio::task::spawn_blocking(move || {
            engine.rescan();
            engine.check_runs(&id).map(|()| id)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Loads a model's sessions once: the folder is valid and this machine's ONNX Runtime has
    /// a kernel for every operator (an fp16 export made for CUDA fails here on a CPU).
    pub fn check_runs(&self, id: &str) -> Result<(), String> {
        let entry = self.model(Some(id)).map_err(|e| e.to_string())?;
        let runtime = self.runtime().map_err(|e| e.to_string())?;
        entry.load(&runtime).map(|_| ()).map_err(|reason| {
            explain_load_error(&reason, runtime.provider.name(), self.recommended_model())
        })
    }
}

/// Adds the way out to a load failure: ONNX Runtime's CPU provider has no kernel for the
/// CUDA-only fused operators (and many fp16 ones) of GPU-optimised exports.
pub fn explain_load_error(reason: &str, provider: &str, recommended: &str) -> String {
    let missing_kernel =
        reason.contains("Could not find an implementation") || reason.contains("NOT_IMPLEMENTED");
    if missing_kernel && provider == "cpu" {
        format!(
            "{reason}. This export is made for a GPU: ONNX Runtime's CPU provider has no kernel for \
             one of its operators (fp16 graphs optimised for CUDA use GPU-only fused operators). On \
             a CPU, use an fp32 export such as {recommended} (`easel models pull {recommended}`), \
             or run Easel with the CUDA provider (README, GPUs)."
        )
    } else {
        reason.to_string()
    }
}
