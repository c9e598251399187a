//! GetRunner's and ListRunners' answers, with each runner's JSON kept
//! encoded between calls. Converting a runner and encoding it as JSON was
//! most of a polled page's CPU (perf: formatting its 75 timestamps alone was
//! 11 %, escaping its strings 7 %), and a runner polled again is the same
//! runner most of the time.
//!
//! A kept encoding is used only for a runner equal to the one it was made
//! from, in everything the answer shows ([`shows_the_same`]), so it cannot
//! be stale whatever changed the runner and however the change was heard
//! of: a changed runner is encoded again and replaces it. The answer is
//! assembled from those pieces exactly as the generated serializer writes
//! the whole message (a test compares the bytes). Protobuf answers are
//! encoded from the message as before: that encoding formats nothing.

use std::sync::Arc;

use bytes::Bytes;
use connectrpc::codec::encode_json;
use connectrpc::{CodecFormat, ConnectError, Encodable};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::convert;
use crate::domain::Runner;
use crate::expiring::Expiring;

/// At most this much memory for kept encodings (with the runner each was
/// made from): about 100,000 runners of the benchmark's size.
const MEMORY: u64 = 192 << 20;
/// A runner's JSON and its copy, roughly, for sizing the table.
const TYPICAL: u64 = 1536;
/// Unread entries go after this long (as kept records do); a changed
/// runner replaces its entry at once.
const TTL: std::time::Duration = crate::store::recent::RECENT_TTL;

/// Runners' JSON, by runner id.
pub struct RunnerJson {
    entries: Expiring<Uuid, Arc<Encoded>>,
}

struct Encoded {
    /// The runner as encoded, without what the answer does not show.
    shown: Runner,
    json: Bytes,
}

impl Encoded {
    fn weight(&self) -> u64 {
        (self.shown.approximate_size() + self.json.len()) as u64
    }
}

impl Default for RunnerJson {
    fn default() -> Self {
        Self {
            entries: Expiring::weighted(MEMORY, TYPICAL, TTL, |encoded| encoded.weight()),
        }
    }
}

impl RunnerJson {
    /// `runner` as a `gitpod.v1.Runner` in JSON.
    pub fn of(&self, runner: &Runner) -> Result<Bytes, ConnectError> {
        if let Some(kept) = self.entries.get(&runner.id)
            && shows_the_same(&kept.shown, runner)
        {
            return Ok(kept.json.clone());
        }
        let json = encode_json(&convert::runner(runner))?;
        let encoded = Arc::new(Encoded {
            shown: shown(runner),
            json: json.clone(),
        });
        self.entries.insert(runner.id, encoded);
        Ok(json)
    }
}

/// A copy of `runner` without its configuration schema, which no answer
/// carries (and which may be far larger than the rest).
fn shown(runner: &Runner) -> Runner {
    Runner {
        name: runner.name.clone(),
        spec: runner.spec.clone(),
        status: runner.status.clone(),
        config_schema: None,
        // The rest is copied; a new field that is not `Copy` stops the build here.
        ..*runner
    }
}

/// Whether the answers of `a` and `b` are the same: every field but the
/// configuration schema is equal.
fn shows_the_same(a: &Runner, b: &Runner) -> bool {
    shown_fields(a) == shown_fields(b)
}

/// What an answer shows of `runner`, the cheap comparisons first. Written
/// out field by field so that a new field of `Runner` does not compile until
/// it is placed here.
fn shown_fields(runner: &Runner) -> impl PartialEq + '_ {
    let Runner {
        id,
        org_id,
        name,
        kind,
        provider,
        creator,
        runner_manager_id,
        spec,
        status,
        config_schema: _,
        created_at,
        updated_at,
    } = runner;
    (
        (id, org_id, updated_at, created_at, kind, provider),
        (creator, runner_manager_id, name, spec, status),
    )
}

/// GetRunner's answer.
pub struct RunnerAnswer {
    pub runner: Runner,
    pub json: Arc<RunnerJson>,
}

impl Encodable<api::GetRunnerResponse> for RunnerAnswer {
    fn encode(&self, codec: CodecFormat) -> Result<Bytes, ConnectError> {
        if codec != CodecFormat::Json {
            return api::GetRunnerResponse {
                runner: buffa::MessageField::some(convert::runner(&self.runner)),
                ..Default::default()
            }
            .encode(codec);
        }
        let runner = self.json.of(&self.runner)?;
        let mut out = Vec::with_capacity(runner.len() + 11);
        out.extend_from_slice(b"{\"runner\":");
        out.extend_from_slice(&runner);
        out.push(b'}');
        Ok(out.into())
    }
}

/// A page's pagination, as the response message holds it.
pub type Pagination =
    buffa::MessageField<api::PaginationResponse, buffa::Inline<api::PaginationResponse>>;

/// ListRunners' answer.
pub struct RunnerPage {
    pub runners: Vec<Runner>,
    pub pagination: Pagination,
    pub json: Arc<RunnerJson>,
}

