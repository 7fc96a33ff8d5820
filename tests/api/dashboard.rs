//! The Grafana dashboard (`deploy/grafana/switchboard.json`): valid JSON with unique panel ids,
//! every query on the data source and node variables, and every metric it plots exported by a
//! real node.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use switchboard::metrics::Metrics;

use crate::helpers::{Db, TestApp, direct_room, raw_http, send, spawn_with};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/switchboard.json");
const PREFIX: &str = "switchboard_";
/// The series a histogram family renders besides its name.
const HISTOGRAM_SERIES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, those nested in collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            into.push(panel);
            walk(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    walk(&dashboard["panels"], &mut all);
    all
}

/// The PromQL of every panel target and of every query variable.
fn queries(dashboard: &Value) -> Vec<String> {
    let targets = panels(dashboard).into_iter().flat_map(|p| p["targets"].as_array().into_iter().flatten());
    let variables = dashboard["templating"]["list"].as_array().into_iter().flatten().filter(|v| v["type"] == "query");
    targets
        .map(|t| &t["expr"])
        .chain(variables.map(|v| if v["query"].is_object() { &v["query"]["query"] } else { &v["query"] }))
        .map(|q| q.as_str().unwrap_or_else(|| panic!("a query that is not a string: {q}")).to_owned())
        .collect()
}

/// The `switchboard_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<&str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    expr.match_indices(PREFIX)
        .filter(|(at, _)| !expr[..*at].ends_with(word))
        .map(|(at, _)| {
            let rest = &expr[at..];
            &rest[..rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len())]
        })
        .collect()
}

/// The metric families of a Prometheus text exposition (its `# TYPE` lines): name → type.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// Whether `name` is a series `families` render: a family, or a histogram's bucket, sum or count.
fn renders(families: &BTreeMap<String, String>, name: &str) -> bool {
    families.contains_key(name)
        || HISTOGRAM_SERIES.iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|family| families.get(family).is_some_and(|t| t == "histogram"))
        })
}

/// A node's registry with a child in every labelled family: a family with labels renders only
/// once it has one, and a fresh node has none yet in some (the webhook families, with webhooks
/// off).
fn every_family_rendered() -> BTreeMap<String, String> {
    let metrics = Metrics::new("probe");
    let webhooks = &metrics.webhooks;
    for family in [
        &metrics.frames_in,
        &metrics.frames_out,
        &metrics.errors,
        &metrics.refused,
        &webhooks.deliveries,
        &webhooks.dropped,
    ] {
        family.with_label_values(&["probe"]).inc();
    }
    webhooks.outbox.with_label_values(&["probe"]).set(0);
    for family in [&metrics.lifecycle_batch_size, &metrics.lifecycle_seconds] {
        family.with_label_values(&["probe"]).observe(1.0);
    }
    families(&metrics.render())
}

/// Connects, chats, fails a request and refuses an upgrade, so that the node's labelled
/// families get children.
async fn exercise(app: &TestApp) {
    let mut alice = app.connect("alice").await;
    let bob = app.connect("bob").await;
    let room = direct_room(&mut alice, &bob).await;
    send(&mut alice, &room, "hello").await;
    alice.fails("message.send", json!({"room_id": "no-such-room", "kind": "text", "body": "x"})).await;
    let path = format!("/ws?token={}", app.token("carol"));
    let refused = raw_http(app.port, "GET", &path, None, "Origin: https://elsewhere.example\r\n").await;
    assert_eq!(refused.status, 403, "an origin off the list is refused");
}

#[test]
fn the_dashboard_is_valid_json_with_unique_panel_ids() {
    let dashboard = dashboard();
    let variables = &dashboard["templating"]["list"];
    let variable = |name: &str| {
        variables.as_array().unwrap().iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name}"))
    };
    let datasource = variable("datasource");
    assert_eq!((datasource["type"].as_str(), datasource["query"].as_str()), (Some("datasource"), Some("prometheus")));
    let nodes = variable("node")["query"]["query"].as_str().unwrap_or_default();
    assert!(nodes.starts_with("label_values(switchboard_") && nodes.ends_with(", node)"), "$node is {nodes}");
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let id = panel["id"].as_u64().unwrap_or_else(|| panel_error(panel, "has no numeric id"));
        assert!(ids.insert(id), "panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        for target in targets.unwrap_or_else(|| panel_error(panel, "has no targets")) {
            let expr = target["expr"].as_str().unwrap_or_else(|| panel_error(panel, "has a target without expr"));
            assert!(expr.contains(r#"node=~"$node""#), "{}: `{expr}` ignores the node variable", panel["title"]);
            assert!(!metric_names(expr).is_empty(), "{}: `{expr}` plots no switchboard metric", panel["title"]);
        }
    }
}

fn panel_error(panel: &Value, what: &str) -> ! {
    panic!("panel {} {what}", panel["title"])
}

#[actix_web::test]
async fn every_metric_the_dashboard_plots_is_exported() {
    let queries = queries(&dashboard());
    let plotted: BTreeSet<&str> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert!(plotted.len() >= 20, "the dashboard plots only {plotted:?}");
    let app = spawn_with(Db::Sqlite, |s| s.allowed_origins = vec!["https://app.example".into()]).await;
    exercise(&app).await;
    let exposition = app.get("/metrics").await.1;
    assert!(exposition.contains(r#"switchboard_connections{node=""#), "no node label:\n{exposition}");
    let node = families(&exposition);
    let complete = every_family_rendered();
    for name in &plotted {
        assert!(
            renders(&node, name) || renders(&complete, name),
            "the dashboard plots {name}, which a node does not export:\n{exposition}"
        );
    }
    // Only the webhook families, with webhooks off, wait for a child on a node that has chatted.
    let unseen: Vec<&&str> = plotted.iter().filter(|name| !renders(&node, name)).collect();
    assert!(unseen.iter().all(|name| name.starts_with("switchboard_webhook_")), "not on the node: {unseen:?}");
    app.stop().await;
}
