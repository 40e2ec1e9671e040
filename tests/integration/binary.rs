//! The kube-reloader binary itself: startup check, HTTP endpoints, clean shutdown, and clear
//! errors when it cannot work.

use std::process::{Command, Output};
use std::time::Duration;

use kube_reloader_testenv::Tier;
use kube_reloader_testenv::process::{Process, free_port};

use crate::controller::{controller_rules, identity_with_rules};
use crate::support::{cluster, eventually};

use crate::controller::BINARY;

/// Runs the binary to completion with a bounded wait (these runs must exit by themselves).
async fn run(args: &[&str], kubeconfig: &str) -> Output {
    let mut command = tokio::process::Command::new(BINARY);
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), command.output()).await {
        Ok(output) => output.unwrap(),
        Err(_) => panic!("kube-reloader {args:?} did not exit within 60s"),
    }
}

async fn get(url: &str) -> Result<(u16, String), String> {
    let response = kube_reloader_testenv::http()
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Runs as a service account with the controller's RBAC, turns ready once its caches synced,
/// serves /live and /metrics, and exits 0 on SIGTERM.
#[tokio::test]
async fn serves_ready_live_and_metrics_then_stops_cleanly_on_sigterm() {
    let cluster = cluster(Tier::A).await;
    let ns = cluster.create_namespace("binary").await.unwrap();
    let identity = identity_with_rules(&cluster, &ns, controller_rules()).await;
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let log = cluster
        .dir
        .join("logs")
        .join(format!("kube-reloader-{ns}.log"));

    let mut command = Command::new(BINARY);
    command
        .args([
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", &identity.kubeconfig)
        .env_remove("RUST_LOG");
    let mut controller = Process::spawn("kube-reloader", command, &log).unwrap();

    let body = eventually("/ready to answer 200", || async {
        match get(&format!("{base}/ready")).await? {
            (200, body) => Ok(body),
            (code, body) => Err(format!("{code} {body}")),
        }
    })
    .await;
    assert_eq!(body, "ready");
    assert_eq!(
        get(&format!("{base}/live")).await.unwrap(),
        (200, "alive".to_owned())
    );
    let (code, metrics) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("reloader_reload_executed_total{success=\"true\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reloader_reload_executed_total{success=\"false\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("kube_reloader_build_info"), "{metrics}");
    assert_eq!(
        get(&format!("{base}/debug/pprof/")).await.unwrap().0,
        404,
        "no pprof unless asked"
    );

    controller.stop(Duration::from_secs(20));
    let status = controller.exit_status().unwrap();
    let output = controller.log_tail(200);
    assert!(
        status.success(),
        "exit status {status} after SIGTERM; log:\n{output}"
    );
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let connected = lines
        .iter()
        .find(|l| l["message"] == "connected to the Kubernetes API server")
        .unwrap_or_else(|| panic!("no connect line in:\n{output}"));
    assert_eq!(connected["version"], cluster.apiserver_version.as_str());
    assert_eq!(
        connected["server"].as_str().unwrap().trim_end_matches('/'),
        cluster.server
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "shutting down" && l["signal"] == "SIGTERM"),
        "{output}"
    );
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{output}");
}

/// Credentials the API server rejects: exit non-zero, say 401 and what to fix.
#[tokio::test]
async fn rejected_credentials_fail_startup_with_a_clear_message() {
    let cluster = cluster(Tier::A).await;
    let path = cluster
        .dir
        .join("identities")
        .join("wrong-token.kubeconfig");
    cluster
        .write_kubeconfig(&path, "nobody", "not-a-valid-token")
        .unwrap();
    let output = run(&["--http-addr", "127.0.0.1:0"], path.to_str().unwrap()).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&cluster.server),
        "names the server: {stderr}"
    );
    assert!(stderr.contains("401"), "names the cause: {stderr}");
    assert!(stderr.contains("fix:"), "says what to do: {stderr}");
}

/// No API server at the configured address: exit non-zero, name the server, cause and fix.
#[tokio::test]
async fn unreachable_api_server_fails_startup_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("kube-reloader-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let closed_port = free_port().unwrap();
    let server = format!("https://127.0.0.1:{closed_port}");
    let kubeconfig = dir.join("unreachable.kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": true}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x"
        })
        .to_string(),
    )
    .unwrap();
    let output = run(
        &["--http-addr", "127.0.0.1:0", "--api-timeout-seconds", "20"],
        kubeconfig.to_str().unwrap(),
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&server), "names the server: {stderr}");
    assert!(
        stderr.contains("connection refused"),
        "names the cause: {stderr}"
    );
    assert!(stderr.contains("fix:"), "says what to do: {stderr}");
}

