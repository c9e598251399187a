//! Which provider serves a host, and where its API lives.

use url::Url;

use crate::ScmError;

/// The SCM products corral speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScmKind {
    GitHub,
    GitLab,
    BitbucketCloud,
    BitbucketServer,
    AzureDevOps,
    Gitea,
}

impl ScmKind {
    /// The id used in the runner's configuration schema and in `scm_id`.
    pub fn id(self) -> &'static str {
        match self {
            ScmKind::GitHub => "github",
            ScmKind::GitLab => "gitlab",
            ScmKind::BitbucketCloud => "bitbucket",
            ScmKind::BitbucketServer => "bitbucket-server",
            ScmKind::AzureDevOps => "azure-devops",
            ScmKind::Gitea => "gitea",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        [
            ScmKind::GitHub,
            ScmKind::GitLab,
            ScmKind::BitbucketCloud,
            ScmKind::BitbucketServer,
            ScmKind::AzureDevOps,
            ScmKind::Gitea,
        ]
        .into_iter()
        .find(|k| k.id() == id)
    }

    pub fn display_name(self) -> &'static str {
        match self {
            ScmKind::GitHub => "GitHub",
            ScmKind::GitLab => "GitLab",
            ScmKind::BitbucketCloud => "Bitbucket",
            ScmKind::BitbucketServer => "Bitbucket Data Center",
            ScmKind::AzureDevOps => "Azure DevOps",
            ScmKind::Gitea => "Gitea",
        }
    }
}

/// A host served by one SCM product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmHost {
    pub kind: ScmKind,
    /// Host name, with `:port` when not the scheme's default; lower case.
    pub host: String,
    /// `https`, or `http` for lab and test setups that say so.
    pub scheme: String,
    /// The path the SCM is installed under (no slashes at the ends): Azure
    /// DevOps Server's virtual directory such as `tfs`, with collections
    /// below it.
    pub virtual_directory: Option<String>,
}

