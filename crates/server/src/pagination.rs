//! List paging: `pagination.page_size` (0 means 25, at most 100) and an opaque
//! token naming where the next page starts. JSON-era clients send `token` and
//! `pageSize` as URL query parameters on the POST; those count when the body
//! carries no pagination of its own.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use buffa::{MessageField, ProtoBox};
use connectrpc::{ConnectError, RequestContext};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use crate::domain::PageRequest;
use crate::errors::invalid_field;

pub const DEFAULT_PAGE_SIZE: usize = 25;
pub const MAX_PAGE_SIZE: usize = 100;

/// Paging parameters found in the request URL's query string.
#[derive(Debug, Clone, Default)]
pub struct QueryPaging {
    pub token: Option<String>,
    pub page_size: Option<i32>,
}

impl QueryPaging {
    pub fn parse(query: &str) -> Self {
        let mut paging = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "token" if !value.is_empty() => paging.token = Some(value.into_owned()),
                "pageSize" | "page_size" => paging.page_size = value.parse().ok(),
                _ => {}
            }
        }
        paging
    }
}

/// The page a list request asks for.
pub fn page_request(
    ctx: &RequestContext,
    pagination: Option<&api::PaginationRequest>,
) -> Result<PageRequest, ConnectError> {
    let query = ctx
        .extensions()
        .get::<QueryPaging>()
        .cloned()
        .unwrap_or_default();
    let (mut size, mut token) = match pagination {
        Some(p) => (p.page_size, p.token.clone()),
        None => (0, String::new()),
    };
    if size == 0 {
        size = query.page_size.unwrap_or(0);
    }
    if token.is_empty() {
        token = query.token.unwrap_or_default();
    }
    if !(0..=MAX_PAGE_SIZE as i32).contains(&size) {
        return Err(invalid_field(
            "pagination.page_size",
            format!("value must be between 0 and {MAX_PAGE_SIZE}"),
        ));
    }
    let limit = if size == 0 {
        DEFAULT_PAGE_SIZE
    } else {
        size as usize
    };
    let after = if token.is_empty() {
        None
    } else {
        Some(decode_token(&token)?)
    };
    Ok(PageRequest { after, limit })
}

/// Fills in query-string paging for RPCs whose page tokens belong to someone
/// else (the SCM RPCs pass them through to the runner unread).
pub fn fill_from_query(ctx: &RequestContext, pagination: &mut api::PaginationRequest) {
    if let Some(query) = ctx.extensions().get::<QueryPaging>() {
        if pagination.page_size == 0 {
            pagination.page_size = query.page_size.unwrap_or(0);
        }
        if pagination.token.is_empty() {
            pagination.token = query.token.clone().unwrap_or_default();
        }
    }
}

fn decode_token(token: &str) -> Result<Uuid, ConnectError> {
    let invalid = || invalid_field("pagination.token", "not a token this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    Uuid::from_slice(&bytes).map_err(|_| invalid())
}

/// The response's pagination: the token of the next page, empty on the last.
pub fn page_response<P: ProtoBox<api::PaginationResponse>>(
    next_after: Option<Uuid>,
) -> MessageField<api::PaginationResponse, P> {
    MessageField::some(api::PaginationResponse {
        next_token: next_after
            .map(|id| URL_SAFE_NO_PAD.encode(id.as_bytes()))
            .unwrap_or_default(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(size: i32, token: &str) -> Option<api::PaginationRequest> {
        Some(api::PaginationRequest {
            page_size: size,
            token: token.into(),
            ..Default::default()
        })
    }

    fn next_token(next: Option<Uuid>) -> String {
        let response: MessageField<api::PaginationResponse> = page_response(next);
        response.as_option().unwrap().next_token.clone()
    }

    #[test]
    fn zero_means_default_and_tokens_round_trip() {
        let ctx = RequestContext::new(Default::default());
        let page = page_request(&ctx, request(0, "").as_ref()).unwrap();
        assert_eq!(
            page,
            PageRequest {
                after: None,
                limit: 25
            }
        );
        let id = Uuid::now_v7();
        let page = page_request(&ctx, request(10, &next_token(Some(id))).as_ref()).unwrap();
        assert_eq!(
            page,
            PageRequest {
                after: Some(id),
                limit: 10
            }
        );
        assert_eq!(next_token(None), "");
    }

    #[test]
    fn out_of_range_sizes_and_foreign_tokens_are_invalid() {
        let ctx = RequestContext::new(Default::default());
        assert!(page_request(&ctx, request(101, "").as_ref()).is_err());
        assert!(page_request(&ctx, request(-1, "").as_ref()).is_err());
        assert!(page_request(&ctx, request(5, "garbage!").as_ref()).is_err());
    }

    #[test]
    fn query_parameters_fill_in_for_json_era_clients() {
        let id = Uuid::now_v7();
        let token = URL_SAFE_NO_PAD.encode(id.as_bytes());
        let mut ctx = RequestContext::new(Default::default());
        ctx.extensions_mut()
            .insert(QueryPaging::parse(&format!("token={token}&pageSize=7")));
        let page = page_request(&ctx, None).unwrap();
        assert_eq!(
            page,
            PageRequest {
                after: Some(id),
                limit: 7
            }
        );
    }
}
