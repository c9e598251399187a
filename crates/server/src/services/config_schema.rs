//! The configuration schema of a runner and the checks it implies.
//!
//! Until a runner uploads its own schema, the server answers with the schema of
//! `corral runner` (a Linux host runner), which `corral-contract` holds for
//! both. Environment classes and SCM integrations are checked against
//! whichever schema applies.

use std::collections::{BTreeMap, HashSet};

use corral_api::gitpod::v1 as api;
use corral_api::gitpod::v1::runner_configuration_schema::{self as schema, field::Type};
pub use corral_contract::schema::linux_host_schema;

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