/// --help and --version answer without any cluster or kubeconfig.
#[tokio::test]
async fn help_and_version_need_no_cluster() {
    let version = run(&["--version"], "/nonexistent/kubeconfig").await;
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("kube-reloader {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run(&["--help"], "/nonexistent/kubeconfig").await;
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--log-format", "--log-level", "--http-addr"] {
        assert!(text.contains(flag), "--help lists {flag}: {text}");
    }
}

/// Bad flags stop the process before it touches the cluster, naming the flag.
#[tokio::test]
async fn bad_flags_fail_before_start() {
    let bad_addr = run(&["--http-addr", "nowhere"], "/nonexistent/kubeconfig").await;
    assert_eq!(bad_addr.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_addr.stderr);
    assert!(
        stderr.contains("--http-addr") && stderr.contains("nowhere"),
        "{stderr}"
    );

    let unknown = run(&["--no-such-flag"], "/nonexistent/kubeconfig").await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--no-such-flag"));

    for (args, flag) in [
        (&["--reload-strategy=rolling"][..], "--reload-strategy"),
        (
            &["--resources-to-ignore=configmaps,secrets"][..],
            "--resources-to-ignore",
        ),
        (
            &["--namespace-selector=env=a b"][..],
            "--namespace-selector",
        ),
        (&["--enable-ha=maybe"][..], "--enable-ha"),
    ] {
        let output = run(args, "/nonexistent/kubeconfig").await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }

    let no_config = run(&["--http-addr", "127.0.0.1:0"], "/nonexistent/kubeconfig").await;
    assert_eq!(no_config.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_config.stderr);
    assert!(
        stderr.contains("KUBECONFIG") && stderr.contains("fix:"),
        "{stderr}"
    );
}

/// `kube-reloader digest -`: upstream-compatible digests and env-var names from manifests;
/// bad documents are named; Secret values never appear in the output.
#[tokio::test]
async fn digest_command_prints_upstream_digests_and_hides_secret_values() {
    use tokio::io::AsyncWriteExt;
    let manifests = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: foo-config, namespace: default}\n\
                     data: {a: \"1\", b: \"2\"}\n---\n\
                     apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\n\
                     stringData: {password: planted-secret-value-7f3a}\n---\n\
                     apiVersion: v1\nkind: Secret\nmetadata: {name: broken}\ndata: {k: planted-secret-value-7f3a}\n";
    let mut child = tokio::process::Command::new(BINARY)
        .args(["digest", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let secret_digest = kube_reloader::model::digest::secret_data([(
        "password",
        b"planted-secret-value-7f3a".as_slice(),
    )]);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "default/foo-config\tCONFIGMAP\tSTAKATER_FOO_CONFIG_CONFIGMAP\tf83e99e324ba68ccc373a58ef1eb42f8ab88646a".to_owned(),
            format!("prod/db\tSECRET\tSTAKATER_DB_SECRET\t{secret_digest}"),
        ]
    );
    assert!(stderr.contains("document 3: Secret broken"), "{stderr}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "a bad document fails the command"
    );
    assert!(!stdout.contains("planted-secret") && !stderr.contains("planted-secret"));
}
