//! The stylesheet and the one script, compiled into the binary: the pages load nothing from
//! elsewhere and work offline.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Where the stylesheet is served.
pub const STYLE_PATH: &str = "/assets/style.css";
/// Where the script is served.
pub const SCRIPT_PATH: &str = "/assets/app.js";

/// Light and dark, readable on a phone: one column under 40 em, tables scroll sideways.
pub const STYLE: &str = include_str!("../assets/style.css");
/// Copy buttons, and the publish form's preview kept up to date as the seller types.
pub const SCRIPT: &str = include_str!("../assets/app.js");

/// `GET /assets/<file>`
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
