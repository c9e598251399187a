//! How an SCM host is spelled wherever the management plane accepts one: the
//! host of an SCM integration or a host authentication token, and the host an
//! SCM request names.
//!
//! Accepted: `host[:port]`, optionally after `http://` or `https://`, where
//! `host` is a DNS name (labels of letters, digits and `-`, at most 63
//! characters each, 253 in all; international names in their `xn--` form), a
//! dotted IPv4 address or a bracketed IPv6 address, and the port is 1-65535.
//! Only an Azure DevOps integration's host may go on with a path (an Azure
//! DevOps Server virtual directory such as `/tfs/DefaultCollection`), made of
//! plain segments: no `.` or `..`, no percent-encoding. Never accepted: a user
//! name or password, whitespace or control characters, a query or fragment.
//!
//! The canonical form is what gets stored: lower case, no trailing slash, no
//! scheme unless it was `http://` (https is what a host without one means),
//! no port when it is the scheme's default (443, or 80 for http). Error
//! messages never repeat the input, which may hold a password.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The `scm_id` whose integrations may carry a path in their host.
pub const AZURE_DEVOPS: &str = "azure-devops";
/// The longest host accepted, scheme, port and path included.
pub const HOST_MAX_BYTES: usize = 512;
const NAME_MAX_CHARS: usize = 253;
const LABEL_MAX_CHARS: usize = 63;

/// Whether a host may go on with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRule {
    Refused,
    Allowed,
}

impl PathRule {
    /// The rule for an SCM integration's host: a path only for Azure DevOps.
    pub fn for_scm(scm_id: &str) -> PathRule {
        if scm_id == AZURE_DEVOPS {
            PathRule::Allowed
        } else {
            PathRule::Refused
        }
    }
}

/// What is wrong with a host; its text completes "host …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("is required")]
    Empty,
    #[error("is longer than {HOST_MAX_BYTES} bytes")]
    TooLong,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must not contain whitespace")]
    Whitespace,
    #[error("may start with http:// or https:// and no other scheme")]
    Scheme,
    #[error("must be an absolute URL that starts with https:// or http://")]
    NotAbsolute,
    #[error("must not contain a user name or password")]
    UserInfo,
    #[error("must not contain a query, a fragment or a backslash")]
    QueryOrFragment,
    #[error(
        "must not contain a path; only an Azure DevOps integration's host may carry one (its virtual directory)"
    )]
    Path,
    #[error("has an invalid path: {0}")]
    PathSegment(&'static str),
    #[error("has an invalid port: it must be a number from 1 to 65535")]
    Port,
    #[error("has no host name")]
    NoName,
    #[error("has a host name longer than {NAME_MAX_CHARS} characters")]
    NameTooLong,
    #[error("has a host name label longer than {LABEL_MAX_CHARS} characters")]
    LabelTooLong,
    #[error("has an invalid host name: {0}")]
    Name(&'static str),
    #[error("has an invalid IPv4 address")]
    Ipv4,
    #[error("has an invalid IPv6 address (IPv6 addresses go in brackets: [::1]:8080)")]
    Ipv6,
}

/// A well-formed SCM host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmHost {
    http: bool,
    /// Lower-case DNS name, dotted IPv4 address, or `[IPv6]`.
    name: String,
    /// Absent when it is the scheme's default.
    port: Option<u16>,
    /// Without slashes at either end.
    path: Option<String>,
}

impl ScmHost {
    /// Checks `input` and brings it into canonical form.
    pub fn parse(input: &str, paths: PathRule) -> Result<ScmHost, HostError> {
        if input.is_empty() {
            return Err(HostError::Empty);
        }
        if input.len() > HOST_MAX_BYTES {
            return Err(HostError::TooLong);
        }
        if input.chars().any(char::is_control) {
            return Err(HostError::ControlCharacter);
        }
        if input.chars().any(char::is_whitespace) {
            return Err(HostError::Whitespace);
        }
        let lower = input.to_ascii_lowercase();
        let (http, rest) = if let Some(rest) = lower.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = lower.strip_prefix("https://") {
            (false, rest)
        } else if lower.contains("://") {
            return Err(HostError::Scheme);
        } else {
            (false, lower.as_str())
        };
        if rest.contains('@') {
            return Err(HostError::UserInfo);
        }
        if rest.contains(['?', '#', '\\']) {
            return Err(HostError::QueryOrFragment);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = match path {
            "" | "/" => None,
            _ if paths == PathRule::Refused => return Err(HostError::Path),
            _ => Some(path_segments(path)?),
        };
        let (name, port) = name_and_port(authority)?;
        let default_port = if http { 80 } else { 443 };
        Ok(ScmHost {
            http,
            name,
            port: port.filter(|p| *p != default_port),
            path,
        })
    }

    /// `[http://]host[:port][/path]`: the form to store and compare.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        if self.http {
            out.push_str("http://");
        }
        out.push_str(&self.key());
        if let Some(path) = &self.path {
            out.push('/');
            out.push_str(path);
        }
        out
    }

    /// `host[:port]`: what host tokens and SCM requests are matched by.
    pub fn key(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.name),
            None => self.name.clone(),
        }
    }

    /// The path below the host (an Azure DevOps Server virtual directory).
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

