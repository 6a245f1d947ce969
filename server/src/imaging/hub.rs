//! `easel models pull REPO`: downloads an ONNX model from the Hugging Face hub (or a mirror
//! named by `HF_ENDPOINT`) into the models folder, resumably, checking every file's size.
//!
//! Only the files of the diffusers ONNX layout are fetched; repositories that also hold
//! PyTorch weights would otherwise cost gigabytes for nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Http(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Layout(String),
    #[error("the hub lists an unsafe file path `{path}` ({reason}); nothing was downloaded")]
    UnsafePath { path: String, reason: &'static str },
}

/// A repository path as a relative path that stays inside the model folder, or why not. The
/// hub's file list is data from the network: a listed `scheduler/../../../x/y.json` must not
/// write outside the folder.
pub fn safe_relative_path(path: &str) -> Result<PathBuf, PullError> {
    let refuse = |reason| PullError::UnsafePath {
        path: path.chars().take(200).collect(),
        reason,
    };
    if path.is_empty() {
        return Err(refuse("it is empty"));
    }
    if path.contains('\\') {
        return Err(refuse("it contains a backslash"));
    }
    if path.starts_with('/') {
        return Err(refuse("it is absolute"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(refuse("it contains control characters"));
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err(refuse("it starts with a drive letter"));
    }
    let mut out = PathBuf::new();
    for segment in path.split('/') {
        match segment {
            "" => return Err(refuse("it has an empty segment")),
            "." | ".." => return Err(refuse("it contains `.` or `..`")),
            s if s.contains(':') => return Err(refuse("a segment contains `:`")),
            s => out.push(s),
        }
    }
    Ok(out)
}

/// `dest/relative`, checked to stay inside `dest`.
fn inside(dest: &Path, path: &str) -> Result<PathBuf, PullError> {
    let relative = safe_relative_path(path)?;
    let target = dest.join(&relative);
    let stays = target.starts_with(dest)
        && target
            .components()
            .all(|c| !matches!(c, std::path::Component::ParentDir));
    if !stays {
        return Err(PullError::UnsafePath {
            path: path.into(),
            reason: "it leads outside the model folder",
        });
    }
    Ok(target)
}

/// A model folder's name as given on the command line or in the UI: one plain segment.
/// `owner/name` as the hub spells repositories: letters, digits, `-`, `_`, `.`; it becomes part
/// of URLs, so nothing else may pass.
pub fn check_repo_name(repo: &str) -> Result<(), PullError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) && !name.contains("..") => Ok(()),
        _ => Err(PullError::Layout(format!(
            "`{repo}` is not a hub repository name (owner/name)"
        ))),
    }
}

pub fn safe_folder_name(name: &str) -> Result<&str, PullError> {
    let name = name.trim();
    match safe_relative_path(name) {
        Ok(p) if p.components().count() == 1 && !name.starts_with('.') => Ok(name),
        _ => Err(PullError::UnsafePath {
            path: name.chars().take(200).collect(),
            reason: "a model name must be a single folder name",
        }),
    }
}

/// Whether a repository file belongs to the ONNX layout Easel reads.
pub fn wanted(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    let folder = path.split('/').next().unwrap_or("");
    match folder {
        _ if path == "model_index.json" || path == "easel.toml" => true,
        "text_encoder" | "text_encoder_2" | "unet" | "vae_decoder" | "vae_encoder" => {
            file.ends_with(".onnx")
                || file.ends_with(".onnx_data")
                || file.ends_with(".onnx.data")
                || file == "weights.pb"
                || file.ends_with(".json")
                || file.ends_with(".pb")
        }
        "tokenizer" | "tokenizer_2" => file.ends_with(".json") || file.ends_with(".txt"),
        "scheduler" => file.ends_with(".json"),
        _ => false,
    }
}

