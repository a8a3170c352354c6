//! The mutating HTTP routes, for `weir pause|resume|offsets`:
//!
//! - `POST /admin/modules/{module}/pause`
//! - `POST /admin/modules/{module}/resume`
//! - `POST /admin/modules/{module}/offsets` with a JSON body
//!   `{"reset-to": ["earliest"], "dry-run": false}`
//!
//! Each needs `Authorization: Bearer <admin-token>`. Without a configured
//! token every request is refused (403) with the reason; a missing or wrong
//! token is refused with 401. Tokens are compared in constant time (over
//! their SHA-256 digests, so the length does not show either). Answers are
//! JSON; an error is `{"error": "..."}`.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Op, OpsError, Reply, Requests, ask};
use crate::http::HttpState;

/// How long a pause or resume request waits for the runner to apply it
/// (a pause waits for the events in flight, up to `shutdown-timeout`).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the admin routes need: the token and the supervisor's channel.
#[derive(Clone)]
pub struct Admin {
    /// SHA-256 of the token; `None`: no token configured.
    token: Option<[u8; 32]>,
    requests: Requests,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("token", &self.token.map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Admin routes guarded by `token` (none: refused), served by the
    /// supervisor at the other end of `requests`.
    pub fn new(token: Option<&str>, requests: Requests) -> Self {
        Self {
            token: token.map(digest),
            requests,
        }
    }

    /// `Ok` when `headers` carry the configured token.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token else {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "admin endpoints are disabled: no admin token is configured (set `admin-token` \
                 or `admin-token-file` in weir.toml, or WEIR_ADMIN_TOKEN)",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if constant_time_eq(&digest(given.trim()), expected) => Ok(()),
            Some(_) => Err(Refusal(StatusCode::UNAUTHORIZED, "wrong admin token")),
            None => Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "missing admin token (Authorization: Bearer <token>)",
            )),
        }
    }
}

/// A request refused before it reaches the supervisor.
#[derive(Debug)]
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality of two digests that takes the same time wherever they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for OpsError {
    fn into_response(self) -> Response {
        let code = match &self {
            OpsError::UnknownModule(_) => StatusCode::NOT_FOUND,
            OpsError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OpsError::Conflict(_) => StatusCode::CONFLICT,
            OpsError::Kafka(_) => StatusCode::BAD_GATEWAY,
            OpsError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(code, self.to_string())
    }
}

/// The admin routes (merged into the HTTP router).
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/admin/modules/{module}/pause", post(pause))
        .route("/admin/modules/{module}/resume", post(resume))
        .route("/admin/modules/{module}/offsets", post(offsets))
}

/// The admin state of `state`, after checking the caller's token.
fn admitted<'a>(state: &'a HttpState, headers: &HeaderMap) -> Result<&'a Admin, Refusal> {
    let Some(admin) = state.admin() else {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "admin endpoints are not available in this process",
        ));
    };
    admin.authorize(headers)?;
    Ok(admin)
}

async fn pause(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(module): Path<String>,
) -> Response {
    switch(state, headers, module, true).await
}

async fn resume(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(module): Path<String>,
) -> Response {
    switch(state, headers, module, false).await
}

/// Sets the pause switch and waits until the runner applied it.
async fn switch(state: HttpState, headers: HeaderMap, module: String, paused: bool) -> Response {
    let admin = match admitted(&state, &headers) {
        Ok(admin) => admin,
        Err(refused) => return refused.into_response(),
    };
    let op = Op::Pause {
        module: module.clone(),
        paused,
    };
    match ask(&admin.requests, op).await {
        Ok(Reply::Switch(switch)) => {
            let reached = switch.settled(SETTLE_TIMEOUT).await;
            let settled = reached.settles(paused);
            let code = if settled {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let body = json!({"module": module, "paused": paused, "state": reached,
                              "applied": settled});
            (code, axum::Json(body)).into_response()
        }
        Ok(Reply::Done(body)) => axum::Json(body).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Body of `POST /admin/modules/{module}/offsets`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct OffsetsBody {
    reset_to: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn offsets(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(module): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let admin = match admitted(&state, &headers) {
        Ok(admin) => admin,
        Err(refused) => return refused.into_response(),
    };
    let body: OffsetsBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {err}")),
    };
    let reset = match body.reset_to.iter().map(|s| s.parse()).collect() {
        Ok(reset) => reset,
        Err(err) => return error(StatusCode::BAD_REQUEST, err),
    };
    let op = Op::Offsets {
        module,
        reset,
        dry_run: body.dry_run,
    };
    match ask(&admin.requests, op).await {
        Ok(Reply::Done(body)) => axum::Json(body).into_response(),
        Ok(Reply::Switch(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer"),
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(auth) = auth {
            h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_are_required_and_compared() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let none = Admin::new(None, tx.clone());
        let refused = none.authorize(&headers(Some("Bearer x"))).unwrap_err();
        assert_eq!(refused.0, StatusCode::FORBIDDEN);

        let admin = Admin::new(Some("s3cret"), tx);
        assert!(admin.authorize(&headers(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
        ] {
            let refused = admin.authorize(&headers(bad)).unwrap_err();
            assert_eq!(refused.0, StatusCode::UNAUTHORIZED, "{bad:?}");
        }
        assert!(!format!("{admin:?}").contains("s3cret"));
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        let (a, b) = (digest("a"), digest("b"));
        assert!(constant_time_eq(&a, &a));
        assert!(!constant_time_eq(&a, &b));
    }
}
