//! Reading an answer: `Retry-After`, the JSON body, the error fields, and the errors that say what is wrong and
//! what to change (a redirect, the PrivateLink one by name, and every other status).

use super::RETRY_AFTER_CAP;
use super::http::Answer;
use ::http::{Method, StatusCode, header};
use dr_ports::ApiError;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A number in `[0, 1)`, from the standard library's per-process random hasher keys.
pub(super) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `Retry-After` in seconds, at most 30 s; `None` when absent or not a number (Databricks sends seconds, never an
/// HTTP date: databricks-sdk-py `errors/customizer.py` parses it as an integer only).
pub(super) fn retry_after(answer: &Answer) -> Option<Duration> {
    answer
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(RETRY_AFTER_CAP))
}

/// The JSON of a 2xx answer; an empty body is `{}`.
pub(super) fn json_body(path: &str, body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadAnswer { path: path.to_owned(), problem: format!("not JSON ({e})") })
}

/// Databricks' `error_code` and `message` (or OAuth's `error` and `error_description`); else the start of the
/// body, else the status's reason.
pub(super) fn error_fields(answer: &Answer) -> (Option<String>, String) {
    let parsed: Option<serde_json::Map<String, Value>> = serde_json::from_slice(&answer.body).ok();
    let field = |keys: &[&str]| {
        parsed.as_ref().and_then(|m| keys.iter().find_map(|k| m.get(*k).and_then(Value::as_str))).map(str::to_owned)
    };
    let code = field(&["error_code", "error"]);
    let message = field(&["message", "error_description"]).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&answer.body);
        let text = text.trim();
        if text.is_empty() || parsed.is_some() {
            answer.status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            text.chars().take(200).collect()
        }
    });
    (code, message)
}

/// Some workspaces answer a bad token with 403 rather than 401.
pub(super) fn is_invalid_token(answer: &Answer) -> bool {
    answer.status == StatusCode::FORBIDDEN && error_fields(answer).1.contains("Invalid access token")
}

/// Where the AWS PrivateLink documentation of Databricks lives (named in the PrivateLink redirect's advice, as
/// databricks-sdk-go `apierr/private_link.go` does).
const PRIVATE_LINK_DOC: &str = "https://docs.databricks.com/en/security/network/classic/privatelink.html";

/// Whether a redirect's target is the PrivateLink validation error: the login page with
/// `error=private-link-validation-error` (databricks-sdk-go `apierr/private_link.go` `isPrivateLinkRedirect`;
/// databricks-sdk-py `errors/private_link.py` `_is_private_link_redirect`).
pub(super) fn is_private_link_redirect(target: &url::Url) -> bool {
    target.path() == "/login.html" && target.query().is_some_and(|q| q.contains("error=private-link-validation-error"))
}

/// The error of a 3xx answer: redirects are never followed (the request carries the token, and a redirect can
/// lead anywhere), so each says what is wrong and what to change in the site document or the network.
pub(super) fn redirect_error(method: &Method, path: &str, base: &url::Url, answer: &Answer) -> ApiError {
    let location = answer.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let target = base.join(location).ok();
    let shown = match &target {
        Some(t) => {
            let mut shown = format!("{}://{}{}", t.scheme(), t.host_str().unwrap_or_default(), t.path());
            if is_private_link_redirect(t) {
                shown.push_str("?error=private-link-validation-error");
            }
            shown
        }
        None if location.is_empty() => "nowhere (no Location header)".to_owned(),
        None => "an invalid Location".to_owned(),
    };
    let advice = match &target {
        Some(t) if is_private_link_redirect(t) => format!(
            "the workspace is behind PrivateLink and this caller is outside its network: run the function in a VPC \
             with a route to the workspace's PrivateLink endpoint (an AWS VPC endpoint for the workspace's REST API, \
             with private DNS resolving {}), or allow this network in the workspace's private access settings; see {PRIVATE_LINK_DOC}",
            base.host_str().unwrap_or("the workspace host")
        ),
        Some(t) if t.path().starts_with("/login") => "the answer is the workspace's login page, not the REST API: set \
             `workspace_url` in the site document to the workspace's own URL (https://<deployment>.cloud.databricks.com, \
             not the account console or a proxy) and check that nothing strips the Authorization header"
            .to_owned(),
        Some(t) if t.scheme() != base.scheme() || t.host_str() != base.host_str() || t.port() != base.port() => format!(
            "the workspace is answered at {}://{}: set `workspace_url` in the site document to it (redirects are not \
             followed: they would carry the token to another host)",
            t.scheme(),
            t.host_str().unwrap_or_default()
        ),
        _ => "the REST API does not redirect: set `workspace_url` in the site document to the workspace's own URL, \
             with no path, and check that no proxy rewrites API paths"
            .to_owned(),
    };
    ApiError::Redirected {
        method: method_name(method),
        path: path.to_owned(),
        status: answer.status.as_u16(),
        location: shown,
        advice,
    }
}

/// The method's name, for errors.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "GET",
    }
}

pub(super) fn status_error(method: &Method, path: &str, answer: &Answer) -> ApiError {
    let (error_code, message) = error_fields(answer);
    ApiError::Status { method: method_name(method), path: path.to_owned(), status: answer.status.as_u16(), error_code, message }
}
