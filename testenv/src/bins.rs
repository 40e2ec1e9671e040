//! Finding (and if needed building) the pinned control-plane binaries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::Error;

/// Env var naming a directory that already holds the binaries (set by `make`).
pub const BIN_DIR_ENV: &str = "KUBE_RELOADER_TESTBINS";

const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testbins/build.sh");

/// The directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
/// kwok and helm.
#[derive(Debug, Clone)]
pub struct Bins {
    dir: PathBuf,
}

impl Bins {
    /// Uses `$KUBE_RELOADER_TESTBINS` if set, else runs `testbins/build.sh`, which is a no-op
    /// when the cache is warm and builds from the pinned Go modules when it is cold.
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Self { dir: dir.into() });
        }
        let _ = writeln!(
            std::io::stderr(),
            "testenv: {BIN_DIR_ENV} is not set; running testbins/build.sh (a cold build takes 20-30 min)"
        );
        let output = Command::new("bash")
            .arg(BUILD_SCRIPT)
            .arg("--print-dir")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| {
                Error::Binaries(format!(
                    "cannot run {BUILD_SCRIPT}: {e}\n{}",
                    how_to_build()
                ))
            })?;
        if !output.status.success() {
            return Err(Error::Binaries(format!(
                "{BUILD_SCRIPT} failed with {}\n{}",
                output.status,
                how_to_build()
            )));
        }
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(Self { dir: dir.into() })
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one binary; an error explains how to build it when it is missing.
    pub fn path(&self, name: &str) -> Result<PathBuf, Error> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Binaries(format!(
                "control-plane binary {} is missing\n{}",
                path.display(),
                how_to_build()
            )))
        }
    }
}

fn how_to_build() -> String {
    "  fix: build the control-plane binaries with `make testbins` (runs testbins/build.sh; needs Go 1.26+ \
     and the Go module proxy; a cold build takes 20-30 min, later runs are cached), or point \
     KUBE_RELOADER_TESTBINS at a directory that holds them"
        .to_owned()
}
