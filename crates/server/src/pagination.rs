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

/// The key that signs page tokens; every replica shares it (a server secret).
#[derive(Clone)]
pub struct PageKey(std::sync::Arc<[u8; 32]>);

impl PageKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self(std::sync::Arc::new(key))
    }

    /// The tag that binds a page position to one caller's query.
    fn tag(&self, binding: &[u8; 32], after: &Uuid) -> [u8; TAG_LEN] {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(self.0.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(binding);
        mac.update(after.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// Bytes of the HMAC kept in a page token: enough that guessing is hopeless.
const TAG_LEN: usize = 16;

/// One list call's paging: the page it asks for, and what its next-page
/// token must be bound to. Page tokens name where the next page starts and
/// carry an HMAC over that position, the RPC, the caller and the request's
/// other fields: a token changed by hand, issued to someone else or for
/// another query is `invalid_argument`.
pub struct Paging {
    pub request: PageRequest,
    key: PageKey,
    binding: [u8; 32],
}

impl Paging {
    /// Reads the paging of a list request. `procedure` and `caller` name the
    /// RPC and who calls it; `query` is the request's encoding without its
    /// pagination (the filters a token stays valid for).
    pub fn new(
        ctx: &RequestContext,
        key: &PageKey,
        procedure: &str,
        caller: Uuid,
        query: &[u8],
        pagination: Option<&api::PaginationRequest>,
    ) -> Result<Self, ConnectError> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in [procedure.as_bytes(), caller.as_bytes(), query] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let mut binding = [0u8; 32];
        binding.copy_from_slice(&hash.finalize());
        let query_paging = ctx
            .extensions()
            .get::<QueryPaging>()
            .cloned()
            .unwrap_or_default();
        let (mut size, mut token) = match pagination {
            Some(p) => (p.page_size, p.token.clone()),
            None => (0, String::new()),
        };
        if size == 0 {
            size = query_paging.page_size.unwrap_or(0);
        }
        if token.is_empty() {
            token = query_paging.token.unwrap_or_default();
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
        let mut paging = Self {
            request: PageRequest { after: None, limit },
            key: key.clone(),
            binding,
        };
        if !token.is_empty() {
            paging.request.after = Some(paging.open(&token)?);
        }
        Ok(paging)
    }

    /// The response's pagination: the token of the next page, empty on the last.
    pub fn response<P: ProtoBox<api::PaginationResponse>>(
        &self,
        next_after: Option<Uuid>,
    ) -> MessageField<api::PaginationResponse, P> {
        MessageField::some(api::PaginationResponse {
            next_token: next_after.map(|id| self.seal(&id)).unwrap_or_default(),
            ..Default::default()
        })
    }

    fn seal(&self, after: &Uuid) -> String {
        let mut bytes = Vec::with_capacity(16 + TAG_LEN);
        bytes.extend_from_slice(after.as_bytes());
        bytes.extend_from_slice(&self.key.tag(&self.binding, after));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn open(&self, token: &str) -> Result<Uuid, ConnectError> {
        let invalid = || {
            invalid_field(
                "pagination.token",
                "not a token this server issued for this query and caller; start again without a token",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() != 16 + TAG_LEN {
            return Err(invalid());
        }
        let after = Uuid::from_slice(&bytes[..16]).map_err(|_| invalid())?;
        let expected = self.key.tag(&self.binding, &after);
        // Constant time: the comparison must not tell how much of a forged tag was right.
        let same = bytes[16..]
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if !same {
            return Err(invalid());
        }
        Ok(after)
    }
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

    struct Fixture {
        key: PageKey,
        caller: Uuid,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                key: PageKey::new([7; 32]),
                caller: Uuid::now_v7(),
            }
        }

        fn paging(
            &self,
            ctx: &RequestContext,
            query: &[u8],
            pagination: Option<api::PaginationRequest>,
        ) -> Result<Paging, ConnectError> {
            Paging::new(
                ctx,
                &self.key,
                "gitpod.v1.RunnerService/ListRunners",
                self.caller,
                query,
                pagination.as_ref(),
            )
        }

        fn token_after(&self, query: &[u8], id: Uuid) -> String {
            let ctx = RequestContext::new(Default::default());
            let paging = self.paging(&ctx, query, None).unwrap();
            let response: MessageField<api::PaginationResponse> = paging.response(Some(id));
            response.as_option().unwrap().next_token.clone()
        }
    }

    #[test]
    fn zero_means_default_and_tokens_round_trip() {
        let f = Fixture::new();
        let ctx = RequestContext::new(Default::default());
        let page = f.paging(&ctx, b"q", request(0, "")).unwrap().request;
        assert_eq!(
            page,
            PageRequest {
                after: None,
                limit: 25
            }
        );
        let id = Uuid::now_v7();
        let token = f.token_after(b"q", id);
        let page = f.paging(&ctx, b"q", request(10, &token)).unwrap().request;
        assert_eq!(
            page,
            PageRequest {
                after: Some(id),
                limit: 10
            }
        );
        let last: MessageField<api::PaginationResponse> =
            f.paging(&ctx, b"q", None).unwrap().response(None);
        assert_eq!(last.as_option().unwrap().next_token, "");
    }

    #[test]
    fn out_of_range_sizes_and_foreign_tokens_are_invalid() {
        let f = Fixture::new();
        let ctx = RequestContext::new(Default::default());
        assert!(f.paging(&ctx, b"q", request(101, "")).is_err());
        assert!(f.paging(&ctx, b"q", request(-1, "")).is_err());
        assert!(f.paging(&ctx, b"q", request(5, "garbage!")).is_err());
        // Any 16 bytes used to pass as a position; now the tag must match.
        let bare = URL_SAFE_NO_PAD.encode(Uuid::now_v7().as_bytes());
        assert!(f.paging(&ctx, b"q", request(5, &bare)).is_err());
    }

    #[test]
    fn tokens_are_bound_to_caller_query_rpc_and_key() {
        let f = Fixture::new();
        let ctx = RequestContext::new(Default::default());
        let id = Uuid::now_v7();
        let token = f.token_after(b"filter-a", id);
        assert!(f.paging(&ctx, b"filter-a", request(0, &token)).is_ok());
        // Another query, another caller, another RPC, another key: refused.
        assert!(f.paging(&ctx, b"filter-b", request(0, &token)).is_err());
        let other = Fixture {
            key: f.key.clone(),
            caller: Uuid::now_v7(),
        };
        assert!(other.paging(&ctx, b"filter-a", request(0, &token)).is_err());
        let other_rpc = Paging::new(
            &ctx,
            &f.key,
            "gitpod.v1.GroupService/ListGroups",
            f.caller,
            b"filter-a",
            request(0, &token).as_ref(),
        );
        assert!(other_rpc.is_err());
        let other_key = Fixture {
            key: PageKey::new([8; 32]),
            caller: f.caller,
        };
        assert!(
            other_key
                .paging(&ctx, b"filter-a", request(0, &token))
                .is_err()
        );
        // A tampered position with the old tag: refused.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[15] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(f.paging(&ctx, b"filter-a", request(0, &tampered)).is_err());
    }

    #[test]
    fn query_parameters_fill_in_for_json_era_clients() {
        let f = Fixture::new();
        let id = Uuid::now_v7();
        let token = f.token_after(b"q", id);
        let mut ctx = RequestContext::new(Default::default());
        ctx.extensions_mut()
            .insert(QueryPaging::parse(&format!("token={token}&pageSize=7")));
        let page = f.paging(&ctx, b"q", None).unwrap().request;
        assert_eq!(
            page,
            PageRequest {
                after: Some(id),
                limit: 7
            }
        );
    }
}
