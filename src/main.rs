//! The kube-reloader binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use kube_reloader::config::{Command, Settings};
use kube_reloader::{Cli, commands, ops};

/// The validated settings, or the exit code of a malformed command line (2, as clap's).
fn settings(cli: Cli) -> Result<Settings, ExitCode> {
    cli.into_settings().map_err(|e| {
        eprintln!("kube-reloader: error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    // Before any thread exists, so every thread shares the one arena.
    ops::memory::limit_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("kube-reloader: error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.clone() {
        Some(Command::Digest { file }) => {
            return match commands::digest::run(&file) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("kube-reloader: error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Explain {
            target,
            namespace,
            output,
        }) => {
            return match settings(cli) {
                Ok(settings) => ExitCode::from(
                    commands::explain::run(
                        &target,
                        namespace.as_deref(),
                        output == "json",
                        &settings,
                    )
                    .await,
                ),
                Err(code) => code,
            };
        }
        Some(Command::Status {
            namespace,
            all_namespaces,
            output,
        }) => {
            return match settings(cli) {
                Ok(settings) => ExitCode::from(
                    commands::status::run(
                        namespace.as_deref(),
                        all_namespaces,
                        output == "json",
                        &settings,
                    )
                    .await,
                ),
                Err(code) => code,
            };
        }
        None => {}
    }
    let settings = match settings(cli) {
        Ok(settings) => settings,
        Err(code) => return code,
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
