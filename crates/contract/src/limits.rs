//! Size caps on what a runner reports about itself.
//!
//! The management plane refuses a report that exceeds any of them
//! (`invalid_argument` naming the field, before anything is stored): the
//! per-field caps are `buf.validate` rules in `proto/corral/v1/`, which the
//! tests below hold equal to these constants, and the schema's total size is
//! checked by the server with [`SCHEMA_MAX_BYTES`]. The runner fits its own
//! reports inside them with [`fit_status_report`], so a long system summary or
//! error message is shortened rather than refused. All sizes are bytes of
//! UTF-8; docs/limits.md lists them with the reasons.

use corral_api::corral::v1::ReportStatusRequest;

/// `ReportStatusRequest.version`.
pub const VERSION_MAX_BYTES: usize = 128;
/// `ReportStatusRequest.region`.
pub const REGION_MAX_BYTES: usize = 64;
/// `ReportStatusRequest.system_details`.
pub const SYSTEM_DETAILS_MAX_BYTES: usize = 4096;
/// `ReportStatusRequest.log_url` and `support_bundle_url`.
pub const URL_MAX_BYTES: usize = 2048;
/// `ReportStatusRequest.message`.
pub const MESSAGE_MAX_BYTES: usize = 4096;
/// Entries of `ReportStatusRequest.additional_info`.
pub const ADDITIONAL_INFO_MAX_ENTRIES: usize = 32;
/// Key of an `additional_info` entry (any `FieldValue` key).
pub const ADDITIONAL_INFO_KEY_MAX_BYTES: usize = 128;
/// Value of an `additional_info` entry (any `FieldValue` value).
pub const ADDITIONAL_INFO_VALUE_MAX_BYTES: usize = 1024;
/// Entries of `ReportStatusRequest.capabilities`.
pub const CAPABILITIES_MAX_ENTRIES: usize = 100;
/// `SignUpRequest.public_key`: an X25519 public key, exactly this long.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// `UpdateConfigurationSchemaRequest.schema`, protobuf-encoded.
pub const SCHEMA_MAX_BYTES: usize = 256 * 1024;

