//! What the provider tests share: expected contexts built from a fake's
//! address, and a small builder to state what a context URL should resolve to.

use corral_scm::{ChangeRequest, Context, GitContext, Issue};

/// Expected contexts for repositories on a fake SCM at `base`.
pub struct Expect {
    pub base: String,
    pub host: String,
    pub scm_id: &'static str,
}

impl Expect {
    pub fn new(base: &str, port: u16, scm_id: &'static str) -> Self {
        Self {
            base: base.to_string(),
            host: format!("127.0.0.1:{port}"),
            scm_id,
        }
    }

    /// The context of the repository at `full_path`; the owner is everything
    /// before the last `/` (so GitLab subgroups stay with the owner).
    pub fn repo(&self, full_path: &str) -> Context {
        let (owner, repo) = full_path.rsplit_once('/').unwrap();
        Context {
            git: GitContext {
                host: self.host.clone(),
                owner: owner.into(),
                repo: repo.into(),
                clone_url: format!("{}/{full_path}.git", self.base),
                ..GitContext::default()
            },
            change: None,
            issue: None,
            scm_id: self.scm_id.into(),
        }
    }
}

/// Refines an expected context.
pub trait With {
    fn branch(self, name: &str) -> Self;
    fn tag(self, name: &str) -> Self;
    fn commit(self, sha: &str) -> Self;
    fn upstream(self, url: &str) -> Self;
    fn change(self, change: ChangeRequest) -> Self;
    fn issue(self, id: &str, title: &str) -> Self;
}

impl With for Context {
    fn branch(mut self, name: &str) -> Self {
        self.git.branch = name.into();
        self
    }
    fn tag(mut self, name: &str) -> Self {
        self.git.tag = name.into();
        self
    }
    fn commit(mut self, sha: &str) -> Self {
        self.git.commit = sha.into();
        self
    }
    fn upstream(mut self, url: &str) -> Self {
        self.git.upstream_remote_url = url.into();
        self
    }
    fn change(mut self, change: ChangeRequest) -> Self {
        self.change = Some(change);
        self
    }
    fn issue(mut self, id: &str, title: &str) -> Self {
        self.issue = Some(Issue {
            id: id.into(),
            title: title.into(),
        });
        self
    }
}
