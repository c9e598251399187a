//! The configuration file of `corral serve` (`--config FILE`, `CORRAL_CONFIG`):
//! TOML with the serve flags' names as keys (kebab-case, as on the command
//! line: `runner-grace = "2m"`). Precedence: flags, then the environment,
//! then the file, then the defaults.
//!
//! Flags stay clap's. After clap has parsed the command line and the
//! environment, each file key whose flag got no value from either is
//! checked with that flag's own value parser and handed to clap as if it
//! had been given: one set of names, checks and error texts. Unknown keys
//! are errors. `--print-config` prints the effective settings as a file
//! that gives the same settings back, with secrets redacted.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

/// The subcommand the file configures.
const SUBCOMMAND: &str = "serve";

/// Flags of `serve` that are not settings.
const NOT_SETTINGS: [&str; 3] = ["config", "print_config", "help"];

/// A configuration file larger than this is refused unread.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What a redacted secret is printed as.
const REDACTED: &str = "REDACTED";

/// Parses the command line, the environment and `serve`'s configuration
/// file into `P`. Prints the effective configuration and exits for
/// `serve --print-config`; exits with clap's message and code for bad flags,
/// and with code 2 for a bad file.
pub fn parse<P: CommandFactory + FromArgMatches>() -> P {
    let args: Vec<OsString> = std::env::args_os().collect();
    match parse_from::<P>(&args) {
        Ok(Parsed::Run(parsed)) => parsed,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            std::process::exit(0)
        }
        Err(Failure::Clap(e)) => e.exit(),
        Err(Failure::File(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        }
    }
}

enum Parsed<P> {
    Run(P),
    /// `--print-config`: the effective configuration as TOML.
    Print(String),
}

enum Failure {
    Clap(clap::Error),
    File(anyhow::Error),
}

fn parse_from<P: CommandFactory + FromArgMatches>(args: &[OsString]) -> Result<Parsed<P>, Failure> {
    let mut command = P::command();
    let matches = command
        .try_get_matches_from_mut(args)
        .map_err(Failure::Clap)?;
    let Some(serve) = matches.subcommand_matches(SUBCOMMAND) else {
        return P::from_arg_matches(&matches)
            .map(Parsed::Run)
            .map_err(Failure::Clap);
    };
    let mut args = args.to_vec();
    if let Some(file) = serve.get_one::<PathBuf>("config") {
        let serve_command = command
            .find_subcommand(SUBCOMMAND)
            .expect("the serve subcommand exists");
        args.extend(file_arguments(serve_command, serve, file).map_err(Failure::File)?);
    }
    let mut command = P::command();
    let matches = command
        .try_get_matches_from_mut(&args)
        .map_err(Failure::Clap)?;
    let serve = matches
        .subcommand_matches(SUBCOMMAND)
        .expect("still the serve subcommand");
    if serve.get_flag("print_config") {
        let serve_command = command
            .find_subcommand(SUBCOMMAND)
            .expect("the serve subcommand exists");
        return Ok(Parsed::Print(effective_toml(serve_command, serve)));
    }
    P::from_arg_matches(&matches)
        .map(Parsed::Run)
        .map_err(Failure::Clap)
}

/// The file's settings that neither a flag nor the environment gave, as
/// `--flag=value` arguments, each checked by its flag's parser.
fn file_arguments(
    serve: &clap::Command,
    matches: &ArgMatches,
    file: &Path,
) -> anyhow::Result<Vec<OsString>> {
    let table = read_table(file)?;
    let mut arguments = Vec::new();
    for (key, value) in &table {
        let Some(arg) = setting(serve, key) else {
            bail!(
                "{}: unknown key `{key}`; the keys are: {}",
                file.display(),
                settings(serve)
                    .filter_map(|a| a.get_long())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            other => bail!(
                "{}: `{key}` must be a string or an integer, not {}",
                file.display(),
                other.type_str()
            ),
        };
        // The flag's own parser, on this value alone.
        let flag = format!("--{key}={text}");
        serve
            .clone()
            .try_get_matches_from([OsStr::new(SUBCOMMAND), OsStr::new(&flag)])
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: `{key}`: {}",
                    file.display(),
                    e.to_string()
                        .trim_start_matches("error: ")
                        .lines()
                        .next()
                        .unwrap_or_default()
                )
            })?;
        let id = arg.get_id().as_str();
        let given = matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !given {
            arguments.push(OsString::from(flag));
        }
    }
    Ok(arguments)
}

fn read_table(file: &Path) -> anyhow::Result<toml::Table> {
    let metadata = std::fs::metadata(file)
        .with_context(|| format!("reading the configuration file {}", file.display()))?;
    if metadata.len() > MAX_FILE_BYTES {
        bail!(
            "{}: a configuration file may hold at most {MAX_FILE_BYTES} bytes",
            file.display()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the configuration file {}", file.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("{} is not valid TOML", file.display()))
}

/// The serve arguments that are settings, in declaration order.
fn settings(serve: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    serve
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_SETTINGS.contains(&a.get_id().as_str()))
}

/// The setting a file key names: the flag's long name, kebab-case.
fn setting<'a>(serve: &'a clap::Command, key: &str) -> Option<&'a clap::Arg> {
    settings(serve).find(|a| a.get_long() == Some(key))
}

/// The effective settings as a configuration file: every setting that has a
/// value (given or default), secrets redacted.
fn effective_toml(serve: &clap::Command, matches: &ArgMatches) -> String {
    let mut table = toml::Table::new();
    for arg in settings(serve) {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        let Some(values) = matches.get_raw(id) else {
            continue;
        };
        let values: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
        let Some(value) = values.first() else {
            continue;
        };
        let value = if arg.is_hide_env_values_set() {
            REDACTED.to_string()
        } else if id == "database_url" {
            without_password(value)
        } else {
            value.clone()
        };
        table.insert(long.to_string(), toml::Value::String(value));
    }
    let mut text = String::from(
        "# The effective configuration of `corral serve` (flags, environment, file, defaults).\n\
         # Secrets are not shown: the data key (CORRAL_DATA_KEY) never is, and a database\n\
         # password is printed as REDACTED.\n",
    );
    text.push_str(&toml::to_string(&table).expect("a table of strings serializes"));
    text
}

/// A database URL with its password (if any) replaced by [`REDACTED`].
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(REDACTED));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            without_password("postgres://corral:hunter2@db.internal/corral"),
            "postgres://corral:REDACTED@db.internal/corral"
        );
        assert_eq!(
            without_password("postgres://corral@db.internal/corral"),
            "postgres://corral@db.internal/corral"
        );
        assert_eq!(
            without_password("sqlite:/var/lib/corral.db"),
            "sqlite:/var/lib/corral.db"
        );
    }
}
