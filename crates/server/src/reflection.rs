//! gRPC server reflection (`grpc.reflection.v1.ServerReflection`, and the
//! same service under its older `v1alpha` name): clients such as `grpcurl`
//! and `buf curl` list the services and fetch their descriptors from the
//! running server instead of a local copy of the schema.
//!
//! Answers come from [`corral_api::DESCRIPTOR_SET`], indexed once. The
//! schema is public, so reflection needs no token (its policy row says
//! so). A stream answers at most [`MAX_REQUESTS_PER_STREAM`] requests and
//! each request message is small (route limits), so one client cannot keep
//! the server busy with one stream.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use buffa::Message as _;
use buffa_descriptor::generated::descriptor::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
};
use connectrpc::{ConnectError, RequestContext, Response, Router, ServiceResult, ServiceStream};
use corral_api::grpc::reflection::v1::__buffa::oneof::server_reflection_request::MessageRequest;
use corral_api::grpc::reflection::v1::__buffa::oneof::server_reflection_response::MessageResponse;
use corral_api::grpc::reflection::v1::{
    ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse,
    ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
};
use futures_util::StreamExt as _;

/// The service names reflection answers under; both speak the same messages.
pub const SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The one method of the reflection services.
pub const METHOD: &str = "ServerReflectionInfo";

/// Requests one stream may make; a client listing every service and
/// fetching each one's file needs a few dozen.
pub const MAX_REQUESTS_PER_STREAM: usize = 1024;

/// Largest request message: a symbol or file name, far below this.
pub const MAX_REQUEST_MESSAGE_BYTES: usize = 16 * 1024;

/// Names longer than this are not looked up (no name in the schema is near it).
const MAX_NAME_BYTES: usize = 1024;

/// gRPC status codes carried in an `ErrorResponse`.
const NOT_FOUND: i32 = 5;
const INVALID_ARGUMENT: i32 = 3;

/// The schema, indexed for the questions reflection asks.
#[derive(Debug, Default)]
pub struct SchemaIndex {
    /// File name → its serialized `FileDescriptorProto` and direct imports.
    files: HashMap<String, IndexedFile>,
    /// Fully qualified symbol (no leading dot) → the file defining it.
    symbols: HashMap<String, String>,
    /// (extended message, field number) → the file declaring the extension.
    extensions: HashMap<(String, i32), String>,
    /// Extended message → the extension numbers declared for it.
    extension_numbers: BTreeMap<String, BTreeSet<i32>>,
    /// Every message, fully qualified.
    messages: HashSet<String>,
    /// Every service, fully qualified, sorted.
    services: Vec<String>,
}

#[derive(Debug)]
struct IndexedFile {
    encoded: Vec<u8>,
    dependencies: Vec<String>,
}

