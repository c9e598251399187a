//! Compiles `proto/` into Rust: message types and Connect service traits
//! (connectrpc-build) plus `Validate` impls for the `buf.validate` rules
//! (protoc-gen-protovalidate-buffa, used as a library). No `protoc` needed:
//! `protox` parses the .proto files.
//!
//! Two guarantees about request sizes are enforced here, at build time:
//! every list a request can carry declares `repeated.max_items` (the build
//! fails otherwise), and the generated validators check the items of a list
//! only up to that bound, so an oversized list costs one violation, not one
//! per item.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use buffa::{ExtensionSet, Message};
use buffa_codegen::generated::compiler::CodeGeneratorRequest;
use buffa_codegen::generated::descriptor::{
    DescriptorProto, FileDescriptorSet, field_descriptor_proto,
};
use protovalidate_buffa_protos::buf::validate::__buffa::ext::FIELD;
use protovalidate_buffa_protos::buf::validate::__buffa::oneof::field_rules;
use protovalidate_buffa_protos::buf::validate::{FieldRules, Ignore};

fn main() -> Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto").canonicalize()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let files = proto_files(&proto_root)?;
    let descriptor_bytes = protox::Compiler::new([&proto_root])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?
        .encode_file_descriptor_set();
    let descriptor_path = out_dir.join("corral_descriptor_set.bin");
    std::fs::write(&descriptor_path, &descriptor_bytes)?;

    connectrpc_build::Config::new()
        .files(&files)
        .descriptor_set(&descriptor_path)
        .include_file("_connectrpc.rs")
        .compile()
        .context("generating messages and services")?;

    write_validators(&descriptor_bytes, &files, &out_dir)?;
    compile_reflection(&proto_root, &out_dir)
}

/// The server reflection protocol's messages and service: compiled on their
/// own so that they stay out of `DESCRIPTOR_SET`, which is corral's API.
fn compile_reflection(proto_root: &Path, out_dir: &Path) -> Result<()> {
    let files = ["grpc/reflection/v1/reflection.proto"];
    let descriptor_bytes = protox::Compiler::new([proto_root])?
        .include_imports(true)
        .open_files(files)?
        .encode_file_descriptor_set();
    let descriptor_path = out_dir.join("reflection_descriptor_set.bin");
    std::fs::write(&descriptor_path, &descriptor_bytes)?;
    connectrpc_build::Config::new()
        .files(&files)
        .descriptor_set(&descriptor_path)
        .include_file("_reflection.rs")
        .compile()
        .context("generating the reflection messages")
}