impl fmt::Display for ScmHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// Checks an SCM integration's `virtual_directory` (e.g. `/tfs`): the same
/// plain segments a host's path may have; empty means none.
pub fn check_virtual_directory(dir: &str) -> Result<(), HostError> {
    if dir.len() > HOST_MAX_BYTES {
        return Err(HostError::TooLong);
    }
    if dir.chars().any(char::is_control) {
        return Err(HostError::ControlCharacter);
    }
    let inner = dir.strip_prefix('/').unwrap_or(dir);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return Ok(());
    }
    path_segments(&format!("/{inner}")).map(|_| ())
}

/// Checks an OAuth `issuer_url`, where an SCM integration's authorize and
/// token endpoints live when they are not on the SCM host: an absolute
/// `https://` or `http://` URL of a host, optionally with a path of plain
/// segments (`https://login.example.com/tenant/v2.0`). Returns it in
/// canonical form (which drops the scheme for https). Error texts complete
/// "issuer_url …".
pub fn check_issuer_url(url: &str) -> Result<ScmHost, HostError> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(HostError::NotAbsolute);
    }
    ScmHost::parse(url, PathRule::Allowed)
}

/// The key a stored or requested host is matched by, for any spelling the
/// store may hold (also from before hosts were checked): lower case, without
/// scheme, path or a leading `www.`. Equal to [`ScmHost::key`] for canonical
/// hosts that do not start with `www.`.
pub fn lookup_key(host: &str) -> String {
    let host = host.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = host.split_once("://").map_or(host.as_str(), |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .strip_prefix("www.")
        .unwrap_or(authority)
        .to_string()
}

/// `path` (starting with `/`) without its slashes at the ends, if every
/// segment is plain.
fn path_segments(path: &str) -> Result<String, HostError> {
    let inner = &path[1..];
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    for segment in inner.split('/') {
        if segment.is_empty() {
            return Err(HostError::PathSegment("it has an empty segment"));
        }
        if segment == "." || segment == ".." {
            return Err(HostError::PathSegment(
                "'.' and '..' segments are not allowed",
            ));
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
        {
            return Err(HostError::PathSegment(
                "segments may hold letters, digits, '-', '.', '_' and '~'",
            ));
        }
    }
    Ok(inner.to_string())
}

fn name_and_port(authority: &str) -> Result<(String, Option<u16>), HostError> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or(HostError::Ipv6)?;
        let address: Ipv6Addr = address.parse().map_err(|_| HostError::Ipv6)?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':').ok_or(HostError::Ipv6)?)?),
        };
        return Ok((format!("[{address}]"), port));
    }
    let (name, port) = match authority.split_once(':') {
        Some((_, rest)) if rest.contains(':') => return Err(HostError::Ipv6),
        Some((name, digits)) => (name, Some(port(digits)?)),
        None => (authority, None),
    };
    Ok((host_name(name)?, port))
}

fn port(digits: &str) -> Result<u16, HostError> {
    if digits.is_empty() || digits.len() > 5 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(HostError::Port);
    }
    match digits.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(HostError::Port),
    }
}

