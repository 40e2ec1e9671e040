//! `make cluster`: a local control plane for humans, stopped with Ctrl-C.
//!
//! Usage: kube-reloader-cluster [--tier a|b|c] [--kubeconfig-out PATH]

use std::io::Write as _;
use std::process::ExitCode;

use kube_reloader_testenv::{ControlPlane, Tier};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: kube-reloader-cluster [--tier a|b|c] [--kubeconfig-out PATH]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut tier = Tier::C;
    let mut kubeconfig_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--tier", Some(value)) => {
                tier = match value.to_ascii_lowercase().as_str() {
                    "a" => Tier::A,
                    "b" => Tier::B,
                    "c" => Tier::C,
                    _ => {
                        eprintln!("unknown tier {value:?}\n{USAGE}");
                        return ExitCode::from(2);
                    }
                }
            }
            ("--kubeconfig-out", Some(path)) => kubeconfig_out = Some(path),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    // Install handlers before starting so Ctrl-C during startup also stops cleanly.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plane = tokio::select! {
        plane = ControlPlane::start(tier) => plane,
        _ = term.recv() => return ExitCode::FAILURE,
        _ = int.recv() => return ExitCode::FAILURE,
    };
    let plane = match plane {
        Ok(plane) => plane,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let info = plane.info();
    let mut kubeconfig = info.kubeconfig.clone();
    if let Some(out) = kubeconfig_out {
        if let Err(e) = std::fs::copy(&info.kubeconfig, &out) {
            eprintln!("cannot copy the kubeconfig to {out}: {e}");
            return ExitCode::FAILURE;
        }
        kubeconfig = out.into();
    }
    let kubectl = info.bin("kubectl");
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "\nA tier {tier:?} control plane is running (etcd {}, kube-apiserver {}).\n\
         \n  export KUBECONFIG={}\n  {} get nodes,namespaces\n\
         \nkubectl and the other binaries are in {}\nLogs are in {}/logs\n\
         Press Ctrl-C to stop everything.",
        info.etcd_version,
        info.apiserver_version,
        kubeconfig.display(),
        kubectl.display(),
        info.bin_dir.display(),
        info.dir.display(),
    );
    let _ = out.flush();
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    eprintln!("{signal} received; stopping the control plane");
    drop(plane);
    eprintln!("stopped");
    ExitCode::SUCCESS
}
