//! The configuration schema of a runner and the checks it implies.
//!
//! Until a runner uploads its own schema, the server answers with the schema of
//! `corral runner` (a Linux host runner). Environment classes and SCM
//! integrations are checked against whichever schema applies.

use std::collections::{BTreeMap, HashSet};

use buffa::MessageField;
use corral_api::gitpod::v1 as api;
use corral_api::gitpod::v1::runner_configuration_schema::{self as schema, field::Type};

fn int_field(
    id: &str,
    name: &str,
    description: &str,
    default: i32,
    min: i32,
    max: i32,
) -> schema::Field {
    schema::Field {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        // Optional: a class that leaves it out gets the default.
        required: false,
        r#type: Some(Type::Int(Box::new(schema::IntField {
            default,
            min,
            max,
            ..Default::default()
        }))),
        ..Default::default()
    }
}

fn enum_value(title: &str) -> schema::enum_field::Value {
    schema::enum_field::Value {
        title: title.into(),
        ..Default::default()
    }
}

fn scm(
    id: &str,
    name: &str,
    hosts: &[&str],
    pat_docs: &str,
    pat_description: &str,
) -> schema::SCMConfigSchema {
    schema::SCMConfigSchema {
        scm_id: id.into(),
        name: name.into(),
        default_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        oauth: MessageField::some(schema::OAuth {
            callback_url: "/auth/oauth2/callback".into(),
            ..Default::default()
        }),
        pat: MessageField::some(schema::PersonalAccessToken {
            description: pat_description.into(),
            docs_link: pat_docs.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The schema of `corral runner` on a Linux host.
pub fn linux_host_schema() -> api::RunnerConfigurationSchema {
    let architecture = schema::Field {
        id: "architecture".into(),
        name: "CPU architecture".into(),
        description: "Instruction set of the environment's machine".into(),
        required: false,
        r#type: Some(Type::Enum(Box::new(schema::EnumField {
            default_value: MessageField::some(enum_value("x86_64")),
            possible_values: vec![enum_value("x86_64"), enum_value("arm64")],
            ..Default::default()
        }))),
        ..Default::default()
    };
    let label = schema::Field {
        id: "host_label".into(),
        name: "Host label".into(),
        description: "Lowercase label of the hosts that may run this class".into(),
        required: false,
        r#type: Some(Type::String(Box::new(schema::StringField {
            default: String::new(),
            pattern: "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$".into(),
            ..Default::default()
        }))),
        ..Default::default()
    };
    let privileged = schema::Field {
        id: "privileged".into(),
        name: "Privileged".into(),
        description: "Whether environments may run privileged containers".into(),
        required: false,
        r#type: Some(Type::Bool(Box::new(schema::BoolField {
            default: false,
            ..Default::default()
        }))),
        ..Default::default()
    };
    api::RunnerConfigurationSchema {
        version: "corral-linux-host/1".into(),
        runner_config: Vec::new(),
        environment_classes: vec![
            int_field("cpu", "CPUs", "Number of CPU cores", 2, 1, 64),
            int_field("memory", "Memory (GiB)", "Memory in GiB", 4, 1, 512),
            int_field("disk", "Disk (GiB)", "Disk size in GiB", 30, 10, 2000),
            architecture,
            label,
            privileged,
        ],
        scm: vec![
            scm(
                "github",
                "GitHub",
                &["github.com"],
                "https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens",
                "A classic or fine-grained token with the repo scope",
            ),
            scm(
                "gitlab",
                "GitLab",
                &["gitlab.com"],
                "https://docs.gitlab.com/user/profile/personal_access_tokens/",
                "A token with the api and read_repository scopes",
            ),
            scm(
                "bitbucket",
                "Bitbucket",
                &["bitbucket.org"],
                "https://support.atlassian.com/bitbucket-cloud/docs/api-tokens/",
                "An API token with repository read access",
            ),
            scm(
                "bitbucket-server",
                "Bitbucket Data Center",
                &[],
                "https://confluence.atlassian.com/bitbucketserver/http-access-tokens-939515499.html",
                "An HTTP access token with repository read access",
            ),
            scm(
                "azure-devops",
                "Azure DevOps",
                &["dev.azure.com"],
                "https://learn.microsoft.com/en-us/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate",
                "A token with the Code (Read) scope",
            ),
            scm(
                "gitea",
                "Gitea / Forgejo",
                &["gitea.com", "codeberg.org"],
                "https://docs.gitea.com/development/api-usage",
                "A token with read:repository scope",
            ),
        ],
        ..Default::default()
    }
}

