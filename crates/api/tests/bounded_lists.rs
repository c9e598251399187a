//! An oversized request list is refused for its length, and its items are
//! checked only up to the bound: a request with a million bad items costs a
//! handful of violations, not a million (see `cap_item_checks` in build.rs).

use buffa::{EnumValue, MessageField};
use corral_api::gitpod::v1 as api;
use protovalidate_buffa::Validate;

fn rules(err: &protovalidate_buffa::ValidationError) -> Vec<String> {
    let mut rules: Vec<String> = err
        .violations
        .iter()
        .map(|v| v.rule_id.to_string())
        .collect();
    rules.dedup();
    rules
}

#[test]
fn oversized_enum_lists_cost_at_most_their_bound_in_violations() {
    let request = api::ListRunnersRequest {
        filter: MessageField::some(api::list_runners_request::Filter {
            kinds: vec![EnumValue::from(99); 1_000_000],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = request.validate().unwrap_err();
    assert_eq!(rules(&err), ["repeated.max_items", "enum.defined_only"]);
    assert_eq!(err.violations.len(), 1 + 25);
}

#[test]
fn oversized_id_lists_cost_at_most_their_bound_in_violations() {
    let request = api::ListMembersRequest {
        organization_id: "0190a000-0000-7000-8000-000000000001".into(),
        filter: MessageField::some(api::list_members_request::Filter {
            user_ids: vec!["x".into(); 1_000_000],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = request.validate().unwrap_err();
    assert_eq!(err.violations.len(), 1 + 25);
    let path: Vec<&str> = err.violations[0]
        .field
        .elements
        .iter()
        .filter_map(|e| e.field_name.as_deref())
        .collect();
    assert_eq!(path, ["filter", "user_ids"]);
}

#[test]
fn lists_within_their_bound_have_every_item_checked() {
    let mut ids = vec!["0190a000-0000-7000-8000-000000000001".to_string(); 25];
    ids[24] = "not-a-uuid".into();
    let filter = api::list_runners_request::Filter {
        creator_ids: ids,
        ..Default::default()
    };
    let err = filter.validate().unwrap_err();
    assert_eq!(rules(&err), ["string.uuid"]);
}
