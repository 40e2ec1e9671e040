//! The kube-reloader binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use kube_reloader::config::Command;
use kube_reloader::{Cli, commands, ops};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Digest { file }) = &cli.command {
        return match commands::digest::run(file) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("kube-reloader: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Explain {
        target,
        namespace,
        output,
    }) = cli.command.clone()
    {
        let settings = match cli.into_settings() {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("kube-reloader: error: {e}");
                return ExitCode::from(2);
            }
        };
        let json = output == "json";
        return ExitCode::from(
            commands::explain::run(&target, namespace.as_deref(), json, &settings).await,
        );
    }
    let settings = match cli.into_settings() {
        Ok(settings) => settings,
        Err(e) => {
            // Same exit code clap uses for a malformed command line.
            eprintln!("kube-reloader: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ops::logging::init(
        settings.log_format,
        settings.log_level,
        settings.log_filter.as_deref(),
    ) {
        eprintln!("kube-reloader: error: {e}");
        return ExitCode::FAILURE;
    }
    match kube_reloader::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
