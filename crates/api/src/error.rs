//! One error type for every handler, answered as `{"error": …, "code": …}` with the right
//! status; and a JSON extractor whose rejections take the same shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An API error: a status, a stable code and a message saying what to do.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`bad_request`, `unauthorized`, …).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// For `invalid_attestation`: the protocol's reason code.
    pub reason: Option<String>,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            reason: None,
        }
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            reason: None,
        }
    }
    /// 401.
    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "missing or wrong API token: send `Authorization: Bearer <token>` with the token from <data-dir>/api-token".into(),
            reason: None,
        }
    }
    /// 409: the request contradicts what this node already signed (signing it would make
    /// the node's key equivocate); the message names the existing attestation.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            reason: None,
        }
    }
    /// 422: the protocol refuses what was to be signed or imported.
    pub fn invalid(reason: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_attestation",
            message: message.into(),
            reason: Some(reason.into()),
        }
    }
    /// 503: a part of the node this request needs is not running.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            reason: None,
        }
    }
    /// 413: the body is over the route's limit.
    pub fn too_large() -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: "request body too large".into(),
            reason: None,
        }
    }
    /// 500; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "the node failed to complete the request; see its log".into(),
            reason: None,
        }
    }
}

impl From<passalong_store::StoreError> for ApiError {
    fn from(e: passalong_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::too_large();
        }
        ApiError::bad_request(format!("malformed JSON body: {}", r.body_text()))
    }
}

/// The body of every error answer: `{"error": MESSAGE, "code": CODE, "reason": CODE?}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
    /// Stable code (`bad_request`, `unauthorized`, …).
    pub code: String,
    /// For `invalid_attestation`: the protocol's reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_string(),
            reason: self.reason,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// `Json` whose rejections answer with [`ApiError`]'s shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(AppJson(v))
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Query` whose rejections answer with [`ApiError`]'s shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|r: QueryRejection| {
                ApiError::bad_request(format!("bad query string: {}", r.body_text()))
            })?;
        Ok(AppQuery(v))
    }
}
