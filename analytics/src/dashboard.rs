//! The embedded dashboard (the QuickSight part of the design on one machine): a page with
//! charts of the analyses, the JSON the page reads, and the lake job run every few seconds so
//! the page shows what a shopper did a moment ago.
//!
//! - `GET /`: the page (`analytics/dashboard/index.html`), `GET /assets/…` its script, style
//!   and Chart.js (from npm, `analytics/dashboard/node_modules`).
//! - `GET /api/analyses/{name}?from=YYYY-MM-DD&to=YYYY-MM-DD`: one analysis as JSON rows, the
//!   same SQL Athena runs (`analytics/sql/`), on DataFusion over the local lake.
//! - `GET /api/live`: visitors active in the last five minutes, from the session store.
//! - `GET /api/status`: when the lake job last ran and what it did.
//!
//! With `token` set, `/api/` answers only requests with `Authorization: Bearer <token>`; the
//! page takes the token from its address (`/#token=…`, never sent to the server as such).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use retailmind_connectors::{SessionScan, SessionStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::analyses::{Analysis, AnalysisError, DayRange, LocalAnalytics};
use crate::config::OpenSources;
use crate::etl::EtlOptions;
use crate::job::{self, JobReport};
use crate::store::LocalStore;

/// Visitors whose last event is this recent count as active.
pub const LIVE_WINDOW_MS: i64 = 5 * 60 * 1000;

/// The files the page loads, by the name it asks for; nothing else is served from disk.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "dashboard.js",
        "dashboard.js",
        "text/javascript; charset=utf-8",
    ),
    ("dashboard.css", "dashboard.css", "text/css; charset=utf-8"),
    (
        "chart.umd.min.js",
        "node_modules/chart.js/dist/chart.umd.min.js",
        "text/javascript; charset=utf-8",
    ),
];

/// What the page shows about the lake job.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobStatus {
    pub runs: u64,
    pub last_run_ms: Option<i64>,
    pub last_report: Option<JobReport>,
    pub last_error: Option<String>,
}

#[derive(Clone)]
pub struct Dashboard {
    lake_root: PathBuf,
    assets: PathBuf,
    sessions: Arc<dyn SessionStore>,
    token: Option<String>,
    status: Arc<Mutex<JobStatus>>,
}

impl Dashboard {
    /// A dashboard over the local lake at `lake_root`, serving the page from `assets` (the
    /// `analytics/dashboard` folder with its `node_modules`).
    pub fn new(
        lake_root: impl Into<PathBuf>,
        assets: impl Into<PathBuf>,
        sessions: Arc<dyn SessionStore>,
        token: Option<String>,
    ) -> Dashboard {
        Dashboard {
            lake_root: lake_root.into(),
            assets: assets.into(),
            sessions,
            token: token.filter(|t| !t.is_empty()),
            status: Arc::default(),
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/healthz", get(|| async { "ok" }))
            .route("/assets/{file}", get(asset))
            .route("/api/analyses/{name}", get(analysis))
            .route("/api/live", get(live))
            .route("/api/status", get(status))
            .with_state(self)
    }

    /// Runs the lake job now, then every `every`, for as long as the returned task lives.
    pub fn run_job_every(
        &self,
        sources: OpenSources,
        options: EtlOptions,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let lake = LocalStore::new(&self.lake_root);
        let status = self.status.clone();
        tokio::spawn(async move {
            loop {
                let now_ms = retailmind_connectors::clock::now_ms();
                let result = job::run_once(&lake, sources.sources(), &options, now_ms).await;
                record(&status, now_ms, result);
                tokio::time::sleep(every).await;
            }
        })
    }

    /// The status the page shows; for tests and the binary's logs.
    pub fn status(&self) -> JobStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), DashboardError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(token.as_str()) {
            Ok(())
        } else {
            Err(DashboardError::Unauthorized)
        }
    }
}

