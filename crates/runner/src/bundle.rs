//! The support bundle: a tar.gz an admin downloads to see what a runner is
//! doing. It holds `versions.txt`, `configuration.json` (the runner id and its
//! latest spec, with every secret removed) and `logs.txt` (the captured lines).
//! Tokens and keys never enter it: the runner's credentials are not part of
//! [`BundleContents`] at all, and the spec's secrets are stripped by
//! [`redacted_spec`].

use std::io::{self, Write};

use corral_api::gitpod::v1::RunnerSpec;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;

/// Everything that goes into a bundle.
#[derive(Debug, Clone)]
pub struct BundleContents {
    pub versions: String,
    pub configuration: serde_json::Value,
    pub logs: String,
}

/// The spec without its secrets: the metrics password and the (encrypted)
/// Honeycomb API key.
pub fn redacted_spec(spec: &RunnerSpec) -> RunnerSpec {
    let mut spec = spec.clone();
    if let Some(configuration) = spec.configuration.as_option_mut() {
        configuration.encrypted_honeycomb_api_key.clear();
        if let Some(metrics) = configuration.metrics.as_option_mut() {
            metrics.password.clear();
        }
    }
    spec
}

/// `configuration.json`: the runner id, its latest spec (secrets removed) and
/// whatever else the caller adds under `extra` (must hold no secrets).
pub fn configuration_json(
    runner_id: Option<&str>,
    spec: Option<&RunnerSpec>,
    extra: serde_json::Value,
) -> serde_json::Value {
    let spec = spec
        .map(|s| serde_json::to_value(redacted_spec(s)).unwrap_or(serde_json::Value::Null))
        .unwrap_or(serde_json::Value::Null);
    let mut value = json!({
        "runner_id": runner_id,
        "spec": spec,
        "secrets_removed": ["spec.configuration.metrics.password", "spec.configuration.encryptedHoneycombApiKey"],
    });
    if let (Some(object), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        object.extend(extra);
    }
    value
}

/// Builds the tar.gz.
pub fn support_bundle(contents: &BundleContents) -> io::Result<Vec<u8>> {
    let configuration =
        serde_json::to_vec_pretty(&contents.configuration).map_err(io::Error::other)?;
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, data) in [
        ("versions.txt", contents.versions.as_bytes()),
        ("configuration.json", configuration.as_slice()),
        ("logs.txt", contents.logs.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        archive.append_data(&mut header, name, data)?;
    }
    let mut gz = archive.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use buffa::MessageField;
    use corral_api::gitpod::v1::{LogLevel, MetricsConfiguration, RunnerConfiguration};

    use super::*;

    fn unpack(bytes: &[u8]) -> BTreeMap<String, String> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                let mut text = String::new();
                entry.read_to_string(&mut text).unwrap();
                (name, text)
            })
            .collect()
    }

    #[test]
    fn bundle_holds_versions_configuration_and_logs_without_secrets() {
        let spec = RunnerSpec {
            configuration: MessageField::some(RunnerConfiguration {
                region: "eu-west-1".into(),
                log_level: LogLevel::LOG_LEVEL_DEBUG.into(),
                metrics: MessageField::some(MetricsConfiguration {
                    enabled: true,
                    url: "https://metrics.example.com".into(),
                    username: "metrics-user".into(),
                    password: "hunter2-metrics-password".into(),
                    ..Default::default()
                }),
                encrypted_honeycomb_api_key: b"honeycomb-secret-key".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let logs = crate::logs::LogBuffer::new(10);
        logs.push("INFO connected with token crl_rt_supersecret");
        let contents = BundleContents {
            versions: "corral-runner 0.1.0\n".into(),
            configuration: configuration_json(
                Some("runner-1"),
                Some(&spec),
                json!({"region": "eu-west-1"}),
            ),
            logs: logs.text(),
        };
        let bytes = support_bundle(&contents).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");

        let files = unpack(&bytes);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["configuration.json", "logs.txt", "versions.txt"]
        );
        assert_eq!(files["versions.txt"], "corral-runner 0.1.0\n");
        assert!(files["logs.txt"].contains("connected with token crl_rt_[redacted]"));

        let configuration: serde_json::Value =
            serde_json::from_str(&files["configuration.json"]).unwrap();
        assert_eq!(configuration["runner_id"], "runner-1");
        assert_eq!(configuration["region"], "eu-west-1");
        let runner_config = &configuration["spec"]["configuration"];
        assert_eq!(runner_config["region"], "eu-west-1");
        assert_eq!(runner_config["logLevel"], "LOG_LEVEL_DEBUG");
        assert_eq!(runner_config["metrics"]["username"], "metrics-user");

        let everything: String = files.values().cloned().collect();
        for secret in ["hunter2", "honeycomb-secret", "aG9uZXljb21i", "supersecret"] {
            assert!(!everything.contains(secret), "bundle leaks {secret}");
        }
    }

    #[test]
    fn bundle_without_a_spec_yet() {
        let contents = BundleContents {
            versions: String::new(),
            configuration: configuration_json(None, None, serde_json::Value::Null),
            logs: String::new(),
        };
        let files = unpack(&support_bundle(&contents).unwrap());
        let configuration: serde_json::Value =
            serde_json::from_str(&files["configuration.json"]).unwrap();
        assert!(configuration["spec"].is_null());
        assert!(configuration["runner_id"].is_null());
    }
}