/// Problems with an environment class configuration, per key ("" for none).
pub fn check_environment_class(
    schema: &api::RunnerConfigurationSchema,
    configuration: &[(String, String)],
) -> Vec<(String, String)> {
    let fields: BTreeMap<&str, &schema::Field> = schema
        .environment_classes
        .iter()
        .map(|f| (f.id.as_str(), f))
        .collect();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (key, value) in configuration {
        if !seen.insert(key.as_str()) {
            errors.push((key.clone(), "is given more than once".to_string()));
            continue;
        }
        match fields.get(key.as_str()) {
            None => errors.push((
                key.clone(),
                "is not a setting this runner knows".to_string(),
            )),
            Some(field) => {
                if let Some(problem) = check_value(field, value) {
                    errors.push((key.clone(), problem));
                }
            }
        }
    }
    for field in fields.values() {
        if field.required && !seen.contains(field.id.as_str()) {
            errors.push((field.id.clone(), "is required".to_string()));
        }
    }
    errors
}

fn check_value(field: &schema::Field, value: &str) -> Option<String> {
    match field.r#type.as_ref()? {
        Type::Int(int) => match value.trim().parse::<i64>() {
            Err(_) => Some(format!("must be a whole number, not {value:?}")),
            Ok(n) if n < int.min as i64 || n > int.max as i64 => {
                Some(format!("must be between {} and {}", int.min, int.max))
            }
            Ok(_) => None,
        },
        Type::Bool(_) => match value {
            "true" | "false" => None,
            _ => Some(format!("must be true or false, not {value:?}")),
        },
        Type::String(s) => {
            if s.pattern.is_empty() {
                return None;
            }
            match regex::Regex::new(&s.pattern) {
                Ok(re) if re.is_match(value) => None,
                Ok(_) => Some(format!("must match {}", s.pattern)),
                Err(_) => {
                    Some("the runner's schema has an invalid pattern for this setting".into())
                }
            }
        }
        Type::Enum(e) => {
            let allowed: Vec<&str> = e
                .possible_values
                .iter()
                .map(|v| v.title.as_str())
                .chain(e.values.iter().map(String::as_str))
                .collect();
            (!allowed.contains(&value)).then(|| format!("must be one of {}", allowed.join(", ")))
        }
        Type::Display(_) => Some("is for display only and cannot be set".into()),
    }
}

/// The SCM entry of the schema with `scm_id`.
pub fn scm_entry<'a>(
    schema: &'a api::RunnerConfigurationSchema,
    scm_id: &str,
) -> Option<&'a schema::SCMConfigSchema> {
    schema.scm.iter().find(|s| s.scm_id == scm_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn valid_configuration_passes() {
        let schema = linux_host_schema();
        let config = pairs(&[
            ("cpu", "4"),
            ("memory", "8"),
            ("disk", "50"),
            ("architecture", "arm64"),
            ("host_label", "gpu-1"),
            ("privileged", "true"),
        ]);
        assert_eq!(check_environment_class(&schema, &config), vec![]);
    }

    #[test]
    fn each_kind_of_problem_is_reported_per_key() {
        let mut schema = linux_host_schema();
        schema.environment_classes[2].required = true; // disk
        let config = pairs(&[
            ("cpu", "many"),
            ("memory", "1024"),
            ("colour", "red"),
            ("host_label", "Not OK"),
            ("privileged", "yes"),
            ("architecture", "sparc"),
        ]);
        let errors = check_environment_class(&schema, &config);
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cpu",
                "memory",
                "colour",
                "host_label",
                "privileged",
                "architecture",
                "disk"
            ]
        );
        assert!(errors[0].1.contains("whole number"));
        assert!(errors[1].1.contains("between 1 and 512"));
        assert!(errors[6].1.contains("required"));
    }
}
