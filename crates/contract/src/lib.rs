//! `corral-contract`: what the management plane (`corral serve`) and its
//! runners (`corral runner`) agree on beyond the wire types of `corral-api`.
//!
//! - [`schema`]: the configuration schema of `corral runner` on a Linux host.
//!   The runner uploads it; the server uses it for a runner that has not
//!   uploaded one yet.
//! - [`limits`]: the size caps on what a runner reports (status fields, the
//!   schema). The server refuses reports beyond them; the runner fits its
//!   reports inside them.
//! - [`release`]: what the release key signs, and how versions order
//!   (semver), for runner self-updates.
//! - [`scm_host`]: how an SCM host is spelled, checked and brought into
//!   canonical form wherever the server accepts one.
//!
//! Invariant: both sides take these from here, never from each other; the
//! server does not depend on the runner crate, nor the runner on the server.
//! No I/O and no HTTP clients in this crate.

pub mod limits;
pub mod release;
pub mod schema;
pub mod scm_host;
