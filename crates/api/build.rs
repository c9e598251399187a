//! Compiles `proto/` into Rust: message types and Connect service traits
//! (connectrpc-build) plus `Validate` impls for the `buf.validate` rules
//! (protoc-gen-protovalidate-buffa, used as a library). No `protoc` needed:
//! `protox` parses the .proto files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use buffa::Message;
use buffa_codegen::generated::compiler::CodeGeneratorRequest;
use buffa_codegen::generated::descriptor::FileDescriptorSet;

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

    write_validators(&descriptor_bytes, &files, &out_dir)
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
        std::fs::write(out_dir.join(&name), file.content.unwrap_or_default())?;
    }
    Ok(())
}
