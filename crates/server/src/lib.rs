//! The corral management plane.
//!
//! `serve` opens the store, bootstraps an empty installation, and serves the
//! `gitpod.v1` services over Connect, gRPC and gRPC-Web on one port. The pieces:
//! `serving` (the HTTP loop and its limits on clients),
//! `services` (one module per service, wire types only at this edge), `auth`
//! (who is calling) and `authz` (what they may do), `store` (persistence behind
//! one trait), `crypto` (tokens, secrets at rest, sealing), `releases` (publishing runner
//! releases), `domain` (the model), `dashboard` (the web UI's embedded files).

pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod browser_session;
pub mod bus;
pub mod crypto;
pub mod dashboard;
pub mod domain;
pub mod duties;
pub mod errors;
pub mod events;
pub mod expiring;
pub mod liveness;
pub mod metrics;
pub mod oauth_flow;
pub mod pagination;
pub mod reflection;
pub mod releases;
pub mod runner_hub;
pub mod services;
pub mod serving;
pub mod state;
pub mod store;
pub mod tls;
pub mod unknown_method;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::crypto::{DataKey, LogsTokenSigner, ReleaseSigner};
use crate::pagination::{PageKey, QueryPaging};
use crate::state::{AppState, SharedState};
use crate::store::Store;
use crate::store::sql::SqlStore;
pub use crate::store::sqlite::Synchronous;

/// Requests larger than this are rejected before they are decoded.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// Base64 data key from the environment; otherwise a file in the data dir.
    pub data_key: Option<String>,
    /// A runner with no report for this long becomes INACTIVE.
    pub runner_grace: std::time::Duration,
    /// Where browsers reach the server; defaults to `http://<listen>`
    /// (`https://` with TLS).
    pub public_url: Option<String>,
    /// This replica's name in runners' gateway_info; defaults to the host name.
    pub replica_name: Option<String>,
    /// This replica's region in runners' gateway_info.
    pub replica_region: String,
    /// Audit events older than this are deleted.
    pub audit_retention: std::time::Duration,
    /// A connection's first request head (on HTTP/1.1, every one) must
    /// arrive within this time.
    pub header_timeout: std::time::Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: std::time::Duration,
    /// Open connections at most; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A request body must arrive in full within this time.
    pub body_timeout: std::time::Duration,
    /// How long a resolved caller is kept (zero: resolved on every call).
    pub caller_ttl: std::time::Duration,
    /// How an SQLite store commits.
    pub sqlite_synchronous: Synchronous,
    /// Serve HTTPS with this certificate and key (reloaded on SIGHUP).
    pub tls: Option<tls::TlsFiles>,
}

impl ServeConfig {
    /// Defaults for everything but where to listen and keep data.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            database_url: None,
            data_key: None,
            runner_grace: DEFAULT_RUNNER_GRACE,
            public_url: None,
            replica_name: None,
            replica_region: String::new(),
            audit_retention: DEFAULT_AUDIT_RETENTION,
            header_timeout: serving::DEFAULT_HEADER_TIMEOUT,
            idle_timeout: serving::DEFAULT_IDLE_TIMEOUT,
            max_connections: serving::default_max_connections(),
            body_timeout: serving::DEFAULT_BODY_TIMEOUT,
            caller_ttl: auth::DEFAULT_CALLER_TTL,
            sqlite_synchronous: Synchronous::Full,
            tls: None,
        }
    }

    /// The limits the serving loop applies to each client.
    pub fn limits(&self) -> serving::Limits {
        serving::Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            body_timeout: self.body_timeout,
        }
    }
}

/// How long audit events are kept.
pub const DEFAULT_AUDIT_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(90 * 24 * 3600);

/// How long a runner may stay silent before it is INACTIVE.
pub const DEFAULT_RUNNER_GRACE: std::time::Duration = std::time::Duration::from_secs(90);

