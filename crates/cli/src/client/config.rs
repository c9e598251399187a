//! Where the client keeps its login: `$XDG_CONFIG_HOME/corral/config.toml`
//! (default `~/.config/corral`), the directory 0700 and the file 0600;
//! `CORRAL_URL` / `CORRAL_TOKEN` override what it holds. `login` checks a
//! token with `GetAuthenticatedIdentity` before saving it.

use std::fs;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use clap::Args;
use corral_api::gitpod::v1 as api;
use serde::{Deserialize, Serialize};

use super::{Api, Failure, Outcome};

/// What `login` saves.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct Login {
    pub url: String,
    pub token: String,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "CORRAL_URL")]
    url: String,
    /// Read the token from standard input (the first line) instead of asking
    /// for it; also what happens when standard input is not a terminal.
    #[arg(long)]
    token_stdin: bool,
}

/// The config directory: `$XDG_CONFIG_HOME/corral`, else `~/.config/corral`.
fn config_dir() -> Outcome<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("corral"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Failure::other("neither XDG_CONFIG_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".config").join("corral"))
}

pub fn config_path() -> Outcome<PathBuf> {
    Ok(config_dir()?.join("config.toml"))
}

/// The saved login, if any.
fn saved() -> Outcome<Option<Login>> {
    let path = config_path()?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::other(format!("reading {}: {e}", path.display()))),
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        Failure::other(format!(
            "{} is not a valid config file ({}): run `corral login` again",
            path.display(),
            e.message()
        ))
    })
}

/// The server and token to use: the environment's, else the saved ones.
pub fn current_login() -> Outcome<Login> {
    let from_env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let (env_url, env_token) = (from_env("CORRAL_URL"), from_env("CORRAL_TOKEN"));
    let saved = if env_url.is_some() && env_token.is_some() {
        None
    } else {
        saved()?
    };
    let url = env_url.or_else(|| saved.as_ref().map(|s| s.url.clone()));
    let token = env_token.or_else(|| saved.map(|s| s.token));
    match (url, token) {
        (Some(url), Some(token)) => Ok(Login { url, token }),
        (url, _) => Err(Failure::unauthenticated(format!(
            "not logged in: run `corral login --url {}`",
            url.as_deref().unwrap_or("URL")
        ))),
    }
}

/// Parses and checks a server URL, as the runner agent does its `--server`.
pub fn server_uri(url: &str) -> Outcome<http::Uri> {
    corral_runner::connection::server_uri(url).map_err(|e| Failure::usage(e.to_string()))
}

/// Reads a secret (`what`): from stdin when asked to or when stdin is no
/// terminal (its last non-empty line), else from a prompt that does not echo.
pub fn read_secret(what: &str, from_stdin: bool) -> Outcome<String> {
    let secret = if from_stdin || !std::io::stdin().is_terminal() {
        let mut text = String::new();
        // A token is short; a bounded read keeps a wrong pipe from filling memory.
        std::io::stdin().take(64 * 1024).read_to_string(&mut text)?;
        text.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or_default()
            .to_string()
    } else {
        rpassword::prompt_password(format!("{what}: "))?
            .trim()
            .to_string()
    };
    if secret.is_empty() {
        return Err(Failure::usage(format!("no {what} given")));
    }
    Ok(secret)
}

pub async fn login(args: LoginArgs) -> Outcome {
    let url = args.url.trim().trim_end_matches('/').to_string();
    server_uri(&url)?;
    let token = read_secret("API token", args.token_stdin)?;
    let api = Api::new(&url, &token)?;
    let identity = api
        .identity()
        .get_authenticated_identity(api::GetAuthenticatedIdentityRequest::default())
        .await
        .map_err(|e| api.failure("checking the token", &e))?
        .into_owned();
    save(&Login {
        url: url.clone(),
        token,
    })?;
    let subject = identity.subject.as_option();
    println!(
        "logged in to {url} as {} in organization {}; saved in {}",
        subject.map(|s| s.id.as_str()).unwrap_or("?"),
        identity.organization_id,
        config_path()?.display()
    );
    Ok(())
}

pub fn logout() -> Outcome {
    let path = config_path()?;
    match fs::remove_file(&path) {
        Ok(()) => println!("logged out: removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("not logged in"),
        Err(e) => return Err(Failure::other(format!("removing {}: {e}", path.display()))),
    }
    Ok(())
}

/// Writes the login to the config file: the directory 0700, the file 0600
/// (written to a temporary file of that mode and renamed over the old one).
fn save(login: &Login) -> Outcome {
    let dir = config_dir()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Failure::other(format!("creating {}: {e}", dir.display())))?;
    // An existing directory keeps its mode on create: narrow it.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    let text = toml::to_string(login).map_err(|e| Failure::other(e.to_string()))?;
    let path = dir.join("config.toml");
    let temporary = dir.join("config.toml.new");
    let _ = fs::remove_file(&temporary);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| Failure::other(format!("writing {}: {e}", temporary.display())))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, &path)?;
    Ok(())
}
