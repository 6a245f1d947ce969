//! Image Studio's API (`/api/studio/*`).

use axum::Router;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
