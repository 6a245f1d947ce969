//! `/api/images/{id}.png|.jpg`, `/api/images/{id}/thumbnail`, `DELETE /api/images/{id}`.
//!
//! Images never change once made, so responses carry a strong ETag and may be cached for a
//! year. Every image is stored the moment it is finished, so there is one place to read from.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{check_id, CurrentUser};
use super::routes::{Family, Routes};
use super::AppState;
use crate::imaging::encode;
use crate::jobs::spec::parameters_of;
use crate::store::{ImageBlob, ImageMeta};

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/images/{file}", file)
        .delete("/images/{file}", remove)
        .get("/images/{id}/thumbnail", thumbnail)
}

#[derive(Debug, Default, Deserialize)]
struct FileQuery {
    download: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
}

async fn file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(file): Path<String>,
    Query(query): Query<FileQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (id, format) = match file.rsplit_once('.') {
        Some((id, "png")) => (id, Format::Png),
        Some((id, "jpg" | "jpeg")) => (id, Format::Jpeg),
        Some((_, ext)) => {
            return Err(ApiError::bad_request(
                "unsupported_format",
                format!("`.{ext}` is not available; use .png or .jpg"),
            ))
        }
        None => (file.as_str(), Format::Png),
    };
    check_id("image", id)?;
    let etag = format!(
        "\"{id}-{}\"",
        if format == Format::Png { "png" } else { "jpg" }
    );
    let download = matches!(query.download.as_deref(), Some("1" | "true" | "yes"));

    let record = state
        .store
        .get_image(&user, id)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    let bytes = match format {
        Format::Png => state.store.image_bytes(&user, id, ImageBlob::Png).await?,
        Format::Jpeg => match state.store.image_bytes(&user, id, ImageBlob::Jpeg).await? {
            Some(jpeg) => Some(jpeg),
            None => {
                let png = state
                    .store
                    .image_bytes(&user, id, ImageBlob::Png)
                    .await?
                    .unwrap_or_default();
                let jpeg = to_jpeg(png, record.metadata.clone()).await?;
                state.store.store_jpeg(id, &jpeg).await?;
                Some(jpeg)
            }
        },
    };
    let bytes = bytes.ok_or_else(|| ApiError::not_found("image"))?;
    let name = record.metadata.written_prompt().to_string();
    let ext = if format == Format::Png { "png" } else { "jpg" };
    let mime = if format == Format::Png {
        "image/png"
    } else {
        "image/jpeg"
    };
    Ok(immutable(
        bytes,
        mime,
        &etag,
        &headers,
        download.then(|| file_name(&name, ext)),
    ))
}

/// The stored PNG as a JPEG that keeps the generation parameters, off the async threads.
async fn to_jpeg(png: Vec<u8>, meta: ImageMeta) -> ApiResult<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let rgb = encode::decode(&png)?;
        encode::jpeg_with_parameters(&rgb, encode::JPEG_QUALITY, &parameters_of(&meta))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))
}

async fn thumbnail(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_id("image", &id)?;
    let bytes = state
        .store
        .image_bytes(&user, &id, ImageBlob::Thumbnail)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    Ok(immutable(
        bytes,
        "image/jpeg",
        &format!("\"{id}-thumb\""),
        &headers,
        None,
    ))
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(file): Path<String>,
) -> ApiResult<StatusCode> {
    let id = file.strip_suffix(".png").unwrap_or(&file);
    check_id("image", id)?;
    if state.store.delete_image(&user, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("image"))
    }
}

/// An immutable body with its ETag; `304` when the client already has it.
fn immutable(
    bytes: Vec<u8>,
    mime: &'static str,
    etag: &str,
    headers: &HeaderMap,
    download: Option<String>,
) -> Response {
    let cache = HeaderValue::from_static("private, max-age=31536000, immutable");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag.to_string())],
            [(header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    let mut response = Response::new(Body::from(bytes));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, cache);
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(name) = download {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}

/// A safe file name from free text: `A red fox, at dusk!` → `a-red-fox-at-dusk.png`.
pub fn file_name(text: &str, ext: &str) -> String {
    let mut slug = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 60 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    format!(
        "{}.{ext}",
        if slug.is_empty() { "easel-image" } else { slug }
    )
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn file_names_are_safe_slugs_of_the_prompt() {
        assert_eq!(
            file_name("A red fox, at dusk!", "png"),
            "a-red-fox-at-dusk.png"
        );
        assert_eq!(
            file_name("\"quotes\" / slashes\\", "jpg"),
            "quotes-slashes.jpg"
        );
        assert_eq!(file_name("日本", "png"), "easel-image.png");
        assert!(file_name(&"x".repeat(500), "png").len() <= 64);
    }
}
