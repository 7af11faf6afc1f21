//! Admin API errors: a status and one message that names the field or record at fault.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::catalog::CatalogError;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        let status = match &e {
            CatalogError::Invalid { .. } => StatusCode::BAD_REQUEST,
            CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
            CatalogError::Conflict(_) | CatalogError::InUse { .. } => StatusCode::CONFLICT,
            CatalogError::ReadOnly { .. } | CatalogError::NotGranted { .. } => StatusCode::FORBIDDEN,
            CatalogError::VipsExhausted(..) => StatusCode::INSUFFICIENT_STORAGE,
            CatalogError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}
