//! The configuration schema `corral runner` uploads on a Linux host: which
//! settings an environment class has and which SCMs the runner can talk to.
//!
//! The management plane answers with the same schema for runners that have
//! not uploaded one yet, so it lives here rather than in either of them.

use buffa::MessageField;
use corral_api::gitpod::v1::RunnerConfigurationSchema;
use corral_api::gitpod::v1::runner_configuration_schema::field::Type;
use corral_api::gitpod::v1::runner_configuration_schema::{
    BoolField, EnumField, Field, IntField, OAuth, PersonalAccessToken, SCMConfigSchema,
    StringField, enum_field,
};

/// Version string of the schema below; bump it when the schema changes.
pub const SCHEMA_VERSION: &str = "corral-linux-host/1";

/// Path (on the management plane) OAuth providers redirect back to.
const OAUTH_CALLBACK: &str = "/auth/oauth2/callback";

/// The schema of `corral runner` on a Linux host.
pub fn linux_host_schema() -> RunnerConfigurationSchema {
    RunnerConfigurationSchema {
        version: SCHEMA_VERSION.into(),
        runner_config: Vec::new(),
        environment_classes: environment_class_fields(),
        scm: scms(),
        ..Default::default()
    }
}

fn environment_class_fields() -> Vec<Field> {
    // (id, name, description, default, min, max). None is required: a class
    // that leaves a setting out gets its default.
    let sizes: [(&str, &str, &str, i32, i32, i32); 3] = [
        ("cpu", "CPUs", "Number of CPU cores", 2, 1, 64),
        ("memory", "Memory (GiB)", "Memory in GiB", 4, 1, 512),
        ("disk", "Disk (GiB)", "Disk size in GiB", 30, 10, 2000),
    ];
    let mut fields: Vec<Field> = sizes
        .into_iter()
        .map(|(id, name, description, default, min, max)| {
            let int = IntField {
                default,
                min,
                max,
                ..Default::default()
            };
            field(id, name, description, false, Type::Int(Box::new(int)))
        })
        .collect();

    let arch_value = |title: &str| enum_field::Value {
        title: title.into(),
        ..Default::default()
    };
    let architecture = EnumField {
        default_value: MessageField::some(arch_value("x86_64")),
        possible_values: vec![arch_value("x86_64"), arch_value("arm64")],
        ..Default::default()
    };
    fields.push(field(
        "architecture",
        "CPU architecture",
        "Instruction set of the environment's machine",
        false,
        Type::Enum(Box::new(architecture)),
    ));

    let host_label = StringField {
        default: String::new(),
        // An RFC 1123 DNS label.
        pattern: "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$".into(),
        ..Default::default()
    };
    fields.push(field(
        "host_label",
        "Host label",
        "Lowercase label of the hosts that may run this class",
        false,
        Type::String(Box::new(host_label)),
    ));

    let privileged = BoolField {
        default: false,
        ..Default::default()
    };
    fields.push(field(
        "privileged",
        "Privileged",
        "Whether environments may run privileged containers",
        false,
        Type::Bool(Box::new(privileged)),
    ));
    fields
}

fn field(id: &str, name: &str, description: &str, required: bool, r#type: Type) -> Field {
    Field {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        required,
        r#type: Some(r#type),
        ..Default::default()
    }
}

/// One SCM the runner supports.
struct Scm {
    id: &'static str,
    name: &'static str,
    default_hosts: &'static [&'static str],
    pat_docs: &'static str,
    pat_description: &'static str,
}

const SCMS: &[Scm] = &[
    Scm {
        id: "github",
        name: "GitHub",
        default_hosts: &["github.com"],
        pat_docs: "https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens",
        pat_description: "A classic or fine-grained token with the repo scope",
    },
    Scm {
        id: "gitlab",
        name: "GitLab",
        default_hosts: &["gitlab.com"],
        pat_docs: "https://docs.gitlab.com/user/profile/personal_access_tokens/",
        pat_description: "A token with the api and read_repository scopes",
    },
    Scm {
        id: "bitbucket",
        name: "Bitbucket",
        default_hosts: &["bitbucket.org"],
        pat_docs: "https://support.atlassian.com/bitbucket-cloud/docs/api-tokens/",
        pat_description: "An API token with repository read access",
    },
    Scm {
        id: "bitbucket-server",
        name: "Bitbucket Data Center",
        default_hosts: &[],
        pat_docs: "https://confluence.atlassian.com/bitbucketserver/http-access-tokens-939515499.html",
        pat_description: "An HTTP access token with repository read access",
    },
    Scm {
        id: "azure-devops",
        name: "Azure DevOps",
        default_hosts: &["dev.azure.com"],
        pat_docs: "https://learn.microsoft.com/en-us/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate",
        pat_description: "A token with the Code (Read) scope",
    },
    Scm {
        id: "gitea",
        name: "Gitea / Forgejo",
        default_hosts: &["gitea.com", "codeberg.org"],
        pat_docs: "https://docs.gitea.com/development/api-usage",
        pat_description: "A token with read:repository scope",
    },
];

fn scms() -> Vec<SCMConfigSchema> {
    SCMS.iter()
        .map(|scm| SCMConfigSchema {
            scm_id: scm.id.into(),
            name: scm.name.into(),
            default_hosts: scm.default_hosts.iter().map(|h| h.to_string()).collect(),
            oauth: MessageField::some(OAuth {
                callback_url: OAUTH_CALLBACK.into(),
                ..Default::default()
            }),
            pat: MessageField::some(PersonalAccessToken {
                description: scm.pat_description.into(),
                docs_link: scm.pat_docs.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_the_linux_host_settings_and_scms() {
        let schema = linux_host_schema();
        assert_eq!(schema.version, SCHEMA_VERSION);
        let ids: Vec<&str> = schema
            .environment_classes
            .iter()
            .map(|f| f.id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "cpu",
                "memory",
                "disk",
                "architecture",
                "host_label",
                "privileged"
            ]
        );
        let required: Vec<&str> = schema
            .environment_classes
            .iter()
            .filter(|f| f.required)
            .map(|f| f.id.as_str())
            .collect();
        assert!(required.is_empty(), "{required:?}");
        match schema.environment_classes[2].r#type.as_ref() {
            Some(Type::Int(disk)) => assert_eq!((disk.min, disk.max), (10, 2000)),
            other => panic!("disk is not an int field: {other:?}"),
        }
        let scms: Vec<&str> = schema.scm.iter().map(|s| s.scm_id.as_str()).collect();
        assert_eq!(
            scms,
            [
                "github",
                "gitlab",
                "bitbucket",
                "bitbucket-server",
                "azure-devops",
                "gitea"
            ]
        );
    }
}
