//! The `switchboard` command: `serve` (default), `migrate`, `token`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchboard::auth::Authenticator;
use switchboard::domain::UserId;
use switchboard::store::{self, Backend, Profile};
use switchboard::{Application, Settings};

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
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Application::build(cli.settings).await?.run_until_stopped().await,
        Command::Migrate => {
            let backend = Backend::from_url(&cli.settings.database_url)?;
            store::run_migrations(&backend).await.context("running migrations")?;
            tracing::info!("migrations are up to date");
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
