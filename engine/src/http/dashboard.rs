//! The operator's dashboard: a small single-page app (plain JavaScript, no framework) embedded in
//! the binary at build time and served beside the API, on the same port.
//!
//! The three files need no token: they hold no data. The page asks for an API token when the
//! server wants one and sends it with every `/v1` call it makes, so the data comes through the
//! same authentication and ownership checks as any other client's. These routes are plain axum
//! routes, not utoipa ones: they are not part of the API, and stay out of its OpenAPI document.

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

/// Only the dashboard's own files may load, and scripts run from them only (no inline script, no
/// `eval`); the page can't be framed, nor post a form elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The dashboard's routes: `/`, `/dashboard/app.js` and `/dashboard/app.css`.
pub(super) fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

/// One embedded file with its content type and the headers every dashboard file carries.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn each_file_is_served_with_its_type_the_policy_and_no_cache() {
        for (path, content_type, body) in [
            ("/", "text/html; charset=utf-8", INDEX_HTML),
            (
                "/dashboard/app.js",
                "text/javascript; charset=utf-8",
                APP_JS,
            ),
            ("/dashboard/app.css", "text/css; charset=utf-8", APP_CSS),
        ] {
            let res = routes()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let headers = res.headers();
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
            let got = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, body.as_bytes(), "{path}");
        }
    }

    #[test]
    fn the_page_has_nothing_inline_the_policy_would_block_and_loads_nothing_from_elsewhere() {
        assert!(INDEX_HTML.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/dashboard/app.css">"#));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1, "an inline script");
        for inline in [
            "<style",
            "style=",
            "onclick=",
            "onload=",
            "onsubmit=",
            "javascript:",
        ] {
            assert!(!INDEX_HTML.contains(inline), "{inline} in index.html");
        }
        // The SVG namespace is a name, not something loaded.
        const SVG_NS: &str = "http://www.w3.org/2000/svg";
        for file in [INDEX_HTML, APP_JS, APP_CSS] {
            let file = file.replace(SVG_NS, "");
            assert!(
                !file.contains("http://") && !file.contains("https://"),
                "a URL of another origin in the dashboard"
            );
        }
        for unsafe_js in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "new Function",
        ] {
            assert!(!APP_JS.contains(unsafe_js), "{unsafe_js} in app.js");
        }
    }
}