/// Opens the store named by `database_url` (`sqlite:…`, `postgres://…` or
/// `postgresql://…`), or the embedded SQLite file in `data_dir`.
pub async fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(data_dir, database_url, Synchronous::Full).await
}

/// [`open_store`]; an SQLite store commits with `synchronous`.
pub async fn open_store_with(
    data_dir: &Path,
    database_url: Option<&str>,
    synchronous: Synchronous,
) -> anyhow::Result<Arc<dyn Store>> {
    private_data_dir(data_dir)?;
    let store = match database_url {
        None => {
            let url = store::sqlite::url_of(&data_dir.join("corral.db"))?;
            SqlStore::open_sqlite_with(&url, synchronous).await?
        }
        Some(url) if url.starts_with("sqlite:") => {
            SqlStore::open_sqlite_with(url, synchronous).await?
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            SqlStore::open_postgres(url).await?
        }
        Some(url) => anyhow::bail!(
            "unsupported database URL scheme {:?}: use sqlite:PATH or postgres://USER@HOST/DATABASE",
            url.split(':').next().unwrap_or_default()
        ),
    };
    Ok(Arc::new(store))
}

/// Creates the data dir (it holds keys and the database) owner-only, or
/// narrows an existing one to 0700.
fn private_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if !data_dir.exists() {
        return std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()));
    }
    let mode = std::fs::metadata(data_dir)
        .with_context(|| format!("reading data directory {}", data_dir.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making data directory {} private", data_dir.display()))?;
        tracing::info!(
            "made the data directory {} private: mode {mode:04o} -> 0700",
            data_dir.display()
        );
    }
    Ok(())
}

/// The database URL when it names PostgreSQL: then replicas may share it.
fn postgres_url(config: &ServeConfig) -> Option<&str> {
    config
        .database_url
        .as_deref()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
}

pub async fn build_state(config: &ServeConfig) -> anyhow::Result<SharedState> {
    let store = open_store_with(
        &config.data_dir,
        config.database_url.as_deref(),
        config.sqlite_synchronous,
    )
    .await?;
    // On PostgreSQL this server is one replica of a fleet; otherwise it runs alone.
    let (hub, duties, events) = match postgres_url(config) {
        Some(url) => (
            runner_hub::RunnerHub::new(bus::PgBus::start(url).await?),
            duties::Duties::postgres(url).await?,
            events::EventHub::postgres(url).await?,
        ),
        None => (
            runner_hub::RunnerHub::single(),
            duties::Duties::single(),
            events::EventHub::local(),
        ),
    };
    let data_key = DataKey::load(&config.data_dir, config.data_key.as_deref())?;
    let logs_signer = LogsTokenSigner::shared(store.as_ref(), &data_key, &config.data_dir).await?;
    let release_signer = ReleaseSigner::shared(store.as_ref(), &data_key).await?;
    let page_key = PageKey::new(
        crypto::shared_secret(store.as_ref(), &data_key, "page-token-key", None).await?,
    );
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| {
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", config.listen)
        })
        .trim_end_matches('/')
        .to_string();
    Ok(Arc::new(AppState::new(
        store,
        data_key,
        logs_signer,
        release_signer,
        page_key,
        hub,
        events,
        duties,
        config.runner_grace,
        config.audit_retention,
        domain::Gateway {
            name: config.replica_name.clone().unwrap_or_else(host_name),
            url: public_url,
            region: config.replica_region.clone(),
        },
        config.caller_ttl,
    )))
}

