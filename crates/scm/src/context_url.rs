//! What people paste, normalised: web URLs, clone URLs over https and ssh, and
//! scp-like `git@host:owner/repo.git`. Providers interpret the path.

use url::Url;

use crate::ScmError;

/// A pasted context URL, split into the parts providers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextUrl {
    /// Exactly what was pasted.
    pub original: String,
    /// `http` or `https` for web URLs; `ssh` for ssh and scp-like clone URLs.
    pub scheme: String,
    /// Lower-case host with `:port` when one was given for http(s); `www.` removed.
    pub host: String,
    /// Non-empty path segments, percent-decoded; `.git` removed from the last one
    /// of a clone URL.
    pub segments: Vec<String>,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    pub fragment: Option<String>,
    /// True for ssh and scp-like URLs and paths ending in `.git`.
    pub is_clone_url: bool,
}

impl ContextUrl {
    pub fn parse(input: &str) -> Result<Self, ScmError> {
        let original = input.to_string();
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ScmError::InvalidInput("the context URL is empty".into()));
        }
        let as_url = if let Some(rest) = scp_like(trimmed) {
            rest
        } else {
            trimmed.to_string()
        };
        let url = Url::parse(&as_url)
            .map_err(|_| ScmError::InvalidInput(format!("{trimmed:?} is not a URL")))?;
        let scheme = match url.scheme() {
            "http" | "https" => url.scheme().to_string(),
            "ssh" | "git+ssh" => "ssh".to_string(),
            other => {
                return Err(ScmError::InvalidInput(format!(
                    "unsupported URL scheme {other:?}; use https or ssh"
                )));
            }
        };
        let name = url
            .host_str()
            .ok_or_else(|| ScmError::InvalidInput(format!("{trimmed:?} has no host")))?
            .to_ascii_lowercase();
        let name = name.strip_prefix("www.").unwrap_or(&name).to_string();
        // An ssh port is not part of the web host; an http(s) port is.
        let host = match (url.port(), scheme.as_str()) {
            (Some(port), "http" | "https") => format!("{name}:{port}"),
            _ => name,
        };
        let mut segments: Vec<String> = url
            .path_segments()
            .map(|s| {
                s.filter(|seg| !seg.is_empty())
                    .map(percent_decode)
                    .collect()
            })
            .unwrap_or_default();
        let mut is_clone_url = scheme == "ssh";
        if let Some(last) = segments.last_mut()
            && let Some(stripped) = last.strip_suffix(".git")
        {
            *last = stripped.to_string();
            is_clone_url = true;
        }
        let query = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Self {
            original,
            scheme,
            host,
            segments,
            query,
            fragment: url.fragment().map(str::to_string),
            is_clone_url,
        })
    }

    /// The value of query parameter `name`, if present.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `git@host:owner/repo.git` as `ssh://git@host/owner/repo.git`.
fn scp_like(input: &str) -> Option<String> {
    if input.contains("://") {
        return None;
    }
    let (user_host, path) = input.split_once(':')?;
    if user_host.is_empty() || path.starts_with('/') && path.starts_with("//") {
        return None;
    }
    if !user_host.contains('@') && !user_host.contains('.') {
        return None;
    }
    Some(format!(
        "ssh://{user_host}/{}",
        path.trim_start_matches('/')
    ))
}

fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| segment.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(input: &str) -> (String, String, Vec<String>, bool) {
        let u = ContextUrl::parse(input).unwrap();
        (u.scheme, u.host, u.segments, u.is_clone_url)
    }

    #[test]
    fn web_clone_and_scp_urls_normalise_alike() {
        let want = vec!["owner".to_string(), "repo".to_string()];
        assert_eq!(
            parts("https://github.com/owner/repo"),
            ("https".into(), "github.com".into(), want.clone(), false)
        );
        assert_eq!(
            parts("https://www.github.com/owner/repo/"),
            ("https".into(), "github.com".into(), want.clone(), false)
        );
        assert_eq!(
            parts("https://github.com/owner/repo.git"),
            ("https".into(), "github.com".into(), want.clone(), true)
        );
        assert_eq!(
            parts("git@github.com:owner/repo.git"),
            ("ssh".into(), "github.com".into(), want.clone(), true)
        );
        assert_eq!(
            parts("ssh://git@github.com:22/owner/repo.git"),
            ("ssh".into(), "github.com".into(), want.clone(), true)
        );
        assert_eq!(
            parts("http://127.0.0.1:3000/owner/repo"),
            ("http".into(), "127.0.0.1:3000".into(), want, false)
        );
    }

    #[test]
    fn not_urls_are_invalid_input() {
        for bad in [
            "",
            "   ",
            "not a url",
            "ftp://example.com/a/b",
            "owner/repo",
        ] {
            assert!(
                matches!(ContextUrl::parse(bad), Err(ScmError::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn query_and_fragment_are_kept_and_segments_decoded() {
        let u =
            ContextUrl::parse("https://dev.azure.com/org/My%20Project/_git/repo?version=GBmain#L3")
                .unwrap();
        assert_eq!(u.segments, ["org", "My Project", "_git", "repo"]);
        assert_eq!(u.query_value("version"), Some("GBmain"));
        assert_eq!(u.fragment.as_deref(), Some("L3"));
    }
}