/// Every .proto file we own, as proto-relative names (`gitpod/v1/runner.proto`).
fn proto_files(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for package in ["gitpod/v1", "corral/v1"] {
        let dir = root.join(package);
        if !dir.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".proto") {
                files.push(format!("{package}/{name}"));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn write_validators(descriptor_bytes: &[u8], files: &[String], out_dir: &Path) -> Result<()> {
    let set = FileDescriptorSet::decode_from_slice(descriptor_bytes)?;
    check_request_lists_are_bounded(&set, files)?;
    let request = CodeGeneratorRequest {
        file_to_generate: files.to_vec(),
        proto_file: set.file,
        ..Default::default()
    };
    let validators = protoc_gen_protovalidate_buffa::scan::gather(&request)?;
    let options = protoc_gen_protovalidate_buffa::emit::Options {
        packaging: false,
        file_per_package: true,
        ..Default::default()
    };
    for file in protoc_gen_protovalidate_buffa::emit::render_with_options(&validators, &options)? {
        let name = file.name.context("validator file without a name")?;
        let code = cap_item_checks(&file.content.unwrap_or_default())
            .with_context(|| format!("bounding the item checks in {name}"))?;
        std::fs::write(out_dir.join(&name), code)?;
    }
    Ok(())
}

/// Fails unless every repeated field reachable from an RPC's request message
/// (through message fields whose rules are not ignored) has a
/// `(buf.validate.field).repeated.max_items` rule.
fn check_request_lists_are_bounded(set: &FileDescriptorSet, files: &[String]) -> Result<()> {
    fn collect<'a>(
        prefix: &str,
        messages: &'a [DescriptorProto],
        into: &mut BTreeMap<String, &'a DescriptorProto>,
    ) {
        for message in messages {
            let name = format!("{prefix}.{}", message.name.as_deref().unwrap_or_default());
            collect(&name, &message.nested_type, into);
            into.insert(name, message);
        }
    }
    let mut messages = BTreeMap::new();
    for file in &set.file {
        let package = file.package.as_deref().unwrap_or_default();
        collect(&format!(".{package}"), &file.message_type, &mut messages);
    }

    let mut pending: Vec<String> = Vec::new();
    for file in set.file.iter().filter(|f| {
        f.name
            .as_deref()
            .is_some_and(|n| files.iter().any(|g| g == n))
    }) {
        for service in &file.service {
            for method in &service.method {
                pending.extend(method.input_type.clone());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut unbounded = Vec::new();
    while let Some(name) = pending.pop() {
        if name.starts_with(".google.protobuf.") || !seen.insert(name.clone()) {
            continue;
        }
        let message = messages
            .get(&name)
            .with_context(|| format!("request message {name} not found"))?;
        for field in &message.field {
            let rules: Option<FieldRules> =
                field.options.as_option().and_then(|o| o.extension(&FIELD));
            if rules
                .as_ref()
                .is_some_and(|r| r.ignore == Some(Ignore::IGNORE_ALWAYS))
            {
                continue;
            }
            let repeated = field.label == Some(field_descriptor_proto::Label::LABEL_REPEATED);
            let bounded = matches!(
                rules.as_ref().and_then(|r| r.r#type.as_ref()),
                Some(field_rules::Type::Repeated(r)) if r.max_items.is_some()
            );
            if repeated && !bounded {
                unbounded.push(format!(
                    "{}.{}",
                    &name[1..],
                    field.name.as_deref().unwrap_or_default()
                ));
            }
            if field.r#type == Some(field_descriptor_proto::Type::TYPE_MESSAGE) {
                pending.extend(field.type_name.clone());
            }
        }
    }
    if !unbounded.is_empty() {
        bail!(
            "these lists can arrive in a request but have no (buf.validate.field).repeated.max_items: {}",
            unbounded.join(", ")
        );
    }
    Ok(())
}

/// Rewrites the generated item loops of bounded lists to look at no more
/// items than the list may hold: `for (idx, elem) in self.F.iter().enumerate()`
/// gets `.take(N)` where the same validator refuses `self.F.len() > N`.
fn cap_item_checks(code: &str) -> Result<String> {
    const IMPL: &str = "impl ::protovalidate_buffa::Validate";
    let mut starts: Vec<usize> = code.match_indices(IMPL).map(|(i, _)| i).collect();
    starts.insert(0, 0);
    starts.push(code.len());
    let mut out = String::with_capacity(code.len() + 1024);
    let mut capped = 0;
    for pair in starts.windows(2) {
        let mut block = code[pair[0]..pair[1]].to_string();
        for (field, max) in max_items_checks(&block) {
            let plain = format!("for (idx, elem) in self.{field}.iter().enumerate() {{");
            let bounded =
                format!("for (idx, elem) in self.{field}.iter().enumerate().take({max}) {{");
            let loops = block.matches(&plain).count();
            if loops == 0 && block.contains(&format!("self.{field}.iter()")) {
                bail!("the validator's loop over {field} has an unexpected shape");
            }
            block = block.replace(&plain, &bounded);
            capped += loops;
        }
        out.push_str(&block);
    }
    if capped == 0 && code.contains("\"repeated.max_items\"") {
        bail!("found max_items rules but no item loop to bound: the generated code changed shape");
    }
    Ok(out)
}

/// `(field, N)` for every `self.field.len() > Nusize` in a validator.
fn max_items_checks(block: &str) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for (at, _) in block.match_indices(".len() > ") {
        let before = &block[..at];
        let Some(self_at) = before.rfind("self.") else {
            continue;
        };
        let field = &before[self_at + "self.".len()..];
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let after = &block[at + ".len() > ".len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !after[digits.len()..].starts_with("usize") {
            continue;
        }
        if let Ok(max) = digits.parse() {
            found.push((field.to_string(), max));
        }
    }
    found
}
