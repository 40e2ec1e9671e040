//! The container image built by `scripts/build-image.sh` (`make image`): a valid OCI layout whose
//! digests match, a non-root user, a statically linked entrypoint that runs `--version`, and the
//! same entrypoint, user and port as deploy/Dockerfile and the Helm chart expect.
//!
//! Needs the image: run `make image` (or `scripts/build-image.sh`) first.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn layout() -> PathBuf {
    let dir = Path::new(ROOT).join("target/image/oci");
    assert!(
        dir.join("index.json").is_file(),
        "no image at {}: build it with `make image` (scripts/build-image.sh)",
        dir.display()
    );
    dir
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success(), "sha256sum {}", path.display());
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

/// Reads the blob a descriptor points at, after checking its size and digest.
fn blob(layout: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = layout.join("blobs/sha256").join(hex);
    assert_eq!(sha256(&path), hex, "digest of {}", path.display());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        descriptor["size"].as_u64().unwrap(),
        "size of {digest}"
    );
    path
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Program headers and dynamic entries of a 64-bit little-endian ELF file: whether it asks for
/// an interpreter (PT_INTERP) and which shared libraries it needs (DT_NEEDED count).
struct Elf {
    machine: u16,
    interpreter: bool,
    needed: usize,
    /// Has a DT_RELR table (packed relative relocations, see build.rs).
    packed_relocations: bool,
}

fn parse_elf(bytes: &[u8]) -> Elf {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "not a 64-bit ELF file");
    assert_eq!(bytes[5], 1, "not little-endian");
    let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let machine = u16_at(18);
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    let mut elf = Elf {
        machine,
        interpreter: false,
        needed: 0,
        packed_relocations: false,
    };
    for i in 0..phnum as usize {
        let header = phoff + i * phentsize;
        match u32_at(header) {
            3 => elf.interpreter = true, // PT_INTERP
            2 => {
                // PT_DYNAMIC: (tag, value) pairs up to DT_NULL; DT_NEEDED is tag 1, DT_RELR 36.
                let (offset, size) = (u64_at(header + 8) as usize, u64_at(header + 32) as usize);
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry) {
                        0 => break,
                        1 => elf.needed += 1,
                        36 => elf.packed_relocations = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    elf
}

#[test]
fn image_is_a_static_non_root_oci_image_that_runs_version() {
    let layout = layout();
    assert_eq!(
        json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        VERSION
    );
    assert_eq!(manifests[0]["platform"]["architecture"], "amd64");
    let manifest = json(&blob(&layout, &manifests[0]));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = json(&blob(&layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer on an empty base");
    let layer = blob(&layout, &layers[0]);

    // The config: non-root user, entrypoint, port, labels.
    let run = &config["config"];
    let user = run["User"].as_str().unwrap();
    let (uid, gid) = user.split_once(':').unwrap();
    assert!(
        uid.parse::<u32>().unwrap() != 0 && gid.parse::<u32>().unwrap() != 0,
        "{user}"
    );
    assert_eq!(user, "65532:65532");
    assert_eq!(run["Entrypoint"], serde_json::json!(["/kube-reloader"]));
    assert!(run["ExposedPorts"]["9090/tcp"].is_object(), "{run}");
    let labels = &run["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    for key in ["title", "description", "revision", "created"] {
        let value = labels[format!("org.opencontainers.image.{key}")]
            .as_str()
            .unwrap_or_default();
        assert!(!value.is_empty(), "label {key} missing: {labels}");
    }

    // The layer's uncompressed digest is the config's diff_id.
    let scratch =
        std::env::temp_dir().join(format!("kube-reloader-image-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("rootfs")).unwrap();
    let tar_path = scratch.join("layer.tar");
    let unzipped = Command::new("gzip")
        .args(["-dc"])
        .arg(&layer)
        .output()
        .unwrap();
    assert!(unzipped.status.success());
    std::fs::write(&tar_path, &unzipped.stdout).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!("sha256:{}", sha256(&tar_path))
    );

    // Unpack: the entrypoint is a static x86-64 ELF (no interpreter, no shared libraries).
    let rootfs = scratch.join("rootfs");
    let status = Command::new("tar")
        .args(["-xf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&rootfs)
        .arg("--no-same-owner")
        .status()
        .unwrap();
    assert!(status.success());
    let entrypoint = rootfs.join("kube-reloader");
    let elf = parse_elf(&std::fs::read(&entrypoint).unwrap());
    assert_eq!(elf.machine, 62, "not x86-64");
    assert!(
        !elf.interpreter,
        "the binary asks for a dynamic loader (PT_INTERP)"
    );
    assert_eq!(
        elf.needed, 0,
        "the binary needs shared libraries (DT_NEEDED)"
    );
    assert!(
        elf.packed_relocations,
        "the binary's relocations are not packed (DT_RELR): build.rs passes -z pack-relative-relocs to +crt-static builds"
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
    assert!(
        std::fs::metadata(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
            .unwrap()
            .len()
            > 0
    );

    // It runs with an empty environment, as in an empty container.
    let output = Command::new(&entrypoint)
        .arg("--version")
        .env_clear()
        .current_dir(&rootfs)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("kube-reloader {VERSION}")
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// deploy/Dockerfile builds the same image where an engine exists; keep the two and the chart
/// in step.
#[test]
fn dockerfile_and_chart_agree_with_the_image() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).unwrap();
    for line in [
        "USER 65532:65532",
        "EXPOSE 9090",
        "ENTRYPOINT [\"/kube-reloader\"]",
        "--target x86_64-unknown-linux-gnu",
        "target-feature=+crt-static",
    ] {
        assert!(
            dockerfile.contains(line),
            "deploy/Dockerfile lacks {line:?}"
        );
    }
    let chart =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/helm/kube-reloader/Chart.yaml"))
            .unwrap();
    assert!(
        chart.contains(&format!("appVersion: \"{VERSION}\"")),
        "Chart.yaml appVersion must be the crate version {VERSION} (the default image tag)"
    );
    let values =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/helm/kube-reloader/values.yaml"))
            .unwrap();
    for line in [
        "runAsUser: 65532",
        "runAsGroup: 65532",
        "readOnlyRootFilesystem: true",
    ] {
        assert!(values.contains(line), "values.yaml lacks {line:?}");
    }
}
