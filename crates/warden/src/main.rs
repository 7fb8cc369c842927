//! `warden`: the gateway (`serve`) and the admin commands that act on its store.

mod approvals;
mod cli;
mod config;
mod console;
mod gate;
mod graphs;
mod keys;
mod login;
mod mcp;
mod notify;
mod recording;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
