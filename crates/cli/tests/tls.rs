//! `corral serve --tls-cert --tls-key` with the real binary and a
//! self-signed certificate made by the test: `/healthz` and an RPC over
//! HTTPS (HTTP/2 by ALPN, and HTTP/1.1), the certificate replaced on disk and
//! picked up on SIGHUP by new connections, and a broken file on reload
//! leaving the previous certificate in place.

use std::path::Path;
use std::time::{Duration, Instant};

mod support;

use support::{Patience, Proc, eventually};

const PATIENCE: Patience = Patience {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(50),
};

/// A new self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM, cert DER).
fn new_certificate() -> (String, String, Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("making a certificate");
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().to_vec(),
    )
}

fn write_files(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// A client on fresh connections that trusts `cert_pem`, records the peer
/// certificate and speaks HTTP/2 (`h2`) or only HTTP/1.1.
fn client(cert_pem: &str, h2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE.timeout);
    let builder = if h2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

/// GET /healthz on a new connection: the version and the server's certificate.
async fn healthz(
    client: &reqwest::Client,
    port: u16,
) -> Result<(reqwest::Version, Vec<u8>), String> {
    let response = client
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let version = response.version();
    let peer = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or("no peer certificate")?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status != 200 || body != "ok" {
        return Err(format!("{status}: {body}"));
    }
    Ok((version, peer))
}

fn sighup(server: &Proc) {
    let pid = libc::pid_t::try_from(server.pid()).unwrap();
    // SAFETY: kill(2) on our own child, which is still running (the Proc
    // has not reaped it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

#[tokio::test]
async fn serves_https_and_reloads_the_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first_pem, first_key, first_der) = new_certificate();
    write_files(dir.path(), &first_pem, &first_key);
    let port = corral_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let data_dir = dir.path().join("data");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = Proc::spawn(
        dir.path(),
        "server",
        &[
            "serve",
            "--listen",
            &listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--header-timeout",
            "2s",
        ],
    );

    let trusting_first = client(&first_pem, true);
    let ((version, peer), _) = eventually(PATIENCE, "the server answers over TLS", || {
        healthz(&trusting_first, port)
    })
    .await;
    assert_eq!(version, reqwest::Version::HTTP_2, "ALPN picks HTTP/2");
    assert_eq!(peer, first_der);
    let (version, _) = healthz(&client(&first_pem, false), port).await.unwrap();
    assert_eq!(version, reqwest::Version::HTTP_11);

    // An RPC, with the admin's token.
    let token = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let response = trusting_first
        .post(format!(
            "https://{listen}/gitpod.v1.IdentityService/GetAuthenticatedIdentity"
        ))
        .bearer_auth(token.trim())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Over https the dashboard's session cookie is Secure.
    let signed_in = trusting_first
        .post(format!("https://{listen}/auth/session"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "token": token.trim() }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with("corral_session=crl_ses_") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    assert!(cookie.contains("; HttpOnly; SameSite=Lax"), "{cookie}");
    let identity: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        identity["subject"]["principal"], "PRINCIPAL_USER",
        "{identity}"
    );

    // Plain HTTP on the TLS port is not served.
    assert!(
        support::http_get(&format!("http://{listen}/healthz"), None, PATIENCE.timeout)
            .await
            .map(|(status, _)| status)
            != Ok(200)
    );

    // A client that never starts its handshake is closed after the header timeout.
    let mut silent = tokio::net::TcpStream::connect(&listen).await.unwrap();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(PATIENCE.timeout, async {
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut received).await
    })
    .await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "a silent client is still connected: {closed:?}"
    );

    // A renewed certificate: new connections get it after SIGHUP.
    let (second_pem, second_key, second_der) = new_certificate();
    write_files(dir.path(), &second_pem, &second_key);
    sighup(&server);
    let trusting_second = client(&second_pem, true);
    eventually(
        PATIENCE,
        "new connections get the new certificate",
        || async {
            let (_, peer) = healthz(&trusting_second, port).await?;
            (peer == second_der)
                .then_some(())
                .ok_or_else(|| "still the first certificate".to_string())
        },
    )
    .await;
    // The first is no longer served.
    assert!(healthz(&trusting_first, port).await.is_err());

    // A broken key on reload: logged, and the second certificate stays.
    write_files(
        dir.path(),
        &second_pem,
        "-----BEGIN PRIVATE KEY-----\nbroken\n",
    );
    sighup(&server);
    let start = Instant::now();
    eventually(PATIENCE, "the failed reload is logged", || async {
        let log = server.output();
        log.contains("could not reload the TLS certificate, keeping the previous one")
            .then_some(())
            .ok_or_else(|| "not logged yet".to_string())
    })
    .await;
    let (_, peer) = healthz(&trusting_second, port).await.unwrap();
    assert_eq!(peer, second_der);
    println!("reload failure noticed after {:?}", start.elapsed());
}