/// The longest prefix of `text` that is at most `max` bytes and ends on a
/// character boundary.
pub fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// Shortens every capped field of `report` to its cap (at a character
/// boundary) and drops `additional_info` entries beyond the cap, so that the
/// management plane accepts the report.
pub fn fit_status_report(report: &mut ReportStatusRequest) {
    truncate(&mut report.version, VERSION_MAX_BYTES);
    truncate(&mut report.region, REGION_MAX_BYTES);
    truncate(&mut report.system_details, SYSTEM_DETAILS_MAX_BYTES);
    truncate(&mut report.log_url, URL_MAX_BYTES);
    truncate(&mut report.support_bundle_url, URL_MAX_BYTES);
    truncate(&mut report.message, MESSAGE_MAX_BYTES);
    report.capabilities.truncate(CAPABILITIES_MAX_ENTRIES);
    report.additional_info.truncate(ADDITIONAL_INFO_MAX_ENTRIES);
    for entry in &mut report.additional_info {
        truncate(&mut entry.key, ADDITIONAL_INFO_KEY_MAX_BYTES);
        truncate(&mut entry.value, ADDITIONAL_INFO_VALUE_MAX_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use buffa::{Message, MessageField};
    use corral_api::corral::v1::{SignUpRequest, UpdateConfigurationSchemaRequest};
    use corral_api::gitpod::v1::{FieldValue, RunnerCapability};
    use protovalidate_buffa::Validate;

    use super::*;

    /// The rule ids the validator reports, with the path of each field.
    fn violations(result: Result<(), protovalidate_buffa::ValidationError>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(err) => err
                .violations
                .iter()
                .map(|v| {
                    let path: Vec<String> = v
                        .field
                        .elements
                        .iter()
                        .filter_map(|e| e.field_name.as_deref().map(str::to_string))
                        .collect();
                    format!("{} {}", path.join("."), v.rule_id)
                })
                .collect(),
        }
    }

    fn status_with(set: impl FnOnce(&mut ReportStatusRequest)) -> Vec<String> {
        let mut report = ReportStatusRequest::default();
        set(&mut report);
        violations(report.validate())
    }

    #[test]
    fn string_caps_are_the_rules_the_server_enforces() {
        type Field = fn(&mut ReportStatusRequest) -> &mut String;
        let fields: [(&str, Field, usize); 6] = [
            ("version", |r| &mut r.version, VERSION_MAX_BYTES),
            ("region", |r| &mut r.region, REGION_MAX_BYTES),
            (
                "system_details",
                |r| &mut r.system_details,
                SYSTEM_DETAILS_MAX_BYTES,
            ),
            ("log_url", |r| &mut r.log_url, URL_MAX_BYTES),
            (
                "support_bundle_url",
                |r| &mut r.support_bundle_url,
                URL_MAX_BYTES,
            ),
            ("message", |r| &mut r.message, MESSAGE_MAX_BYTES),
        ];
        for (name, field, cap) in fields {
            assert_eq!(
                status_with(|r| *field(r) = "x".repeat(cap)),
                Vec::<String>::new(),
                "{name} at its cap"
            );
            assert_eq!(
                status_with(|r| *field(r) = "x".repeat(cap + 1)),
                [format!("{name} string.max_bytes")],
                "{name} over its cap"
            );
        }
    }

    #[test]
    fn list_caps_are_the_rules_the_server_enforces() {
        let entry = |key: usize, value: usize| FieldValue {
            key: "k".repeat(key),
            value: "v".repeat(value),
            ..Default::default()
        };
        let full = || {
            vec![
                entry(
                    ADDITIONAL_INFO_KEY_MAX_BYTES,
                    ADDITIONAL_INFO_VALUE_MAX_BYTES
                );
                ADDITIONAL_INFO_MAX_ENTRIES
            ]
        };
        assert!(status_with(|r| r.additional_info = full()).is_empty());
        assert_eq!(
            status_with(|r| {
                r.additional_info = full();
                r.additional_info.push(entry(1, 1));
            }),
            ["additional_info repeated.max_items"]
        );
        assert_eq!(
            status_with(|r| r.additional_info = vec![entry(ADDITIONAL_INFO_KEY_MAX_BYTES + 1, 1)]),
            ["additional_info.key string.max_bytes"]
        );
        assert_eq!(
            status_with(|r| r.additional_info = vec![entry(1, ADDITIONAL_INFO_VALUE_MAX_BYTES + 1)]),
            ["additional_info.value string.max_bytes"]
        );
        let capabilities =
            |n| vec![RunnerCapability::RUNNER_CAPABILITY_FETCH_LOCAL_SCM_INTEGRATIONS.into(); n];
        assert!(
            status_with(|r| r.capabilities = capabilities(CAPABILITIES_MAX_ENTRIES)).is_empty()
        );
        assert_eq!(
            status_with(|r| r.capabilities = capabilities(CAPABILITIES_MAX_ENTRIES + 1)),
            ["capabilities repeated.max_items"]
        );
    }

    #[test]
    fn the_public_key_has_one_length() {
        let sign_up = |n| {
            violations(
                SignUpRequest {
                    public_key: vec![1; n],
                    ..Default::default()
                }
                .validate(),
            )
        };
        assert!(sign_up(PUBLIC_KEY_BYTES).is_empty());
        assert_eq!(sign_up(PUBLIC_KEY_BYTES + 1), ["public_key bytes.len"]);
        assert_eq!(sign_up(0), ["public_key bytes.len"]);
    }

    #[test]
    fn an_oversized_report_is_fitted_inside_the_caps() {
        let mut report = ReportStatusRequest {
            version: "v".repeat(1000),
            region: "é".repeat(100),
            // A multi-byte character straddles the cap.
            system_details: format!(
                "{}ü{}",
                "s".repeat(SYSTEM_DETAILS_MAX_BYTES - 1),
                "t".repeat(10_000)
            ),
            log_url: "u".repeat(5000),
            support_bundle_url: "b".repeat(5000),
            message: "€".repeat(10_000),
            additional_info: vec![
                FieldValue {
                    key: "k".repeat(500),
                    value: "ö".repeat(5000),
                    ..Default::default()
                };
                100
            ],
            ..Default::default()
        };
        fit_status_report(&mut report);
        assert_eq!(violations(report.validate()), Vec::<String>::new());
        assert_eq!(
            report.system_details,
            "s".repeat(SYSTEM_DETAILS_MAX_BYTES - 1)
        );
        assert_eq!(report.region, "é".repeat(REGION_MAX_BYTES / 2));
        assert_eq!(
            report.message.len(),
            MESSAGE_MAX_BYTES - MESSAGE_MAX_BYTES % 3
        );
        assert_eq!(report.additional_info.len(), ADDITIONAL_INFO_MAX_ENTRIES);

        let mut short = ReportStatusRequest {
            message: "all good".into(),
            ..Default::default()
        };
        fit_status_report(&mut short);
        assert_eq!(short.message, "all good");
    }

    #[test]
    fn the_linux_host_schema_fits_its_caps() {
        let schema = crate::schema::linux_host_schema();
        assert!(schema.encode_to_vec().len() <= SCHEMA_MAX_BYTES);
        let request = UpdateConfigurationSchemaRequest {
            schema: MessageField::some(schema),
            ..Default::default()
        };
        assert_eq!(violations(request.validate()), Vec::<String>::new());
    }

    #[test]
    fn schema_fields_have_caps_too() {
        let mut schema = crate::schema::linux_host_schema();
        schema.environment_classes[0].description = "d".repeat(1025);
        schema.scm[0].default_hosts = vec!["h".into(); 101];
        let request = UpdateConfigurationSchemaRequest {
            schema: MessageField::some(schema),
            ..Default::default()
        };
        assert_eq!(
            violations(request.validate()),
            [
                "schema.environment_classes.description string.max_bytes",
                "schema.scm.default_hosts repeated.max_items"
            ]
        );
    }
}