impl Encodable<api::ListRunnersResponse> for RunnerPage {
    fn encode(&self, codec: CodecFormat) -> Result<Bytes, ConnectError> {
        if codec != CodecFormat::Json {
            return api::ListRunnersResponse {
                pagination: self.pagination.clone(),
                runners: self.runners.iter().map(convert::runner).collect(),
                ..Default::default()
            }
            .encode(codec);
        }
        let pagination = match self.pagination.as_option() {
            Some(pagination) => Some(encode_json(pagination)?),
            None => None,
        };
        let runners = self
            .runners
            .iter()
            .map(|runner| self.json.of(runner))
            .collect::<Result<Vec<_>, _>>()?;
        let size = runners.iter().map(|r| r.len() + 1).sum::<usize>();
        let mut out = Vec::with_capacity(size + 64);
        // Field order and omissions as the generated serializer's:
        // pagination unless unset, then runners unless none.
        out.push(b'{');
        if let Some(pagination) = &pagination {
            out.extend_from_slice(b"\"pagination\":");
            out.extend_from_slice(pagination);
        }
        if !runners.is_empty() {
            if pagination.is_some() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"runners\":[");
            for (n, runner) in runners.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(runner);
            }
            out.push(b']');
        }
        out.push(b'}');
        Ok(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        RunnerKind, RunnerPhase, RunnerProvider, RunnerSpec, RunnerStatus, Subject, new_id,
    };

    fn runner(name: &str) -> Runner {
        let now = chrono::Utc::now();
        Runner {
            id: new_id(),
            org_id: new_id(),
            name: name.into(),
            kind: RunnerKind::Local,
            provider: Some(RunnerProvider::LinuxHost),
            creator: Subject::User(new_id()),
            runner_manager_id: Some(new_id()),
            spec: RunnerSpec::default(),
            status: RunnerStatus {
                phase: RunnerPhase::Created,
                message: "line\nbreak and \"quotes\"".into(),
                updated_at: Some(now),
                additional_info: vec![("key".into(), "value".into())],
                ..Default::default()
            },
            config_schema: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn answers_alike<M: connectrpc::JsonSerialize>(ours: Bytes, theirs: &M) {
        let theirs = encode_json(theirs).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    #[test]
    fn a_page_encodes_as_the_whole_message_would() {
        let json = Arc::new(RunnerJson::default());
        let runners = vec![runner("one \"quoted\" ☃"), runner("two")];
        let token = |token: &str| -> Pagination {
            buffa::MessageField::some(api::PaginationResponse {
                next_token: token.into(),
                ..Default::default()
            })
        };
        for (runners, pagination) in [
            (runners.clone(), token("next")),
            (runners.clone(), token("")),
            (vec![runners[0].clone()], token("")),
            (vec![], token("")),
            (runners.clone(), Pagination::none()),
            (vec![], Pagination::none()),
        ] {
            let page = RunnerPage {
                runners: runners.clone(),
                pagination: pagination.clone(),
                json: json.clone(),
            };
            for _ in 0..2 {
                // Encoded, then from what was kept.
                answers_alike(
                    page.encode(CodecFormat::Json).unwrap(),
                    &api::ListRunnersResponse {
                        pagination: pagination.clone(),
                        runners: runners.iter().map(convert::runner).collect(),
                        ..Default::default()
                    },
                );
            }
        }
    }

    #[test]
    fn a_runner_encodes_as_the_whole_message_would() {
        let answer = RunnerAnswer {
            runner: runner("solo"),
            json: Arc::default(),
        };
        for _ in 0..2 {
            answers_alike(
                answer.encode(CodecFormat::Json).unwrap(),
                &api::GetRunnerResponse {
                    runner: buffa::MessageField::some(convert::runner(&answer.runner)),
                    ..Default::default()
                },
            );
        }
        let proto = answer.encode(CodecFormat::Proto).unwrap();
        let decoded: api::GetRunnerResponse = buffa::Message::decode_from_slice(&proto).unwrap();
        assert_eq!(decoded.runner.as_option().unwrap().name, "solo");
    }

    /// Every change a runner's answer shows is answered, whoever made it
    /// and whether or not anyone said so.
    #[test]
    fn a_changed_runner_is_encoded_again() {
        let json = RunnerJson::default();
        let mut runner = runner("before");
        let first = json.of(&runner).unwrap();
        assert!(String::from_utf8_lossy(&first).contains("\"before\""));
        runner.name = "after".into();
        assert!(String::from_utf8_lossy(&json.of(&runner).unwrap()).contains("\"after\""));
        runner.status.phase = RunnerPhase::Active;
        assert!(
            String::from_utf8_lossy(&json.of(&runner).unwrap()).contains("RUNNER_PHASE_ACTIVE")
        );
        runner.creator = Subject::User(Uuid::now_v7());
        let creator = runner.creator.id().to_string();
        assert!(String::from_utf8_lossy(&json.of(&runner).unwrap()).contains(&creator));
        // The schema is not shown: a new one keeps the encoding.
        let kept = json.of(&runner).unwrap();
        runner.config_schema = Some(vec![1, 2, 3]);
        assert_eq!(json.of(&runner).unwrap().as_ptr(), kept.as_ptr());
    }
}
