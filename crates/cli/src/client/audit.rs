//! `corral audit …`: EventService.ListAuditLogs (newest first, with filters)
//! and GetAuditLog.

use buffa::MessageField;
use clap::Subcommand;
use corral_api::gitpod::v1 as api;

use super::output::{self, Column, col, enum_col};
use super::{Api, ClientOpts, Failure, Outcome, all_pages, json, json_items, next_token};

const ENTRY_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("TIME", "createdAt"),
    enum_col("ACTOR", "actorPrincipal", "PRINCIPAL_"),
    col("ACTOR ID", "actorId"),
    col("ACTION", "action"),
    enum_col("SUBJECT TYPE", "subjectType", "RESOURCE_TYPE_"),
    col("SUBJECT", "subjectId"),
];

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first (every page up to --limit, default 100).
    #[command(after_help = "Examples:\n  corral audit list --since 24h\n  \
        corral audit list --actor USER_ID --subject RUNNER_ID --output json")]
    List {
        /// Only events of the last DURATION (e.g. 24h, 7d).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only events of this actor (a user or runner id); repeatable.
        #[arg(long, value_parser = super::parse_id)]
        actor: Vec<String>,
        /// Only events on this resource (its id); repeatable.
        #[arg(long, value_parser = super::parse_id)]
        subject: Vec<String>,
        /// Oldest first instead of newest first.
        #[arg(long)]
        oldest_first: bool,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one audit event.
    #[command(after_help = "Example:\n  corral audit get EVENT_ID")]
    Get {
        #[arg(value_parser = super::parse_id)]
        event_id: String,
    },
}

pub async fn run(command: AuditCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let client = api.events();
    let format = opts.output;
    match command {
        AuditCommand::List {
            since,
            actor,
            subject,
            oldest_first,
            limit,
        } => {
            let actor_ids = actor;
            let subject_ids = subject;
            let from = since
                .map(|d| {
                    let d = chrono::Duration::from_std(d)
                        .map_err(|_| Failure::usage("--since is too long"))?;
                    let at = chrono::Utc::now()
                        .checked_sub_signed(d)
                        .ok_or_else(|| Failure::usage("--since is too long"))?;
                    Ok::<_, Failure>(buffa_types::google::protobuf::Timestamp {
                        seconds: at.timestamp(),
                        ..Default::default()
                    })
                })
                .transpose()?;
            let filter = api::list_audit_logs_request::Filter {
                actor_ids,
                subject_ids,
                from: from.into(),
                ..Default::default()
            };
            let order = if oldest_first {
                api::SortOrder::SORT_ORDER_ASC
            } else {
                api::SortOrder::SORT_ORDER_DESC
            };
            let entries = all_pages(Some(limit), |page| {
                let (client, api) = (&client, &api);
                let request = api::ListAuditLogsRequest {
                    pagination: MessageField::some(page),
                    filter: MessageField::some(filter.clone()),
                    sort: MessageField::some(api::Sort {
                        field: "createdAt".into(),
                        order: order.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .list_audit_logs(request)
                        .await
                        .map_err(|e| api.failure("listing audit events", &e))?
                        .into_owned();
                    let next = next_token(response.pagination.as_option());
                    let items = json_items(&response.entries)?;
                    Ok((items, next))
                }
            })
            .await?;
            output::print_list(format, "entries", entries, ENTRY_COLUMNS)
        }
        AuditCommand::Get { event_id } => {
            let id = event_id;
            let response = client
                .get_audit_log(api::GetAuditLogRequest {
                    audit_log_entry_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("audit event {id}"), &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "entry", ENTRY_COLUMNS)
        }
    }
}
