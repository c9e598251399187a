//! corral's wire types: messages, Connect service traits and clients, and
//! request validators, all generated from `proto/` at build time by
//! `build.rs`. Nothing here is written by hand; the domain and store types
//! live in `corral-server` and are converted at the protocol edge.

/// The public Ona-compatible API (`gitpod.v1`).
#[allow(
    clippy::all,
    missing_docs,
    non_camel_case_types,
    dead_code,
    unused_imports,
    unused_comparisons
)]
pub mod gitpod {
    pub mod v1 {
        // The validators name enums by their full path from the crate root.
        use crate::gitpod;
        include!(concat!(env!("OUT_DIR"), "/gitpod.v1.mod.rs"));
        include!(concat!(env!("OUT_DIR"), "/gitpod.v1.validate.rs"));
    }
}

/// corral's own runner-facing API (`corral.v1`).
#[allow(
    clippy::all,
    missing_docs,
    non_camel_case_types,
    dead_code,
    unused_imports,
    unused_comparisons
)]
pub mod corral {
    pub mod v1 {
        use crate::gitpod;
        include!(concat!(env!("OUT_DIR"), "/corral.v1.mod.rs"));
        include!(concat!(env!("OUT_DIR"), "/corral.v1.validate.rs"));
    }
}

/// The gRPC server reflection protocol (`grpc.reflection.v1`), which lets
/// clients fetch the schema from a running server. Not part of
/// [`DESCRIPTOR_SET`].
#[allow(
    clippy::all,
    missing_docs,
    non_camel_case_types,
    dead_code,
    unused_imports
)]
pub mod grpc {
    pub mod reflection {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/grpc.reflection.v1.mod.rs"));
        }
    }
}

/// The compiled `FileDescriptorSet` of every file in `proto/` (with imports),
/// used to compare our schema with the published one.
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/corral_descriptor_set.bin"));
