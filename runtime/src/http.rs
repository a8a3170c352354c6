//! The read-only HTTP endpoint: `/metrics` (Prometheus text format),
//! `/livez`, `/readyz`, `/status` and the state queries
//! (`/state/<module>/<key>`).
//!
//! It listens on loopback unless configured otherwise (`http-listen`).
//! Every route above is a GET (or HEAD); the only routes that change
//! anything are the operator's `POST /admin/...` ([`crate::ops::admin`]),
//! refused unless an admin token is configured and given.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::state::Queries;
use crate::state::query::Answer;
use crate::status::StatusBoard;

/// The default address: loopback only, port 9464.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// Where the HTTP endpoint listens (`http-listen` in `weir.toml`,
/// `--http-listen` on the command line).
///
/// Written as an address (`"127.0.0.1:9464"`, `"0.0.0.0:9464"`,
/// `"[::1]:9464"`), or `"none"` (or `""`) to disable the endpoint. When not
/// set, weir listens on `127.0.0.1:9464` and, if that port is taken, logs a
/// warning and runs without the endpoint; an address set explicitly that
/// cannot be bound is a startup error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpListen {
    /// Not configured: [`DEFAULT_LISTEN`], best effort.
    #[default]
    Default,
    /// Configured: this address, or fail.
    Addr(SocketAddr),
    /// No HTTP endpoint.
    Disabled,
}

impl FromStr for HttpListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(Self::Disabled);
        }
        s.parse::<SocketAddr>()
            .map(Self::Addr)
            .map_err(|e| format!("`{s}` is not an address like 127.0.0.1:9464 (or `none`): {e}"))
    }
}

impl<'de> serde::Deserialize<'de> for HttpListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    metrics: Arc<Metrics>,
    status: Arc<StatusBoard>,
    queries: Arc<Queries>,
    admin: Option<crate::ops::admin::Admin>,
}

impl HttpState {
    /// State serving `metrics` (and its readiness) and the modules' status.
    pub fn new(metrics: Arc<Metrics>, status: Arc<StatusBoard>) -> Self {
        Self {
            metrics,
            status,
            queries: Arc::default(),
            admin: None,
        }
    }

    /// Also serves the admin routes ([`crate::ops::admin`]).
    pub fn with_admin(mut self, admin: crate::ops::admin::Admin) -> Self {
        self.admin = Some(admin);
        self
    }

    /// The admin routes' state, if they are served.
    pub(crate) fn admin(&self) -> Option<&crate::ops::admin::Admin> {
        self.admin.as_ref()
    }

    /// Also serves `GET /state/<module>/<key>` from `queries`.
    pub fn with_queries(mut self, queries: Arc<Queries>) -> Self {
        self.queries = queries;
        self
    }
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/state/{module}/{key}", get(state_query))
        .merge(crate::ops::admin::routes())
        .with_state(state)
}

/// `?partition=N` of a state query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryParams {
    partition: Option<i32>,
}

/// A key of a stateful module's store, read-only, as JSON: 200 with the
/// value (`value`, or `value_b64` when not UTF-8) when this process holds
/// the key's partition and the key; 404 otherwise, saying whether the
/// partition is held here and which partition owns the key.
async fn state_query(
    State(state): State<HttpState>,
    Path((module, key)): Path<(String, String)>,
    Query(params): Query<QueryParams>,
) -> Response {
    use serde_json::json;
    let now = crate::state::now_ms();
    let found = tokio::task::spawn_blocking(move || {
        let answer = state
            .queries
            .get(&module, key.as_bytes(), params.partition, now);
        (module, key, answer)
    })
    .await;
    let Ok((module, key, answer)) = found else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let (code, body) = match answer {
        Ok(Answer::Found { partition, stored }) => {
            let mut body = json!({"module": module, "key": key, "partition": partition});
            match String::from_utf8(stored.value) {
                Ok(text) => body["value"] = text.into(),
                Err(bytes) => {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes());
                    body["value_b64"] = b64.into();
                }
            }
            if let Some(at) = stored.expires_ms {
                body["expires_ms"] = at.into();
            }
            (StatusCode::OK, body)
        }
        Ok(Answer::Missing { partition }) => (
            StatusCode::NOT_FOUND,
            json!({"error": "no such key", "module": module, "key": key,
                   "partition": partition, "owned": true}),
        ),
        Ok(Answer::NotOwned {
            partition,
            partitions,
        }) => (
            StatusCode::NOT_FOUND,
            json!({"error": format!("partition {partition} of {partitions} is not held by this \
                   process; ask the process that owns it"),
                   "module": module, "key": key, "partition": partition, "owned": false}),
        ),
        Ok(Answer::NotReady) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the module's topics are not checked yet", "module": module}),
        ),
        Ok(Answer::NoModule) => (
            StatusCode::NOT_FOUND,
            json!({"error": format!("no stateful module `{module}` runs here")}),
        ),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": err.to_string(), "module": module}),
        ),
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Each module's name, content hash, load time and state, as JSON.
async fn status(State(state): State<HttpState>) -> Response {
    axum::Json(state.status.snapshot()).into_response()
}

/// Alive as long as the async runtime answers; a broker outage never fails
/// it.
async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match state.metrics.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(problems) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n- {}\n", problems.join("\n- ")),
        )
            .into_response(),
    }
}

/// Binds `listen` and serves until `cancel` fires. Returns once bound with
/// the address actually bound (`None` when disabled, or when the default
/// address was taken); the server runs in a spawned task.
pub async fn start(
    listen: HttpListen,
    state: HttpState,
    cancel: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let addr = match listen {
        HttpListen::Disabled => return Ok(None),
        HttpListen::Default => DEFAULT_LISTEN,
        HttpListen::Addr(addr) => addr,
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(err) if listen == HttpListen::Default => {
            tracing::warn!(address = %addr, error = %err,
                "cannot listen for /metrics, /livez and /readyz on the default address; \
                 running without them (set http-listen to choose an address, or `none`)");
            return Ok(None);
        }
        Err(err) => anyhow::bail!("cannot listen on {addr} (http-listen): {err}"),
    };
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /metrics, /livez and /readyz");
    tokio::spawn(async move {
        if let Err(err) = serve_on(listener, state, cancel).await {
            tracing::error!(error = %err, "the metrics endpoint failed");
        }
    });
    Ok(Some(bound))
}

/// Binds `listen` and serves until `cancel` fires.
pub async fn serve(
    listen: SocketAddr,
    state: HttpState,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (http-listen): {e}"))?;
    serve_on(listener, state, cancel).await
}

async fn serve_on(
    listener: tokio::net::TcpListener,
    state: HttpState,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_parses_addresses_and_none() {
        assert_eq!("none".parse::<HttpListen>(), Ok(HttpListen::Disabled));
        assert_eq!("".parse::<HttpListen>(), Ok(HttpListen::Disabled));
        assert_eq!(
            "0.0.0.0:9000".parse::<HttpListen>(),
            Ok(HttpListen::Addr("0.0.0.0:9000".parse().unwrap()))
        );
        assert!("localhost".parse::<HttpListen>().is_err());
    }
}
