//! The home page, the generated OpenAPI document and the API explorer (Swagger UI, vendored in
//! `assets/explorer` so it works without internet access).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use super::AppState;

const EXPLORER_JS: &[u8] = include_bytes!("../../assets/explorer/swagger-ui-bundle.js");
const EXPLORER_CSS: &[u8] = include_bytes!("../../assets/explorer/swagger-ui.css");
const CACHE_A_DAY: &str = "public, max-age=86400";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/openapi.json", get(openapi))
        .route("/explorer", get(explorer))
        .route("/explorer/", get(explorer))
        .route("/explorer/swagger-ui-bundle.js", get(explorer_js))
        .route("/explorer/swagger-ui.css", get(explorer_css))
        .route("/verify", get(verify_page))
}

async fn home(State(state): State<AppState>) -> Html<String> {
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{name} — tenant management service</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <style>
    body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem; color: #222; }}
    h1 {{ font-size: 1.6rem; }} a {{ color: #0b5fff; }} code {{ background: #f3f3f3; padding: 0 .25rem; }}
  </style>
</head>
<body>
  <h1>{name}: tenant management service</h1>
  <p>Version {version}, running on {database}.</p>
  <ul>
    <li><a href="/explorer">API explorer</a></li>
    <li><a href="/openapi.json">OpenAPI document</a></li>
    <li><a href="/ping">/ping</a> and <a href="/health/ready">/health/ready</a></li>
  </ul>
  <p>Mint an admin token with <code>tms token --permissions all</code>.</p>
</body>
</html>
"#,
        name = html_escape(&state.config.app_name),
        version = env!("CARGO_PKG_VERSION"),
        database = state.db.backend_name(),
    ))
}

/// The document is fixed for the life of the process: rendered once, on first request.
async fn openapi() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT
            .get_or_init(|| crate::http::openapi::document().to_string())
            .as_str(),
    )
}

async fn explorer() -> Html<&'static str> {
    Html(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>tms API explorer</title>
  <link rel="stylesheet" href="/explorer/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/explorer/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
      persistAuthorization: true });
  </script>
</body>
</html>
"##,
    )
}

/// The default target of the verification link (`APP_VALIDATE_URL`): verifies the lead with the
/// key from the link, then offers to onboard its tenant, so the whole funnel can be walked in a
/// browser without a front end. Production installs point `APP_VALIDATE_URL` at their own app.
async fn verify_page() -> Html<&'static str> {
    Html(include_str!("verify.html"))
}

async fn explorer_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_A_DAY),
        ],
        EXPLORER_JS,
    )
}

async fn explorer_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_A_DAY),
        ],
        EXPLORER_CSS,
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
