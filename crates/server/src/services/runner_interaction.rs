//! `corral.v1.RunnerInteractionService`: what runners call. Every RPC acts on
//! the calling runner itself (its access token names it).

use buffa::{Message, MessageField};
use chrono::Utc;
use connectrpc::{
    ConnectError, RequestContext, Response, ServiceRequest, ServiceResult, ServiceStream,
};
use corral_api::corral::v1 as runner_api;
use corral_contract::limits;
use uuid::Uuid;

use super::convert;
use crate::authz::access;
use crate::crypto;
use crate::domain::*;
use crate::errors::invalid_field;
use crate::state::AppState;
use crate::state::SharedState;

pub struct RunnerInteraction {
    state: SharedState,
}

impl RunnerInteraction {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

/// What the stream sends a runner first, and after every change of its spec:
/// the spec as the public API shows it, plus the metrics password (which the
/// API never returns) sealed to the runner's key.
pub fn spec_request(state: &AppState, runner: &Runner) -> runner_api::RunnerRequest {
    let spec = convert::runner(runner)
        .spec
        .into_option()
        .unwrap_or_default();
    runner_api::RunnerRequest {
        kind: Some(runner_api::runner_request::Kind::Spec(Box::new(spec))),
        sealed_metrics_password: sealed_metrics_password(state, runner),
        ..Default::default()
    }
}

/// The metrics password sealed to the runner's key; empty when there is no
/// password or no key yet (the runner signs up before it opens its stream).
fn sealed_metrics_password(state: &AppState, runner: &Runner) -> Vec<u8> {
    let (Some(encrypted), Some(key)) = (
        &runner.spec.config.metrics.password_encrypted,
        &runner.status.public_key,
    ) else {
        return Vec::new();
    };
    let sealed = state
        .data_key
        .decrypt(encrypted)
        .and_then(|password| crypto::seal_to_runner(key, &password));
    match sealed {
        Ok(sealed) => sealed,
        Err(e) => {
            // Never the password itself: only that it could not be passed on.
            tracing::warn!(runner_id = %runner.id, "cannot seal the metrics password for the runner: {e}");
            Vec::new()
        }
    }
}

pub fn delete_request() -> runner_api::RunnerRequest {
    runner_api::RunnerRequest {
        kind: Some(runner_api::runner_request::Kind::Delete(Box::default())),
        ..Default::default()
    }
}

#[protovalidate_buffa::connect_impl]
impl runner_api::RunnerInteractionService for RunnerInteraction {
    #[allow(refining_impl_trait)]
    async fn sign_up(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::SignUpRequest>,
    ) -> ServiceResult<runner_api::SignUpResponse> {
        let access = access(&ctx)?;
        if request.public_key.len() != 32 {
            return Err(invalid_field(
                "public_key",
                "must be a 32-byte X25519 public key",
            ));
        }
        let key = request.public_key.to_vec();
        let runner = access
            .update_this_runner(Box::new(move |runner: &mut Runner| {
                runner.status.public_key = Some(key);
                Ok(())
            }))
            .await?;
        Response::ok(runner_api::SignUpResponse {
            runner_id: runner.id.to_string(),
            logs_token_public_key: self.state.logs_signer.public_key().to_vec(),
            heartbeat_interval_seconds: self.state.heartbeat_interval().as_secs() as u32,
            release_public_key: self.state.release_signer.public_key().to_vec(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_configuration_schema(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::UpdateConfigurationSchemaRequest>,
    ) -> ServiceResult<runner_api::UpdateConfigurationSchemaResponse> {
        let access = access(&ctx)?;
        let schema = request
            .to_owned_message()
            .schema
            .into_option()
            .ok_or_else(|| invalid_field("schema", "is required"))?;
        let encoded = schema.encode_to_vec();
        if encoded.len() > limits::SCHEMA_MAX_BYTES {
            return Err(invalid_field(
                "schema",
                format!("is larger than {} bytes encoded", limits::SCHEMA_MAX_BYTES),
            ));
        }
        access.set_this_runner_schema(encoded).await?;
        Response::ok(runner_api::UpdateConfigurationSchemaResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn report_status(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::ReportStatusRequest>,
    ) -> ServiceResult<runner_api::ReportStatusResponse> {
        let access = access(&ctx)?;
        let report = request.to_owned_message();
        let gateway = self.state.gateway.clone();
        let now = Utc::now();
        // The gap since the runner's previous report, read inside the update.
        let since_previous = std::sync::Arc::new(std::sync::Mutex::new(None));
        let gap = since_previous.clone();
        let updated = access
            .update_this_runner(Box::new(move |runner: &mut Runner| {
                if let Some(previous) = runner.status.updated_at {
                    *gap.lock().unwrap_or_else(|e| e.into_inner()) = (now - previous).to_std().ok();
                }
                let status = &mut runner.status;
                status.version = report.version;
                status.region = report.region;
                status.system_details = report.system_details;
                status.capabilities =
                    convert::distinct(report.capabilities.iter().map(|c| c.to_i32()));
                status.log_url = report.log_url;
                status.support_bundle_url = report.support_bundle_url;
                status.additional_info = report
                    .additional_info
                    .into_iter()
                    .map(|f| (f.key, f.value))
                    .collect();
                status.message = report.message;
                status.updated_at = Some(now);
                status.gateway = Some(GatewayInfo {
                    gateway,
                    latency_micros: report.latency_micros,
                });
                runner.status.phase = runner.reported_phase(report.healthy);
                if runner.is_cordoned() {
                    runner.status.message = CORDONED_MESSAGE.into();
                }
                Ok(())
            }))
            .await?;
        let gap = *since_previous.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(gap) = gap {
            self.state.metrics.record_heartbeat_interval(gap);
        }
        if updated.status.phase == RunnerPhase::Deleting {
            self.state.hub.notify(updated.id, delete_request()).await;
        }
        Response::ok(runner_api::ReportStatusResponse {
            heartbeat_interval_seconds: self.state.heartbeat_interval().as_secs() as u32,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn watch_requests(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::WatchRequestsRequest>,
    ) -> ServiceResult<ServiceStream<runner_api::RunnerRequest>> {
        let runner = access(&ctx)?.this_runner().await?;
        let runner_id = runner.id;
        let (connection, mut inbox) = self.state.hub.connect(runner_id).await?;
        tracing::info!(
            %runner_id,
            runner_name = %runner.name,
            version = %runner.status.version,
            replica = %self.state.gateway.name,
            "runner connected"
        );
        let mut first = vec![spec_request(&self.state, &runner)];
        if runner.status.phase == RunnerPhase::Deleting {
            first.push(delete_request());
        }
        let state = self.state.clone();
        let stream = async_stream::stream! {
            // Unregisters the stream however it ends (runner gone, server stopping).
            let _guard = DisconnectGuard {
                state: state.clone(),
                runner_id,
                connection,
                connected_at: std::time::Instant::now(),
            };
            for request in first {
                yield Ok(request);
            }
            while let Some(request) = inbox.recv().await {
                yield Ok(request);
            }
        };
        Response::stream_ok(stream)
    }

    #[allow(refining_impl_trait)]
    async fn respond(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::RespondRequest>,
    ) -> ServiceResult<runner_api::RespondResponse> {
        let runner_id = access(&ctx)?.this_runner_id()?;
        let answer = request.to_owned_message();
        let request_id = answer.request_id.clone();
        if !self.state.hub.respond(runner_id, &request_id, answer).await {
            return Err(ConnectError::not_found(format!(
                "no request {request_id} is waiting for an answer"
            )));
        }
        Response::ok(runner_api::RespondResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn confirm_deletion(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::ConfirmDeletionRequest>,
    ) -> ServiceResult<runner_api::ConfirmDeletionResponse> {
        let access = access(&ctx)?;
        let runner_id = access.this_runner_id()?;
        access.confirm_this_runner_deleted().await?;
        tracing::info!(%runner_id, "runner confirmed its deletion and was removed");
        Response::ok(runner_api::ConfirmDeletionResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn disconnect(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::DisconnectRequest>,
    ) -> ServiceResult<runner_api::DisconnectResponse> {
        access(&ctx)?
            .update_this_runner(Box::new(|runner: &mut Runner| {
                if matches!(
                    runner.status.phase,
                    RunnerPhase::Active | RunnerPhase::Degraded
                ) {
                    runner.status.phase = RunnerPhase::Inactive;
                    runner.status.message = "the runner stopped".into();
                }
                // Connected to no replica any more.
                runner.status.gateway = None;
                Ok(())
            }))
            .await?;
        Response::ok(runner_api::DisconnectResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn list_environment_classes(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::ListEnvironmentClassesRequest>,
    ) -> ServiceResult<runner_api::ListEnvironmentClassesResponse> {
        let classes = access(&ctx)?.this_runner_classes().await?;
        Response::ok(runner_api::ListEnvironmentClassesResponse {
            environment_classes: classes.iter().map(convert::environment_class).collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_scm_integrations(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::ListSCMIntegrationsRequest>,
    ) -> ServiceResult<runner_api::ListSCMIntegrationsResponse> {
        let integrations = access(&ctx)?.this_runner_integrations().await?;
        Response::ok(runner_api::ListSCMIntegrationsResponse {
            integrations: integrations.iter().map(convert::scm_integration).collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_latest_release(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::GetLatestReleaseRequest>,
    ) -> ServiceResult<runner_api::GetLatestReleaseResponse> {
        let release = access(&ctx)?.this_runner_latest_release().await?;
        Response::ok(runner_api::GetLatestReleaseResponse {
            release: release
                .map(|r| convert::release(&r))
                .map_or_else(Default::default, MessageField::some),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn download_release(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::DownloadReleaseRequest>,
    ) -> ServiceResult<ServiceStream<runner_api::ReleaseChunk>> {
        let id = convert::parse_id("release_id", request.release_id)?;
        let mut download = access(&ctx)?.release_download(id).await?;
        // One chunk read from the store per message sent: the artifact is
        // never held whole.
        let stream = async_stream::stream! {
            loop {
                match download.next_chunk().await {
                    Ok(Some(data)) => yield Ok(runner_api::ReleaseChunk { data, ..Default::default() }),
                    Ok(None) => break,
                    Err(e) => {
                        yield Err(e);
                        break;
                    }
                }
            }
        };
        Response::stream_ok(stream)
    }
}

struct DisconnectGuard {
    state: SharedState,
    runner_id: Uuid,
    connection: u64,
    connected_at: std::time::Instant,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        tracing::info!(
            runner_id = %self.runner_id,
            connected_seconds = self.connected_at.elapsed().as_secs(),
            replica = %self.state.gateway.name,
            "runner disconnected"
        );
        self.state.hub.disconnect(self.runner_id, self.connection);
    }
}