impl ScmHost {
    /// `scheme://host[/virtual_directory]`, without a trailing slash.
    pub fn web_base(&self) -> String {
        match &self.virtual_directory {
            Some(dir) => format!("{}://{}/{}", self.scheme, self.host, dir),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// The root of the REST API, as each product documents it.
    pub fn api_base(&self) -> String {
        let web = self.web_base();
        match (self.kind, self.host.as_str()) {
            (ScmKind::GitHub, "github.com") => "https://api.github.com".into(),
            (ScmKind::GitHub, _) => format!("{web}/api/v3"),
            (ScmKind::GitLab, _) => format!("{web}/api/v4"),
            (ScmKind::BitbucketCloud, "bitbucket.org") => "https://api.bitbucket.org/2.0".into(),
            (ScmKind::BitbucketCloud, _) => format!("{web}/2.0"),
            (ScmKind::BitbucketServer, _) => format!("{web}/rest/api/1.0"),
            (ScmKind::AzureDevOps, _) => web,
            (ScmKind::Gitea, _) => format!("{web}/api/v1"),
        }
    }
}

impl ScmHost {
    /// `{api_base}/{path…}?{query}`, each path segment percent-encoded (so a
    /// GitLab project path's slashes become `%2F`, as GitLab wants).
    pub fn api_url(&self, path: &[&str], query: &[(&str, String)]) -> Result<String, ScmError> {
        let base = self.api_base();
        let mut url = Url::parse(&base)
            .map_err(|e| ScmError::InvalidInput(format!("invalid API root {base:?}: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| ScmError::InvalidInput(format!("invalid API root {base:?}")))?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url.into())
    }
}

/// One configured host: from an SCM integration on the runner.
#[derive(Debug, Clone)]
pub struct ConfiguredHost {
    pub kind: ScmKind,
    /// As configured: `host`, `host:port`, or with an explicit `http://` / `https://`.
    pub host: String,
    pub virtual_directory: Option<String>,
}

/// Resolves hosts to providers: the runner's integrations first, then the
/// well-known public hosts.
#[derive(Debug, Clone, Default)]
pub struct HostRegistry {
    configured: Vec<ScmHost>,
}

const WELL_KNOWN: &[(&str, ScmKind)] = &[
    ("github.com", ScmKind::GitHub),
    ("gitlab.com", ScmKind::GitLab),
    ("bitbucket.org", ScmKind::BitbucketCloud),
    ("dev.azure.com", ScmKind::AzureDevOps),
    ("gitea.com", ScmKind::Gitea),
    ("codeberg.org", ScmKind::Gitea),
];

impl HostRegistry {
    pub fn new(configured: impl IntoIterator<Item = ConfiguredHost>) -> Result<Self, ScmError> {
        let configured = configured
            .into_iter()
            .map(|c| parse_configured(&c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { configured })
    }

    /// The SCM serving `host` (`host[:port]`, any case), if any.
    pub fn resolve(&self, host: &str) -> Option<ScmHost> {
        let host = host.trim().trim_end_matches('/').to_ascii_lowercase();
        let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
        if let Some(found) = self.configured.iter().find(|h| h.host == host) {
            return Some(found.clone());
        }
        if host.ends_with(".visualstudio.com") {
            return Some(ScmHost {
                kind: ScmKind::AzureDevOps,
                host,
                scheme: "https".into(),
                virtual_directory: None,
            });
        }
        WELL_KNOWN
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(h, kind)| ScmHost {
                kind: *kind,
                host: h.to_string(),
                scheme: "https".into(),
                virtual_directory: None,
            })
    }

    /// Every host this registry knows, configured first.
    pub fn hosts(&self) -> Vec<ScmHost> {
        let mut all = self.configured.clone();
        for (h, kind) in WELL_KNOWN {
            if !all.iter().any(|c| c.host == *h) {
                all.push(ScmHost {
                    kind: *kind,
                    host: h.to_string(),
                    scheme: "https".into(),
                    virtual_directory: None,
                });
            }
        }
        all
    }
}

fn parse_configured(c: &ConfiguredHost) -> Result<ScmHost, ScmError> {
    let raw = c.host.trim().trim_end_matches('/');
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| ScmError::InvalidInput(format!("invalid SCM host {raw:?}: {e}")))?;
    let name = url
        .host_str()
        .ok_or_else(|| ScmError::InvalidInput(format!("invalid SCM host {raw:?}")))?;
    let host = match url.port() {
        Some(port) => format!("{name}:{port}"),
        None => name.to_string(),
    }
    .to_ascii_lowercase();
    let path_dir = url.path().trim_matches('/');
    let virtual_directory = c
        .virtual_directory
        .as_deref()
        .map(|d| d.trim_matches('/').to_string())
        .or_else(|| (!path_dir.is_empty()).then(|| path_dir.to_string()))
        .filter(|d| !d.is_empty());
    Ok(ScmHost {
        kind: c.kind,
        host,
        scheme: url.scheme().to_string(),
        virtual_directory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(kind: ScmKind, host: &str, dir: Option<&str>) -> ConfiguredHost {
        ConfiguredHost {
            kind,
            host: host.into(),
            virtual_directory: dir.map(str::to_string),
        }
    }

    #[test]
    fn well_known_and_configured_hosts_resolve() {
        let registry = HostRegistry::new([
            configured(ScmKind::GitHub, "GHE.example.com", None),
            configured(ScmKind::Gitea, "http://127.0.0.1:3000", None),
            configured(
                ScmKind::AzureDevOps,
                "tfs.example.com",
                Some("/tfs/DefaultCollection/"),
            ),
        ])
        .unwrap();
        let ghe = registry.resolve("ghe.example.com").unwrap();
        assert_eq!(
            (ghe.kind, ghe.api_base()),
            (
                ScmKind::GitHub,
                "https://ghe.example.com/api/v3".to_string()
            )
        );
        let gitea = registry.resolve("127.0.0.1:3000").unwrap();
        assert_eq!(gitea.api_base(), "http://127.0.0.1:3000/api/v1");
        let tfs = registry.resolve("tfs.example.com").unwrap();
        assert_eq!(
            tfs.web_base(),
            "https://tfs.example.com/tfs/DefaultCollection"
        );
        assert_eq!(
            registry.resolve("www.github.com").unwrap().api_base(),
            "https://api.github.com"
        );
        assert_eq!(
            registry.resolve("gitlab.com").unwrap().api_base(),
            "https://gitlab.com/api/v4"
        );
        assert_eq!(
            registry.resolve("bitbucket.org").unwrap().api_base(),
            "https://api.bitbucket.org/2.0"
        );
        assert_eq!(
            registry.resolve("contoso.visualstudio.com").unwrap().kind,
            ScmKind::AzureDevOps
        );
        assert!(registry.resolve("unknown.example.com").is_none());
    }

    #[test]
    fn kinds_round_trip_through_their_ids() {
        for kind in [
            ScmKind::GitHub,
            ScmKind::GitLab,
            ScmKind::BitbucketCloud,
            ScmKind::BitbucketServer,
            ScmKind::AzureDevOps,
            ScmKind::Gitea,
        ] {
            assert_eq!(ScmKind::from_id(kind.id()), Some(kind));
        }
    }
}