/// Everything the dashboard answers with an error, mapped once to its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(
        "Authorization: Bearer <token> is missing or wrong; open the dashboard as /#token=<token>"
    )]
    Unauthorized,
    #[error("no analysis {name:?}; there are {known:?}")]
    UnknownAnalysis {
        name: String,
        known: Vec<&'static str>,
    },
    #[error("no asset {0:?}")]
    UnknownAsset(String),
    #[error("query parameters from and to (YYYY-MM-DD) are both needed")]
    MissingRange,
    #[error("{0}")]
    BadRange(AnalysisError),
    #[error("{0}")]
    Analysis(AnalysisError),
    #[error("{path} cannot be read ({reason}); run `npm ci` in analytics/dashboard (cargo xtask demo does)")]
    Assets { path: String, reason: String },
    #[error("the session store did not answer: {0}")]
    Sessions(retailmind_connectors::ConnectorError),
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let status = match &self {
            DashboardError::Unauthorized => StatusCode::UNAUTHORIZED,
            DashboardError::UnknownAnalysis { .. } | DashboardError::UnknownAsset(_) => {
                StatusCode::NOT_FOUND
            }
            DashboardError::MissingRange | DashboardError::BadRange(_) => StatusCode::BAD_REQUEST,
            DashboardError::Analysis(_) | DashboardError::Assets { .. } => {
                tracing::error!(error = %self, "dashboard request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            DashboardError::Sessions(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

fn record(status: &Mutex<JobStatus>, now_ms: i64, result: Result<JobReport, job::JobError>) {
    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
    s.runs += 1;
    s.last_run_ms = Some(now_ms);
    match result {
        Ok(report) => {
            s.last_report = Some(report);
            s.last_error = None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "lake job failed; trying again next round");
            s.last_error = Some(e.to_string());
        }
    }
}

async fn read_asset(dir: &Path, file: &str) -> Result<Vec<u8>, DashboardError> {
    let path = dir.join(file);
    tokio::fs::read(&path)
        .await
        .map_err(|e| DashboardError::Assets {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

async fn page(State(d): State<Dashboard>) -> Result<Response, DashboardError> {
    let body = read_asset(&d.assets, "index.html").await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

async fn asset(
    State(d): State<Dashboard>,
    UrlPath(file): UrlPath<String>,
) -> Result<Response, DashboardError> {
    let Some((_, path, mime)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return Err(DashboardError::UnknownAsset(file));
    };
    let body = read_asset(&d.assets, path).await?;
    Ok((
        [
            (header::CONTENT_TYPE, *mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn analysis(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, DashboardError> {
    d.authorized(&headers)?;
    let analysis = Analysis::by_name(&name).ok_or_else(|| DashboardError::UnknownAnalysis {
        name,
        known: Analysis::ALL.iter().map(|a| a.name()).collect(),
    })?;
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(DashboardError::MissingRange);
    };
    let range = DayRange::new(&from, &to).map_err(DashboardError::BadRange)?;
    // Opened per request: the lake job adds files between requests, and listing them is
    // cheap next to the query.
    let analytics = LocalAnalytics::open(&d.lake_root)
        .await
        .map_err(DashboardError::Analysis)?;
    let rows = analytics
        .json(analysis, &range)
        .await
        .map_err(DashboardError::Analysis)?;
    Ok(Json(json!({
        "analysis": analysis.name(),
        "from": range.from(),
        "to": range.to(),
        "rows": rows,
    }))
    .into_response())
}

/// Visitors, sessions and page views of the sessions active in the last five minutes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Live {
    pub window_minutes: i64,
    pub active_visitors: usize,
    pub active_sessions: usize,
    pub page_views: u64,
    pub at_ms: i64,
}

/// What the live panel shows, from the session store at `now_ms`.
pub async fn live_panel(
    sessions: &dyn SessionStore,
    now_ms: i64,
) -> retailmind_connectors::Result<Live> {
    let active = sessions
        .scan(SessionScan::EndedSince {
            since_ms: now_ms - LIVE_WINDOW_MS,
        })
        .await?;
    let visitors: std::collections::HashSet<&str> =
        active.iter().map(|s| s.anonymous_id.as_str()).collect();
    Ok(Live {
        window_minutes: LIVE_WINDOW_MS / 60_000,
        active_visitors: visitors.len(),
        active_sessions: active.len(),
        page_views: active.iter().map(|s| u64::from(s.page_views)).sum(),
        at_ms: now_ms,
    })
}

async fn live(
    State(d): State<Dashboard>,
    headers: HeaderMap,
) -> Result<Json<Live>, DashboardError> {
    d.authorized(&headers)?;
    let now_ms = retailmind_connectors::clock::now_ms();
    live_panel(d.sessions.as_ref(), now_ms)
        .await
        .map(Json)
        .map_err(DashboardError::Sessions)
}

async fn status(
    State(d): State<Dashboard>,
    headers: HeaderMap,
) -> Result<Json<JobStatus>, DashboardError> {
    d.authorized(&headers)?;
    Ok(Json(d.status()))
}