/// Why a descriptor set could not be indexed.
#[derive(Debug, thiserror::Error)]
#[error("the descriptor set does not decode: {0}")]
pub struct IndexError(#[from] buffa::DecodeError);

impl SchemaIndex {
    /// The index of corral's own schema, built on first use.
    pub fn corral() -> Arc<SchemaIndex> {
        static INDEX: LazyLock<Arc<SchemaIndex>> = LazyLock::new(|| {
            Arc::new(
                SchemaIndex::from_descriptor_set(corral_api::DESCRIPTOR_SET)
                    .expect("the compiled descriptor set decodes"),
            )
        });
        INDEX.clone()
    }

    /// Indexes a serialized `FileDescriptorSet`.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, IndexError> {
        let set = FileDescriptorSet::decode_from_slice(bytes)?;
        let mut index = SchemaIndex::default();
        for file in &set.file {
            let name = file.name.clone().unwrap_or_default();
            let package = file.package.clone().unwrap_or_default();
            let mut add = |symbol: String| {
                index.symbols.insert(symbol, name.clone());
            };
            for service in &file.service {
                let service_name = qualify(&package, service.name.as_deref().unwrap_or_default());
                for method in &service.method {
                    add(format!(
                        "{service_name}.{}",
                        method.name.as_deref().unwrap_or_default()
                    ));
                }
                add(service_name.clone());
                index.services.push(service_name);
            }
            index_messages(&package, &file.message_type, &mut add, &mut index.messages);
            index_enums(&package, &file.enum_type, &mut add);
            let mut extensions: Vec<(String, &FieldDescriptorProto)> = file
                .extension
                .iter()
                .map(|e| (package.clone(), e))
                .collect();
            collect_nested_extensions(&package, &file.message_type, &mut extensions);
            for (scope, extension) in extensions {
                add(qualify(
                    &scope,
                    extension.name.as_deref().unwrap_or_default(),
                ));
                let extendee = extension
                    .extendee
                    .as_deref()
                    .unwrap_or_default()
                    .trim_start_matches('.')
                    .to_string();
                let number = extension.number.unwrap_or_default();
                index
                    .extensions
                    .insert((extendee.clone(), number), name.clone());
                index
                    .extension_numbers
                    .entry(extendee)
                    .or_default()
                    .insert(number);
            }
            index.files.insert(
                name,
                IndexedFile {
                    encoded: file.encode_to_vec(),
                    dependencies: file.dependency.clone(),
                },
            );
        }
        index.services.sort();
        Ok(index)
    }

    /// The fully qualified names of every service, sorted.
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// The answer to one request.
    pub fn answer(&self, request: ServerReflectionRequest) -> ServerReflectionResponse {
        let message_response = match &request.message_request {
            None => error(INVALID_ARGUMENT, "the request asks nothing".into()),
            Some(MessageRequest::ListServices(_)) => MessageResponse::from(ListServiceResponse {
                service: self
                    .services
                    .iter()
                    .map(|name| ServiceResponse {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            Some(MessageRequest::FileByFilename(name)) => {
                self.file_answer(Some(name), || format!("no file {:?}", shorten(name)))
            }
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                let symbol = symbol.trim_start_matches('.');
                self.file_answer(self.symbols.get(symbol), || {
                    format!("no symbol {:?}", shorten(symbol))
                })
            }
            Some(MessageRequest::FileContainingExtension(extension)) => {
                let extendee = extension.containing_type.trim_start_matches('.');
                let file = self
                    .extensions
                    .get(&(extendee.to_string(), extension.extension_number));
                self.file_answer(file, || {
                    format!(
                        "no extension {} of {:?}",
                        extension.extension_number,
                        shorten(extendee)
                    )
                })
            }
            Some(MessageRequest::AllExtensionNumbersOfType(type_name)) => {
                let type_name = type_name.trim_start_matches('.');
                if self.is_message(type_name) {
                    MessageResponse::from(ExtensionNumberResponse {
                        base_type_name: type_name.to_string(),
                        extension_number: self
                            .extension_numbers
                            .get(type_name)
                            .map(|numbers| numbers.iter().copied().collect())
                            .unwrap_or_default(),
                        ..Default::default()
                    })
                } else {
                    error(NOT_FOUND, format!("no message {:?}", shorten(type_name)))
                }
            }
        };
        ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: request.into(),
            message_response: Some(message_response),
            ..Default::default()
        }
    }

    /// Whether a symbol names a message (rather than a service, field, enum…).
    fn is_message(&self, type_name: &str) -> bool {
        self.messages.contains(type_name)
    }

    /// The file named `name` followed by everything it imports, each once
    /// (clients resolve the file's types from its imports).
    fn file_answer(
        &self,
        name: Option<&String>,
        missing: impl FnOnce() -> String,
    ) -> MessageResponse {
        let Some(first) = name.filter(|n| n.len() <= MAX_NAME_BYTES && self.files.contains_key(*n))
        else {
            return error(NOT_FOUND, missing());
        };
        let mut seen = BTreeSet::new();
        let mut pending = vec![first.as_str()];
        let mut encoded = Vec::new();
        while let Some(next) = pending.pop() {
            if !seen.insert(next) {
                continue;
            }
            if let Some(file) = self.files.get(next) {
                encoded.push(file.encoded.clone());
                pending.extend(file.dependencies.iter().rev().map(String::as_str));
            }
        }
        MessageResponse::from(FileDescriptorResponse {
            file_descriptor_proto: encoded,
            ..Default::default()
        })
    }
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

fn index_messages(
    scope: &str,
    messages: &[DescriptorProto],
    add: &mut impl FnMut(String),
    message_names: &mut HashSet<String>,
) {
    for message in messages {
        let name = qualify(scope, message.name.as_deref().unwrap_or_default());
        message_names.insert(name.clone());
        for field in &message.field {
            add(qualify(&name, field.name.as_deref().unwrap_or_default()));
        }
        for oneof in &message.oneof_decl {
            add(qualify(&name, oneof.name.as_deref().unwrap_or_default()));
        }
        index_messages(&name, &message.nested_type, add, message_names);
        index_enums(&name, &message.enum_type, add);
        add(name);
    }
}

fn index_enums(scope: &str, enums: &[EnumDescriptorProto], add: &mut impl FnMut(String)) {
    for enumeration in enums {
        add(qualify(
            scope,
            enumeration.name.as_deref().unwrap_or_default(),
        ));
        // Enum values are scoped beside their enum, not inside it.
        for value in &enumeration.value {
            add(qualify(scope, value.name.as_deref().unwrap_or_default()));
        }
    }
}

fn collect_nested_extensions<'a>(
    scope: &str,
    messages: &'a [DescriptorProto],
    into: &mut Vec<(String, &'a FieldDescriptorProto)>,
) {
    for message in messages {
        let name = qualify(scope, message.name.as_deref().unwrap_or_default());
        into.extend(message.extension.iter().map(|e| (name.clone(), e)));
        collect_nested_extensions(&name, &message.nested_type, into);
    }
}

fn error(code: i32, message: String) -> MessageResponse {
    MessageResponse::from(ErrorResponse {
        error_code: code,
        error_message: message,
        ..Default::default()
    })
}

/// A client's name, cut short for an error message.
fn shorten(name: &str) -> &str {
    match name.char_indices().nth(200) {
        Some((at, _)) => &name[..at],
        None => name,
    }
}

/// Registers both reflection services on `router`.
pub fn register(router: Router, index: Arc<SchemaIndex>) -> Router {
    let mut router = router;
    for service in SERVICES {
        let index = index.clone();
        router = router
            .route_bidi_stream::<_, ServerReflectionRequest, ServerReflectionResponse>(
                service,
                METHOD,
                connectrpc::bidi_streaming_handler_fn(
                    move |_ctx: RequestContext,
                          requests: ServiceStream<ServerReflectionRequest>| {
                        let index = index.clone();
                        async move { answer_stream(index, requests) }
                    },
                ),
            )
            .with_route_limits(
                &format!("{service}/{METHOD}"),
                connectrpc::Limits::default()
                    .with_max_request_body_size(MAX_REQUESTS_PER_STREAM * MAX_REQUEST_MESSAGE_BYTES)
                    .with_max_message_size(MAX_REQUEST_MESSAGE_BYTES),
            );
    }
    router
}

/// One answer per request, in order; the stream ends when the client's
/// does, or with `resource_exhausted` after too many requests.
fn answer_stream(
    index: Arc<SchemaIndex>,
    mut requests: ServiceStream<ServerReflectionRequest>,
) -> ServiceResult<ServiceStream<ServerReflectionResponse>> {
    let answers = async_stream::stream! {
        let mut answered = 0;
        while let Some(request) = requests.next().await {
            let request = match request {
                Ok(request) => request,
                Err(err) => {
                    yield Err(err);
                    break;
                }
            };
            if answered == MAX_REQUESTS_PER_STREAM {
                yield Err(ConnectError::resource_exhausted(format!(
                    "a reflection stream answers at most {MAX_REQUESTS_PER_STREAM} requests; open a new one"
                )));
                break;
            }
            answered += 1;
            yield Ok(index.answer(request));
        }
    };
    Response::ok(Box::pin(answers) as ServiceStream<ServerReflectionResponse>)
}

#[cfg(test)]
mod tests {
    use buffa_descriptor::generated::descriptor::FileDescriptorProto;
    use corral_api::grpc::reflection::v1::ExtensionRequest;

    use super::*;

    fn ask(request: MessageRequest) -> MessageResponse {
        let answer = SchemaIndex::corral().answer(ServerReflectionRequest {
            host: "example".into(),
            message_request: Some(request.clone()),
            ..Default::default()
        });
        assert_eq!(answer.valid_host, "example");
        assert_eq!(
            answer.original_request.as_option().unwrap().message_request,
            Some(request)
        );
        answer.message_response.unwrap()
    }

    fn files(answer: MessageResponse) -> Vec<FileDescriptorProto> {
        let MessageResponse::FileDescriptorResponse(files) = answer else {
            panic!("expected files, got {answer:?}");
        };
        files
            .file_descriptor_proto
            .iter()
            .map(|bytes| FileDescriptorProto::decode_from_slice(bytes).unwrap())
            .collect()
    }

    fn error_code(answer: MessageResponse) -> i32 {
        let MessageResponse::ErrorResponse(error) = answer else {
            panic!("expected an error, got {answer:?}");
        };
        assert!(!error.error_message.is_empty());
        error.error_code
    }

    /// Every import of every file handed out is handed out too.
    fn assert_closed_under_imports(files: &[FileDescriptorProto]) {
        let names: BTreeSet<&str> = files.iter().filter_map(|f| f.name.as_deref()).collect();
        assert_eq!(names.len(), files.len(), "a file is sent twice");
        for file in files {
            for dependency in &file.dependency {
                assert!(names.contains(dependency.as_str()), "{dependency} missing");
            }
        }
    }

    #[test]
    fn lists_every_service_of_the_schema() {
        let MessageResponse::ListServicesResponse(list) =
            ask(MessageRequest::ListServices(String::new()))
        else {
            panic!("expected a service list");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in [
            "corral.v1.RunnerInteractionService",
            "gitpod.v1.IdentityService",
            "gitpod.v1.RunnerConfigurationService",
            "gitpod.v1.RunnerService",
        ] {
            assert!(names.contains(&expected), "{expected} not in {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn finds_the_file_of_services_methods_messages_fields_and_enum_values() {
        for symbol in [
            "gitpod.v1.RunnerService",
            ".gitpod.v1.RunnerService",
            "gitpod.v1.RunnerService.ListRunners",
            "gitpod.v1.ListRunnersRequest",
            "gitpod.v1.ListRunnersRequest.pagination",
        ] {
            let files = files(ask(MessageRequest::FileContainingSymbol(symbol.into())));
            assert_eq!(
                files[0].name.as_deref(),
                Some("gitpod/v1/runner.proto"),
                "{symbol}"
            );
            assert_closed_under_imports(&files);
        }
        let files = files(ask(MessageRequest::FileContainingSymbol(
            "corral.v1.RunnerInteractionService".into(),
        )));
        assert_eq!(
            files[0].name.as_deref(),
            Some("corral/v1/runner_interaction.proto")
        );
        let service = &files[0].service[0];
        assert!(
            service
                .method
                .iter()
                .any(|m| m.name.as_deref() == Some("WatchRequests"))
        );
    }

    #[test]
    fn hands_out_a_file_by_name_with_its_imports() {
        let files = files(ask(MessageRequest::FileByFilename(
            "gitpod/v1/runner_configuration.proto".into(),
        )));
        assert_eq!(
            files[0].name.as_deref(),
            Some("gitpod/v1/runner_configuration.proto")
        );
        assert!(files.len() > 1, "runner_configuration.proto has imports");
        assert_closed_under_imports(&files);
        // The descriptors keep their comments, for `describe`.
        assert!(files[0].source_code_info.is_set());
    }

    #[test]
    fn unknown_names_are_not_found() {
        for request in [
            MessageRequest::FileByFilename("no/such.proto".into()),
            MessageRequest::FileContainingSymbol("gitpod.v1.NoSuchService".into()),
            MessageRequest::FileContainingSymbol("x".repeat(100_000)),
            MessageRequest::AllExtensionNumbersOfType("gitpod.v1.NoSuchMessage".into()),
            // A service is not a message.
            MessageRequest::AllExtensionNumbersOfType("gitpod.v1.RunnerService".into()),
            MessageRequest::FileContainingExtension(Box::new(ExtensionRequest {
                containing_type: "gitpod.v1.Runner".into(),
                extension_number: 1000,
                ..Default::default()
            })),
        ] {
            assert_eq!(error_code(ask(request.clone())), NOT_FOUND, "{request:?}");
        }
        let answer = SchemaIndex::corral().answer(ServerReflectionRequest::default());
        assert_eq!(
            error_code(answer.message_response.unwrap()),
            INVALID_ARGUMENT
        );
    }

    #[test]
    fn answers_extension_questions_from_the_schema() {
        // buf.validate extends FieldOptions; our own messages have no extensions.
        let MessageResponse::AllExtensionNumbersResponse(numbers) = ask(
            MessageRequest::AllExtensionNumbersOfType("google.protobuf.FieldOptions".into()),
        ) else {
            panic!("expected extension numbers");
        };
        assert_eq!(numbers.base_type_name, "google.protobuf.FieldOptions");
        let first = *numbers
            .extension_number
            .first()
            .expect("buf.validate.field");
        let files = files(ask(MessageRequest::FileContainingExtension(Box::new(
            ExtensionRequest {
                containing_type: ".google.protobuf.FieldOptions".into(),
                extension_number: first,
                ..Default::default()
            },
        ))));
        assert_eq!(
            files[0].name.as_deref(),
            Some("buf/validate/validate.proto")
        );
        let MessageResponse::AllExtensionNumbersResponse(none) = ask(
            MessageRequest::AllExtensionNumbersOfType("gitpod.v1.Runner".into()),
        ) else {
            panic!("expected extension numbers");
        };
        assert!(none.extension_number.is_empty());
    }

    #[tokio::test]
    async fn a_stream_answers_in_order_and_at_most_the_bound() {
        let requests: Vec<Result<ServerReflectionRequest, ConnectError>> = (0
            ..=MAX_REQUESTS_PER_STREAM)
            .map(|i| {
                Ok(ServerReflectionRequest {
                    message_request: Some(MessageRequest::FileContainingSymbol(format!(
                        "no.Such{i}"
                    ))),
                    ..Default::default()
                })
            })
            .collect();
        let response = answer_stream(
            SchemaIndex::corral(),
            Box::pin(futures_util::stream::iter(requests)),
        )
        .unwrap();
        let answers: Vec<_> = response.body.collect().await;
        assert_eq!(answers.len(), MAX_REQUESTS_PER_STREAM + 1);
        for (i, answer) in answers[..MAX_REQUESTS_PER_STREAM].iter().enumerate() {
            let answer = answer.as_ref().unwrap();
            let Some(MessageRequest::FileContainingSymbol(symbol)) =
                &answer.original_request.as_option().unwrap().message_request
            else {
                panic!("the original request is echoed");
            };
            assert_eq!(*symbol, format!("no.Such{i}"));
        }
        let last = answers.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code, connectrpc::error::ErrorCode::ResourceExhausted);
    }
}