/// A lower-case DNS name or dotted IPv4 address.
fn host_name(name: &str) -> Result<String, HostError> {
    if name.is_empty() {
        return Err(HostError::NoName);
    }
    if !name.is_ascii() {
        return Err(HostError::Name(
            "write international names in their xn-- (punycode) form",
        ));
    }
    if name.len() > NAME_MAX_CHARS {
        return Err(HostError::NameTooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(HostError::Name(
                "it has an empty label (a leading, trailing or doubled dot)",
            ));
        }
        if label.len() > LABEL_MAX_CHARS {
            return Err(HostError::LabelTooLong);
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(HostError::Name(
                "labels may hold letters, digits and '-' only",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::Name("a label must not start or end with '-'"));
        }
    }
    // A name ending in a number is an IPv4 address to URL parsers (and so to
    // the runner), so it must be a proper one.
    let last = labels[labels.len() - 1];
    if last.chars().all(|c| c.is_ascii_digit()) || last.starts_with("0x") {
        let address: Ipv4Addr = name.parse().map_err(|_| HostError::Ipv4)?;
        return Ok(address.to_string());
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCEPTED: &[(&str, PathRule, &str)] = &[
        ("github.com", PathRule::Refused, "github.com"),
        ("GitHub.com/", PathRule::Refused, "github.com"),
        ("https://github.com", PathRule::Refused, "github.com"),
        ("HTTPS://GitHub.com:443/", PathRule::Refused, "github.com"),
        ("github.com:443", PathRule::Refused, "github.com"),
        (
            "http://gitea.local:3000",
            PathRule::Refused,
            "http://gitea.local:3000",
        ),
        (
            "http://gitea.local:80",
            PathRule::Refused,
            "http://gitea.local",
        ),
        (
            "http://gitea.local:443",
            PathRule::Refused,
            "http://gitea.local:443",
        ),
        ("gitea.local:3000", PathRule::Refused, "gitea.local:3000"),
        ("localhost", PathRule::Refused, "localhost"),
        ("127.0.0.1:3000", PathRule::Refused, "127.0.0.1:3000"),
        (
            "http://127.0.0.1:8929",
            PathRule::Refused,
            "http://127.0.0.1:8929",
        ),
        ("[::1]:8080", PathRule::Refused, "[::1]:8080"),
        ("http://[::1]:8080/", PathRule::Refused, "http://[::1]:8080"),
        ("[2001:DB8:0:0::1]", PathRule::Refused, "[2001:db8::1]"),
        (
            "xn--bcher-kva.example",
            PathRule::Refused,
            "xn--bcher-kva.example",
        ),
        (
            "git-lab2.example.org:65535",
            PathRule::Refused,
            "git-lab2.example.org:65535",
        ),
        ("dev.azure.com", PathRule::Allowed, "dev.azure.com"),
        (
            "https://TFS.example.com/tfs/DefaultCollection/",
            PathRule::Allowed,
            "tfs.example.com/tfs/defaultcollection",
        ),
        (
            "http://tfs.local:8080/tfs",
            PathRule::Allowed,
            "http://tfs.local:8080/tfs",
        ),
        (
            "tfs.example.com/my.collection_1~x",
            PathRule::Allowed,
            "tfs.example.com/my.collection_1~x",
        ),
    ];

    #[test]
    fn accepted_spellings_and_their_canonical_form() {
        for (input, paths, canonical) in ACCEPTED {
            let host = ScmHost::parse(input, *paths)
                .unwrap_or_else(|e| panic!("{input:?} was refused: {e}"));
            assert_eq!(host.canonical(), *canonical, "canonical form of {input:?}");
            // Canonical forms are fixed points, and lookups agree with them.
            assert_eq!(ScmHost::parse(canonical, *paths).unwrap(), host);
            assert_eq!(lookup_key(canonical), host.key(), "lookup key of {input:?}");
        }
    }

    #[test]
    fn refused_spellings_say_why() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        let too_long = format!("{}.com", "a.".repeat(300));
        let refused: &[(&str, PathRule, HostError)] = &[
            ("", PathRule::Refused, HostError::Empty),
            ("\x00", PathRule::Refused, HostError::ControlCharacter),
            (
                "github.com\x00",
                PathRule::Refused,
                HostError::ControlCharacter,
            ),
            (
                "github.com\n",
                PathRule::Refused,
                HostError::ControlCharacter,
            ),
            (" github.com", PathRule::Refused, HostError::Whitespace),
            ("git hub.com", PathRule::Refused, HostError::Whitespace),
            ("github.com/../../x", PathRule::Refused, HostError::Path),
            (
                "github.com/../../x",
                PathRule::Allowed,
                HostError::PathSegment("'.' and '..' segments are not allowed"),
            ),
            (
                "tfs.example.com/tfs/./x",
                PathRule::Allowed,
                HostError::PathSegment("'.' and '..' segments are not allowed"),
            ),
            (
                "tfs.example.com//tfs",
                PathRule::Allowed,
                HostError::PathSegment("it has an empty segment"),
            ),
            (
                "tfs.example.com/%2e%2e",
                PathRule::Allowed,
                HostError::PathSegment("segments may hold letters, digits, '-', '.', '_' and '~'"),
            ),
            (
                "gitlab.example.com/gitlab",
                PathRule::Refused,
                HostError::Path,
            ),
            (
                "https://user:pw@host/x",
                PathRule::Refused,
                HostError::UserInfo,
            ),
            (
                "https://user:pw@host/x",
                PathRule::Allowed,
                HostError::UserInfo,
            ),
            (
                "git@github.com:o/r.git",
                PathRule::Refused,
                HostError::UserInfo,
            ),
            ("ftp://github.com", PathRule::Refused, HostError::Scheme),
            ("ssh://git@github.com", PathRule::Refused, HostError::Scheme),
            (
                "github.com?tab=1",
                PathRule::Refused,
                HostError::QueryOrFragment,
            ),
            (
                "github.com#x",
                PathRule::Refused,
                HostError::QueryOrFragment,
            ),
            (
                "github.com\\..\\x",
                PathRule::Refused,
                HostError::QueryOrFragment,
            ),
            ("host:0", PathRule::Refused, HostError::Port),
            ("host:70000", PathRule::Refused, HostError::Port),
            ("host:", PathRule::Refused, HostError::Port),
            ("host:+80", PathRule::Refused, HostError::Port),
            ("host:080808", PathRule::Refused, HostError::Port),
            ("https://", PathRule::Refused, HostError::NoName),
            (":8080", PathRule::Refused, HostError::NoName),
            ("::1", PathRule::Refused, HostError::Ipv6),
            ("[::1", PathRule::Refused, HostError::Ipv6),
            ("[::g]", PathRule::Refused, HostError::Ipv6),
            ("[::1]8080", PathRule::Refused, HostError::Ipv6),
            ("[::1]:0", PathRule::Refused, HostError::Port),
            ("999.1.1.1", PathRule::Refused, HostError::Ipv4),
            ("1.2.3", PathRule::Refused, HostError::Ipv4),
            ("01.2.3.4", PathRule::Refused, HostError::Ipv4),
            ("example.123", PathRule::Refused, HostError::Ipv4),
            ("0x7f.0x1", PathRule::Refused, HostError::Ipv4),
            (
                "-github.com",
                PathRule::Refused,
                HostError::Name("a label must not start or end with '-'"),
            ),
            (
                "my_host.example",
                PathRule::Refused,
                HostError::Name("labels may hold letters, digits and '-' only"),
            ),
            (
                "github.com.",
                PathRule::Refused,
                HostError::Name("it has an empty label (a leading, trailing or doubled dot)"),
            ),
            (
                "a..b",
                PathRule::Refused,
                HostError::Name("it has an empty label (a leading, trailing or doubled dot)"),
            ),
            (
                "bücher.example",
                PathRule::Refused,
                HostError::Name("write international names in their xn-- (punycode) form"),
            ),
            (&long_label, PathRule::Refused, HostError::LabelTooLong),
            (&long_name, PathRule::Refused, HostError::NameTooLong),
            (&too_long, PathRule::Refused, HostError::TooLong),
        ];
        for (input, paths, expected) in refused {
            assert_eq!(
                ScmHost::parse(input, *paths).as_ref(),
                Err(expected),
                "{input:?} ({paths:?})"
            );
        }
    }

    #[test]
    fn messages_never_repeat_the_input() {
        let err = ScmHost::parse("https://alice:s3cret@host/x", PathRule::Allowed).unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("alice"),
            "{text}"
        );
    }

    #[test]
    fn paths_follow_the_scm() {
        assert_eq!(PathRule::for_scm("azure-devops"), PathRule::Allowed);
        for scm in [
            "github",
            "gitlab",
            "bitbucket",
            "bitbucket-server",
            "gitea",
            "",
        ] {
            assert_eq!(PathRule::for_scm(scm), PathRule::Refused, "{scm}");
        }
    }

    #[test]
    fn virtual_directories() {
        for ok in ["", "/", "/tfs", "tfs/", "/tfs/DefaultCollection", "/scm"] {
            assert_eq!(check_virtual_directory(ok), Ok(()), "{ok:?}");
        }
        for bad in ["/..", "/tfs/../x", "//tfs", "/a b", "/a?b", "/x\x00"] {
            assert!(check_virtual_directory(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lookup_keys_of_any_stored_spelling() {
        assert_eq!(lookup_key("HTTP://127.0.0.1:3000/"), "127.0.0.1:3000");
        assert_eq!(
            lookup_key("https://tfs.example.com/tfs/Coll"),
            "tfs.example.com"
        );
        assert_eq!(lookup_key("www.github.com"), "github.com");
        assert_eq!(lookup_key(" github.com "), "github.com");
    }

    #[test]
    fn issuer_urls_are_absolute_http_urls() {
        for ok in [
            "https://login.example.com",
            "https://login.example.com/tenant-1/v2.0",
            "http://127.0.0.1:8080/oauth",
            "HTTPS://Auth.Example.com/",
        ] {
            assert!(check_issuer_url(ok).is_ok(), "{ok:?}");
        }
        for (bad, why) in [
            ("login.example.com", HostError::NotAbsolute),
            ("ftp://login.example.com", HostError::NotAbsolute),
            ("/oauth", HostError::NotAbsolute),
            ("", HostError::NotAbsolute),
            ("https://", HostError::NoName),
            ("https://user:pw@login.example.com", HostError::UserInfo),
            (
                "https://login.example.com/a?b=c",
                HostError::QueryOrFragment,
            ),
            ("https://login example.com", HostError::Whitespace),
        ] {
            assert_eq!(check_issuer_url(bad), Err(why), "{bad:?}");
        }
    }
}
