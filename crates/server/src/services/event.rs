//! `gitpod.v1.EventService`: the organization's audit trail (admins), and a
//! stream of changes to what the caller may see.

use buffa::{EnumValue, MessageField};
use connectrpc::{
    ConnectError, RequestContext, Response, ServiceRequest, ServiceResult, ServiceStream,
};
use corral_api::gitpod::v1 as api;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::convert::{self, parse_id, parse_ids};
use crate::authz::{WatchVisibility, access};
use crate::domain::*;
use crate::errors::invalid_field;
use crate::events::Heard;
use crate::state::SharedState;

pub struct Events {
    state: SharedState,
}

impl Events {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

/// What one watcher asked to be told about.
#[derive(Debug, Clone)]
struct Interest {
    kind: ResourceKind,
    ids: Vec<Uuid>,
    creators: Vec<Uuid>,
}

impl Interest {
    fn matches(&self, event: &ChangeEvent) -> bool {
        self.kind == event.kind
            && (self.ids.is_empty() || self.ids.contains(&event.id))
            && (self.creators.is_empty()
                || event.creator_id.is_some_and(|c| self.creators.contains(&c)))
    }
}

#[protovalidate_buffa::connect_impl]
impl api::EventService for Events {
    #[allow(refining_impl_trait)]
    async fn watch_events(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::WatchEventsRequest>,
    ) -> ServiceResult<ServiceStream<api::WatchEventsResponse>> {
        use api::watch_events_request::Scope;
        let access = access(&ctx)?.clone();
        let req = request.to_owned_message();
        match req.scope {
            Some(Scope::Organization(true)) => {}
            Some(Scope::EnvironmentId(_)) => {
                return Err(invalid_field(
                    "environment_id",
                    "corral has no environments; watch the organization instead",
                ));
            }
            _ => {
                return Err(invalid_field(
                    "scope",
                    "set organization to true: corral watches organizations",
                ));
            }
        }
        access.may_watch()?;
        let mut interests = Vec::with_capacity(req.resource_type_filters.len());
        for filter in &req.resource_type_filters {
            let Some(kind) = filter
                .resource_type
                .as_known()
                .and_then(convert::resource_kind_from)
            else {
                // A kind corral does not have never changes here.
                continue;
            };
            interests.push(Interest {
                kind,
                ids: parse_ids("resource_type_filters.resource_ids", &filter.resource_ids)?,
                creators: parse_ids("resource_type_filters.creator_ids", &filter.creator_ids)?,
            });
        }
        let only_unknown_kinds = !req.resource_type_filters.is_empty() && interests.is_empty();
        let (mut changes, mut closed) = self.state.events.subscribe();
        let counted = self.state.metrics.event_watch_stream();
        let stream = async_stream::stream! {
            // Counted in corral_event_watch_streams until the stream ends.
            let _counted = counted;
            let mut visibility = WatchVisibility::new(&access);
            loop {
                let event = tokio::select! {
                    _ = closed.changed() => break,
                    received = changes.recv() => received,
                };
                let event = match event {
                    Ok(Heard::Change(event)) => event,
                    Ok(Heard::Gap) => {
                        yield Err(ConnectError::unavailable(
                            "this server lost its connection to the other replicas' change notices for a while, so changes may have been missed; read the current state and watch again",
                        ));
                        break;
                    }
                    Err(RecvError::Lagged(missed)) => {
                        yield Err(ConnectError::unavailable(format!(
                            "this watcher fell {missed} changes behind and was dropped; read the current state and watch again"
                        )));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                };
                if only_unknown_kinds
                    || (!interests.is_empty() && !interests.iter().any(|i| i.matches(&event)))
                    || !visibility.may_see(&event).await
                {
                    continue;
                }
                yield Ok(api::WatchEventsResponse {
                    operation: EnumValue::Known(convert::resource_operation(event.operation)),
                    resource_type: EnumValue::Known(convert::resource_type(event.kind)),
                    resource_id: event.id.to_string(),
                    ..Default::default()
                });
            }
        };
        Response::stream_ok(stream)
    }

    #[allow(refining_impl_trait)]
    async fn list_audit_logs(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListAuditLogsRequest>,
    ) -> ServiceResult<api::ListAuditLogsResponse> {
        let access = access(&ctx)?;
        let mut req = request.to_owned_message();
        let paging = access.paging(&ctx, req.pagination.take(), &req)?;
        let mut filter = AuditFilter::default();
        if let Some(sort) = req.sort.as_option() {
            if !sort.field.is_empty()
                && !sort.field.eq_ignore_ascii_case("createdAt")
                && sort.field != "created_at"
            {
                return Err(invalid_field(
                    "sort.field",
                    "audit logs sort only by createdAt",
                ));
            }
            filter.newest_first = sort.order.as_known() == Some(api::SortOrder::SORT_ORDER_DESC);
        }
        if let Some(f) = req.filter.as_option() {
            filter.actor_ids = parse_ids("filter.actor_ids", &f.actor_ids)?;
            for principal in &f.actor_principals {
                match principal.as_known() {
                    Some(api::Principal::PRINCIPAL_USER) => {
                        push_once(&mut filter.actor_kinds, SubjectKind::User)
                    }
                    Some(api::Principal::PRINCIPAL_RUNNER) => {
                        push_once(&mut filter.actor_kinds, SubjectKind::Runner)
                    }
                    // Principals corral does not have act never; asking only
                    // for them finds nothing.
                    _ => {}
                }
            }
            if !f.actor_principals.is_empty() && filter.actor_kinds.is_empty() {
                return Response::ok(api::ListAuditLogsResponse {
                    pagination: paging.response(None),
                    ..Default::default()
                });
            }
            filter.subject_ids = parse_ids("filter.subject_ids", &f.subject_ids)?;
            for kind in &f.subject_types {
                if let Some(kind) = kind.as_known().and_then(convert::resource_kind_from) {
                    push_once(&mut filter.subject_kinds, kind);
                }
            }
            if !f.subject_types.is_empty() && filter.subject_kinds.is_empty() {
                return Response::ok(api::ListAuditLogsResponse {
                    pagination: paging.response(None),
                    ..Default::default()
                });
            }
            filter.from = f
                .from
                .as_option()
                .map(|t| convert::from_timestamp("filter.from", t))
                .transpose()?;
            filter.to =
                f.to.as_option()
                    .map(|t| convert::from_timestamp("filter.to", t))
                    .transpose()?;
        }
        let events = access.audit_events(&filter, paging.request).await?;
        Response::ok(api::ListAuditLogsResponse {
            entries: events.items.iter().map(convert::audit_entry).collect(),
            pagination: paging.response(events.next_after),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_audit_log(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetAuditLogRequest>,
    ) -> ServiceResult<api::GetAuditLogResponse> {
        let id = parse_id("audit_log_entry_id", request.audit_log_entry_id)?;
        let event = access(&ctx)?.audit_event(id).await?;
        Response::ok(api::GetAuditLogResponse {
            entry: MessageField::some(convert::audit_entry(&event)),
            details: MessageField::some(api::AuditLogEntryDetails::default()),
            ..Default::default()
        })
    }
}

fn push_once<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        list.push(value);
    }
}
