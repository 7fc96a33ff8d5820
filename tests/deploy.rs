//! The deployment files cannot be run here (no Docker engine, no Kubernetes): check that
//! they parse and that everything they reference exists and agrees with the code.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display())))
        .collect()
}

use serde::Deserialize;

#[test]
fn compose_file_parses_and_references_what_exists() {
    let compose = &yaml_documents(&root().join("docker-compose.yml"))[0];
    let services = compose["services"].as_mapping().expect("services");
    for name in ["postgres", "redis", "node1", "node2", "node3", "nginx"] {
        assert!(services.contains_key(name), "compose has no {name}");
    }
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    for referenced in ["deploy/Dockerfile", "deploy/nginx/nginx.conf"] {
        assert!(text.contains(referenced), "compose does not use {referenced}");
        assert!(root().join(referenced).exists(), "{referenced} is missing");
    }
    // Every SWITCHBOARD_* variable the deploy files set is a setting the server reads.
    let config = std::fs::read_to_string(root().join("src/config.rs")).unwrap();
    for file in ["docker-compose.yml", "deploy/k8s/configmap.yaml", "deploy/k8s/deployment.yaml", "deploy/Dockerfile"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for var in
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("SWITCHBOARD_"))
        {
            assert!(config.contains(&format!("\"{var}\"")), "{file} sets {var}, which the server does not read");
        }
    }
}

#[test]
fn kubernetes_manifests_parse_and_are_complete() {
    let k8s = root().join("deploy/k8s");
    let kustomization = &yaml_documents(&k8s.join("kustomization.yaml"))[0];
    let mut kinds = Vec::new();
    for resource in kustomization["resources"].as_sequence().expect("resources") {
        let file = k8s.join(resource.as_str().unwrap());
        for doc in yaml_documents(&file) {
            kinds.push(doc["kind"].as_str().expect("every manifest has a kind").to_owned());
        }
    }
    for kind in ["Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let deployment = yaml_documents(&k8s.join("deployment.yaml"));
    let text = serde_yaml_ng::to_string(&deployment).unwrap();
    for needle in ["/readyz", "/healthz", "preStop", "secretKeyRef"] {
        assert!(text.contains(needle), "deployment lacks {needle}");
    }
}

#[test]
fn nginx_config_and_template_proxy_websockets() {
    for file in ["deploy/nginx/nginx.conf", "deploy/nginx/switchboard.conf.template"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for needle in
            ["proxy_http_version 1.1", "Upgrade $http_upgrade", "Connection $connection_upgrade", "proxy_read_timeout"]
        {
            assert!(text.contains(needle), "{file} lacks `{needle}`");
        }
    }
}