/// The machine's host name (`localhost` when it cannot be read).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The HTTP application: every service at the root and again under `/api`
/// (where the SDKs' base URL points), plus `/healthz`, `/metrics` and the
/// web dashboard (`/` and `/ui/…`, [`dashboard`]).
pub fn app(state: SharedState) -> axum::Router {
    let router = services::router(state.clone());
    let known_methods = unknown_method::KnownMethods::of(&router);
    let rpc = router
        .into_axum_service()
        .with_limits(
            connectrpc::Limits::default()
                .with_max_request_body_size(MAX_REQUEST_BYTES)
                .with_max_message_size(MAX_REQUEST_BYTES),
        )
        .with_interceptor(errors::ValidationMessages)
        .with_interceptor(authz::Gate::new(
            state.authenticator.clone(),
            state.unrestricted_store().clone(),
            state.page_key.clone(),
            state.events.clone(),
            state.metrics.clone(),
        ));
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(dashboard::index))
        .route("/ui/{file}", get(dashboard::asset))
        .route("/metrics", get(metrics).with_state(state.clone()))
        .route(
            browser_session::PATH,
            post(browser_session::sign_in)
                .get(browser_session::current)
                .delete(browser_session::sign_out)
                .layer(axum::extract::DefaultBodyLimit::max(
                    browser_session::MAX_SIGN_IN_BYTES,
                ))
                .with_state(state.clone()),
        )
        .route(
            oauth_flow::CALLBACK_PATH,
            get(oauth_flow::callback).with_state(state.clone()),
        )
        .nest_service("/api", rpc.clone())
        .fallback_service(rpc)
        .layer(axum::middleware::from_fn_with_state(
            known_methods,
            unknown_method::answer_unknown_methods,
        ))
        .layer(axum::middleware::from_fn(paging_from_query))
        .layer(axum::middleware::from_fn(request_id))
}

/// Gives every request an id ([`authz::RequestId`]): the caller's
/// `x-request-id` when it is short and printable, else a new one. Echoed in
/// the response; audit events and logs carry it.
async fn request_id(mut request: Request, next: Next) -> Response {
    const HEADER: &str = "x-request-id";
    let given = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string);
    let id = given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request
        .extensions_mut()
        .insert(authz::RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// This replica's metrics (Prometheus text format, docs/observability.md);
/// no secrets, no auth.
async fn metrics(axum::extract::State(state): axum::extract::State<SharedState>) -> Response {
    use axum::response::IntoResponse;
    let page = state
        .metrics
        .render(
            state.unrestricted_store().as_ref(),
            state.hub.local_streams(),
            state.duties.is_leader(),
        )
        .await;
    (
        [(
            http::header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        page,
    )
        .into_response()
}

/// Hands query-string paging (`?token=…&pageSize=…`) to the list handlers.
async fn paging_from_query(mut request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let paging = QueryPaging::parse(query);
        request.extensions_mut().insert(paging);
    }
    next.run(request).await
}

/// Runs the server until the process is told to stop.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // Before anything is written: bad certificate files stop the start.
    let tls = match &config.tls {
        Some(files) => {
            let certificates = tls::Certificates::load(files.clone())?;
            certificates
                .reload_on_sighup()
                .context("installing the SIGHUP handler")?;
            Some(certificates)
        }
        None => None,
    };
    let state = build_state(&config).await?;
    // Replicas that start together must not both bootstrap an empty store.
    duties::exclusively(
        postgres_url(&config),
        duties::BOOTSTRAP_LOCK,
        bootstrap::bootstrap_if_empty(state.unrestricted_store().as_ref(), &config.data_dir),
    )
    .await?;
    duties::spawn(state.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, data_dir = %config.data_dir.display(), tls = tls.is_some(), "corral is serving");
    let limits = config.limits();
    let open_files = serving::open_files_limit().map_or("unlimited".into(), |n| n.to_string());
    tracing::info!("client limits: {limits} (open-files limit {open_files})");
    let hub_state = state.clone();
    let authenticator = state.authenticator.clone();
    let served = serving::serve(listener, app(state), limits, tls, async move {
        shutdown_signal().await;
        // Other replicas stop routing here; then runner streams (which
        // never end on their own) end, so that the graceful shutdown can
        // finish and runners reconnect elsewhere.
        hub_state.hub.leave().await;
        hub_state.hub.close_all();
        hub_state.events.close_all();
    })
    .await
    .context("serving");
    // Uses of tokens since the last batch.
    authenticator.record_uses().await;
    served
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
