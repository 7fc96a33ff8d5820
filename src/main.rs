//! The `switchboard` command: `serve` (default), `migrate`, `token`, `revoke`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchboard::auth::Authenticator;
use switchboard::config::LogFormat;
use switchboard::domain::{Timestamp, UserId};
use switchboard::store::{self, Backend, Profile, Store};
use switchboard::{Application, Settings};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Realtime back end for chat, calls, live sessions and social apps")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve WebSocket clients (the default).
    Serve,
    /// Run pending database migrations and exit.
    Migrate,
    /// Print a token for USER_ID signed with the configured secret.
    Token {
        user_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        avatar: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        ttl: u64,
    },
    /// Refuse USER_ID's tokens issued before now (or --before) and close the connections
    /// holding one on every node (within seconds).
    Revoke {
        user_id: String,
        /// RFC 3339 time; tokens issued before it are refused (default: now).
        #[arg(long)]
        before: Option<String>,
    },
}

/// Logs to stdout in `format`, filtered by `RUST_LOG` (default `info,actix_server=warn`).
fn start_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,actix_server=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // Settings are parsed before logging starts: they choose its format (clap reports a bad one).
    let cli = Cli::parse();
    start_logging(cli.settings.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Application::build(cli.settings).await?.run_until_stopped().await,
        Command::Migrate => {
            let backend = Backend::from_url(&cli.settings.database_url)?;
            store::run_migrations(&backend).await.context("running migrations")?;
            tracing::info!("migrations are up to date");
            Ok(())
        }
        Command::Revoke { user_id, before } => {
            let user = UserId::parse(user_id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let before = match before {
                None => Timestamp::now(),
                Some(raw) => chrono::DateTime::parse_from_rfc3339(&raw)
                    .map(|at| Timestamp::from_millis(at.timestamp_millis()))
                    .with_context(|| format!("--before `{raw}` is not an RFC 3339 time"))?,
            };
            let backend = Backend::from_url(&cli.settings.database_url)?;
            let store = Store::connect(&backend, 1).await.context("connecting to the database")?;
            store.revoke(&user, before).await?;
            println!(
                "revoked the tokens of {user} issued before {}; their connections close within {} s on every node",
                before.to_rfc3339(),
                switchboard::runtime::revocations::POLL.as_secs()
            );
            Ok(())
        }
        Command::Token { user_id, name, avatar, ttl } => {
            let user = UserId::parse(user_id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let auth = Authenticator::new(cli.settings.jwt_secret());
            println!("{}", auth.mint(&user, &Profile { name, avatar }, ttl));
            Ok(())
        }
    }
}