#[test]
fn tls_flags_come_in_pairs_and_bad_files_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(support::BIN)
        .args(["serve", "--tls-cert", "cert.pem", "--print-config"])
        .env_remove("CORRAL_TLS_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM").unwrap();
    let output = std::process::Command::new(support::BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", corral_testkit::free_port()),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--tls-cert",
            garbage.to_str().unwrap(),
            "--tls-key",
            garbage.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}

/// POSTs Connect JSON to `procedure` with the admin's token.
async fn call(
    client: &reqwest::Client,
    port: u16,
    token: &str,
    procedure: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = client
        .post(format!("https://127.0.0.1:{port}/{procedure}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let value: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{procedure}: {value}");
    value
}

#[tokio::test]
async fn a_runner_connects_to_a_tls_server_it_trusts_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem, _) = new_certificate();
    write_files(dir.path(), &cert_pem, &key_pem);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let port = corral_testkit::free_port();
    let data_dir = dir.path().join("data");
    let _server = Proc::spawn(
        dir.path(),
        "server",
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let https = client(&cert_pem, true);
    eventually(PATIENCE, "the server answers over TLS", || {
        healthz(&https, port)
    })
    .await;
    let token = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let token = token.trim();
    let server_url = format!("https://127.0.0.1:{port}");

    let create = |name: &'static str| {
        let https = https.clone();
        async move {
            call(
                &https,
                port,
                token,
                "gitpod.v1.RunnerService/CreateRunner",
                serde_json::json!({ "name": name }),
            )
            .await
        }
    };
    let trusted = create("trusting").await;
    let runner_id = trusted["runner"]["runnerId"].as_str().unwrap().to_string();
    // A runner in `dir/NAME` with the exchange token of `created`, trusting
    // the certificate when `ca_cert` is given.
    let start_runner = |name: &str, created: &serde_json::Value, ca_cert: Option<&Path>| {
        let data_dir = dir.path().join(name);
        let mut args = vec![
            "runner".to_string(),
            "--server".into(),
            server_url.clone(),
            "--exchange-token".into(),
            created["exchangeToken"].as_str().unwrap().into(),
            "--data-dir".into(),
            data_dir.to_str().unwrap().into(),
        ];
        if let Some(ca_cert) = ca_cert {
            args.extend(["--ca-cert".into(), ca_cert.to_str().unwrap().into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn(dir.path(), &format!("{name}-runner"), &args)
    };
    let _runner = start_runner("runner", &trusted, Some(&cert));
    eventually(PATIENCE, "the runner is ACTIVE", || {
        let https = https.clone();
        let runner_id = runner_id.clone();
        async move {
            let got = call(
                &https,
                port,
                token,
                "gitpod.v1.RunnerService/GetRunner",
                serde_json::json!({ "runnerId": runner_id }),
            )
            .await;
            let phase = got["runner"]["status"]["phase"].clone();
            (phase == "RUNNER_PHASE_ACTIVE")
                .then_some(())
                .ok_or_else(|| format!("phase {phase}"))
        }
    })
    .await;

    // The client over HTTPS: trusting the certificate through CORRAL_CA_CERT,
    // and refusing it without.
    let client_env = |with_ca: bool| {
        let mut command = std::process::Command::new(support::BIN);
        command
            .args(["runners", "get", &runner_id, "--output", "json"])
            .env("CORRAL_URL", &server_url)
            .env("CORRAL_TOKEN", token)
            .env("XDG_CONFIG_HOME", dir.path().join("client-config"))
            .env_remove("CORRAL_CA_CERT");
        if with_ca {
            command.env("CORRAL_CA_CERT", &cert);
        }
        command.output().unwrap()
    };
    let trusting_client = client_env(true);
    assert!(
        trusting_client.status.success(),
        "corral runners get over https with CORRAL_CA_CERT: {}",
        String::from_utf8_lossy(&trusting_client.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&trusting_client.stdout).unwrap();
    assert_eq!(shown["runner"]["runnerId"], runner_id.as_str());
    let untrusting_client = client_env(false);
    let stderr = String::from_utf8_lossy(&untrusting_client.stderr);
    assert_eq!(untrusting_client.status.code(), Some(5), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // Without --ca-cert the self-signed certificate is not trusted.
    let untrusting = create("untrusting").await;
    let refused = start_runner("untrusting", &untrusting, None);
    eventually(PATIENCE, "the runner refuses the certificate", || async {
        let log = refused.output().to_lowercase();
        log.contains("certificate")
            .then_some(())
            .ok_or_else(|| format!("log so far: {log}"))
    })
    .await;
}