/// The external data files an ONNX graph names: each initializer stored outside the graph has
/// an `external_data` entry `{key: "location", value: FILE}` (protobuf
/// `StringStringEntryProto`: field 1 = key, field 2 = value). Found by their bytes, so no
/// protobuf parser is needed; only plain relative file names are kept.
pub fn external_data_names(graph: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\x0a\x08location\x12";
    let mut names: Vec<String> = Vec::new();
    let mut at = 0;
    while let Some(found) = graph[at..].windows(KEY.len()).position(|w| w == KEY) {
        let mut i = at + found + KEY.len();
        at = i;
        // The value's length, a varint.
        let (mut len, mut shift) = (0usize, 0);
        while let Some(&b) = graph.get(i) {
            i += 1;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 || shift > 28 {
                break;
            }
        }
        let Some(value) = graph.get(i..i.saturating_add(len)) else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(value) else {
            continue;
        };
        let plain =
            !name.is_empty() && safe_relative_path(name).is_ok_and(|p| p.components().count() == 1);
        if plain && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// Where a download stands, reported as bytes arrive (at most every 200 ms) and once at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PullProgress {
    pub done: u64,
    pub total: u64,
    /// The file being fetched (empty at the end).
    pub file: String,
}

/// Receives progress; the command line prints it, the server keeps it for the page.
pub type OnProgress<'a> = dyn Fn(&PullProgress) + Send + Sync + 'a;

/// Prints progress on one terminal line (the command line's `models pull`).
pub fn print_progress(repo: &str) -> impl Fn(&PullProgress) + Send + Sync + use<> {
    let repo = repo.to_string();
    let started = Instant::now();
    move |p: &PullProgress| {
        if p.file.is_empty() {
            eprintln!("\r{repo}: {} complete.{:40}", human(p.total), "");
            return;
        }
        let rate = (p.done as f64) / started.elapsed().as_secs_f64().max(0.001);
        let percent = (p.done * 100).checked_div(p.total).unwrap_or(100);
        eprint!(
            "\r{repo}: {percent:3}% {} / {} ({}/s) {}{:10}",
            human(p.done),
            human(p.total),
            human(rate as u64),
            p.file,
            ""
        );
    }
}

pub struct Hub {
    endpoint: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Hub {
    /// The hub named by `HF_ENDPOINT` (default huggingface.co), with `HF_TOKEN` if set.
    pub fn from_env() -> Result<Hub, PullError> {
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
        let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
        Hub::new(&endpoint, token)
    }

    pub fn new(endpoint: &str, token: Option<String>) -> Result<Hub, PullError> {
        let client = crate::net::http_client()
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| PullError::Http(e.to_string()))?;
        Ok(Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            client,
            token,
        })
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(url);
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    /// The repository's files at a revision (`GET /api/models/{repo}/tree/{revision}?recursive=true`).
    pub async fn list(&self, repo: &str, revision: &str) -> Result<Vec<RemoteFile>, PullError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(rename = "type")]
            kind: String,
            path: String,
            #[serde(default)]
            size: u64,
            #[serde(default)]
            lfs: Option<Lfs>,
        }
        #[derive(serde::Deserialize)]
        struct Lfs {
            size: u64,
        }
        let url = format!(
            "{}/api/models/{repo}/tree/{revision}?recursive=true",
            self.endpoint
        );
        let response = self
            .get(&url)
            .send()
            .await
            .map_err(|e| PullError::Http(format!("{url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let hint = if status.as_u16() == 401 || status.as_u16() == 404 {
                " (check the repository name; gated repositories need HF_TOKEN)"
            } else {
                ""
            };
            return Err(PullError::Http(format!("{url} answered {status}{hint}")));
        }
        let entries: Vec<Entry> = response
            .json()
            .await
            .map_err(|e| PullError::Http(format!("{url}: {e}")))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == "file")
            .map(|e| RemoteFile {
                size: e.lfs.map(|l| l.size).unwrap_or(e.size),
                path: e.path,
            })
            .collect())
    }

    /// Downloads the layout's files into `dest`, skipping complete ones and resuming partial
    /// ones (`.part` files with an HTTP range request), reporting progress to `progress`.
    pub async fn pull(
        &self,
        repo: &str,
        revision: &str,
        dest: &Path,
        progress: &OnProgress<'_>,
    ) -> Result<Vec<PathBuf>, PullError> {
        let listed = self.list(repo, revision).await?;
        // Every listed path is checked before anything is written, wanted or not.
        for file in &listed {
            inside(dest, &file.path)?;
        }
        let (mut files, others): (Vec<RemoteFile>, Vec<RemoteFile>) =
            listed.into_iter().partition(|f| wanted(&f.path));
        let has = |p: &str| files.iter().any(|f| f.path == p);
        for required in [
            "model_index.json",
            "unet/model.onnx",
            "text_encoder/model.onnx",
            "vae_decoder/model.onnx",
        ] {
            if !has(required) {
                return Err(PullError::Layout(format!(
                    "{repo}@{revision} has no {required}: it is not a diffusers ONNX export (look for a repository with an `onnx` layout, e.g. onnxruntime/sd-turbo)"
                )));
            }
        }
        let mut total: u64 = files.iter().map(|f| f.size).sum();
        let mut done: u64 = 0;
        let mut written = Vec::new();
        // Graphs first: the external data files they name (any name an exporter chose) join
        // the list before the weights are fetched.
        files.sort_by_key(|f| !f.path.ends_with(".onnx"));
        let mut k = 0;
        while k < files.len() {
            let file = files[k].clone();
            k += 1;
            let target = inside(dest, &file.path)?;
            let complete = target
                .metadata()
                .map(|m| m.len() == file.size)
                .unwrap_or(false);
            if complete {
                done += file.size;
            }
            if !complete
                && !(target
                    .metadata()
                    .map(|m| m.len() == file.size)
                    .unwrap_or(false))
            {
                self.download(repo, revision, &file, &target, &mut done, total, progress)
                    .await?;
                written.push(target.clone());
            }
            if file.path.ends_with(".onnx") {
                let folder = file.path.rsplit_once('/').map_or("", |(f, _)| f);
                let graph = std::fs::read(&target).map_err(|source| PullError::Io {
                    path: target.display().to_string(),
                    source,
                })?;
                for name in external_data_names(&graph) {
                    let path = if folder.is_empty() {
                        name
                    } else {
                        format!("{folder}/{name}")
                    };
                    if files.iter().any(|f| f.path == path) {
                        continue;
                    }
                    match others.iter().find(|f| f.path == path) {
                        Some(extra) => {
                            total += extra.size;
                            files.push(extra.clone());
                        }
                        None => {
                            return Err(PullError::Layout(format!(
                                "{repo}@{revision}: {} names the external data file {path}, which the repository does not have",
                                file.path
                            )))
                        }
                    }
                }
            }
        }
        progress(&PullProgress {
            done: total,
            total,
            file: String::new(),
        });
        Ok(written)
    }

    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        repo: &str,
        revision: &str,
        file: &RemoteFile,
        target: &Path,
        done: &mut u64,
        total: u64,
        progress: &OnProgress<'_>,
    ) -> Result<(), PullError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| PullError::Io { path, source }
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let part = target.with_extension(format!(
            "{}.part",
            target.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        let mut have = part.metadata().map(|m| m.len()).unwrap_or(0);
        if have > file.size {
            std::fs::remove_file(&part).map_err(io(&part))?;
            have = 0;
        }
        let url = format!("{}/{repo}/resolve/{revision}/{}", self.endpoint, file.path);
        let mut request = self.get(&url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| PullError::Http(format!("{url}: {e}")))?;
        let status = response.status();
        let resumed = status.as_u16() == 206;
        if !status.is_success() {
            return Err(PullError::Http(format!("{url} answered {status}")));
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(&part)
            .map_err(io(&part))?;
        let mut got = if resumed { have } else { 0 };
        *done += got;
        let mut body = response.bytes_stream();
        let mut last_print = Instant::now() - Duration::from_secs(1);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                PullError::Http(format!(
                    "{url}: the download broke off ({e}); run the command again to resume"
                ))
            })?;
            out.write_all(&chunk).map_err(io(&part))?;
            got += chunk.len() as u64;
            *done += chunk.len() as u64;
            if last_print.elapsed() >= Duration::from_millis(200) {
                last_print = Instant::now();
                progress(&PullProgress {
                    done: *done,
                    total,
                    file: file.path.clone(),
                });
            }
        }
        out.flush().map_err(io(&part))?;
        drop(out);
        if got != file.size {
            return Err(PullError::Http(format!(
                "{}: received {got} bytes, the hub lists {}; run the command again to resume",
                file.path, file.size
            )));
        }
        std::fs::rename(&part, target).map_err(io(target))?;
        Ok(())
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1_048_575 => format!("{:.1} KB", b / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MB", b / 1_048_576.0),
        _ => format!("{:.2} GB", b / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_onnx_layout() {
        assert!(wanted("model_index.json"));
        assert!(wanted("unet/model.onnx"));
        assert!(wanted("unet/model.onnx_data"));
        assert!(wanted("text_encoder/weights.pb"));
        assert!(wanted("tokenizer/merges.txt"));
        assert!(wanted("scheduler/scheduler_config.json"));
        assert!(!wanted("unet/diffusion_pytorch_model.safetensors"));
        assert!(!wanted("README.md"));
        assert!(!wanted("v1-5-pruned.ckpt"));
    }

    #[test]
    fn paths_that_could_leave_the_model_folder_are_refused() {
        for bad in [
            "scheduler/../../../x/y.json",
            "../model_index.json",
            "/etc/passwd",
            "unet\\..\\..\\x.onnx",
            "C:/x.onnx",
            "c:x.onnx",
            "unet//model.onnx",
            "unet/model.onnx/",
            "./unet/model.onnx",
            "unet/./model.onnx",
            "",
            "unet/\u{0}.onnx",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?}");
        }
        let dest = Path::new("/models/sd");
        assert_eq!(
            inside(dest, "unet/model.onnx").unwrap(),
            Path::new("/models/sd/unet/model.onnx")
        );
        assert!(inside(dest, "a/../../b").is_err());
        assert!(safe_folder_name("sd-turbo").is_ok());
        for bad in ["..", "a/b", "/abs", ".hidden", ""] {
            assert!(safe_folder_name(bad).is_err(), "{bad:?}");
        }
    }
}
