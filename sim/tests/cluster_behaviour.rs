#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cluster behaviour on the simulated playground: scheduling, StatefulSets, kubelet,
//! cordon, node crash and recovery, CronJobs.

use std::time::Duration;

use bloodraven_sim::apiserver::{ApiServer, Caller, ListQuery, Patch, ResourceKey, Subresource};
use bloodraven_sim::programs::ECHO_IMAGE;
use bloodraven_sim::{Fault, World};
use serde_json::{Value, json};

const NS: &str = "default";

fn pods() -> ResourceKey {
    ResourceKey::core("v1", "pods")
}

fn who() -> Caller<'static> {
    Caller { user_agent: "test" }
}

fn create(api: &ApiServer, key: ResourceKey, obj: Value) -> Value {
    api.create(&key, Some(NS), obj, &who()).unwrap()
}

fn pod(api: &ApiServer, name: &str) -> Option<Value> {
    api.get(&pods(), Some(NS), name).ok()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn set_ready(api: &ApiServer, name: &str, replicas: u64) -> bool {
    api.get(
        &ResourceKey::new("apps", "v1", "statefulsets"),
        Some(NS),
        name,
    )
    .is_ok_and(|s| s["status"]["readyReplicas"] == replicas && s["status"]["replicas"] == replicas)
}

fn statefulset(name: &str, replicas: u32, site: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"topology.kubernetes.io/zone": format!("zone-{site}")},
                    "containers": [{"name": "main", "image": image, "env": [{"name": "PORT", "value": "7000"}]}]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    })
}

#[test]
fn statefulset_pods_run_on_their_site_and_become_ready() {
    let mut world = World::playground(1).unwrap();
    let api = world.api().clone();
    create(
        &api,
        ResourceKey::new("apps", "v1", "statefulsets"),
        statefulset("web", 2, "iad", &format!("{ECHO_IMAGE}:1")),
    );
    let ok = world.run_until(Duration::from_secs(30), |w| set_ready(w.api(), "web", 2));
    assert!(ok.unwrap(), "pods not ready:\n{}", world.event_trace());
    let web0 = pod(&api, "web-0").unwrap();
    assert_eq!(web0["spec"]["nodeName"], "bloodraven-iad");
    assert!(
        web0["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("192.168.")),
        "{web0}"
    );
    assert_eq!(
        web0["status"]["containerStatuses"][0]["image"],
        format!("{ECHO_IMAGE}:1")
    );
    let pvc = api
        .get(
            &ResourceKey::core("v1", "persistentvolumeclaims"),
            Some(NS),
            "data-web-0",
        )
        .unwrap();
    assert_eq!(pvc["status"]["phase"], "Bound");
    let trace = world.event_trace();
    for expected in [
        "Normal Scheduled Pod/default/web-0: Successfully assigned default/web-0 to bloodraven-iad",
        "Normal Started Pod/default/web-1: Started container main",
        "SuccessfulCreate StatefulSet/default/web: create Claim data-web-1 Pod web-1",
    ] {
        assert!(trace.contains(expected), "missing {expected:?} in\n{trace}");
    }
}

fn sts_key() -> ResourceKey {
    ResourceKey::new("apps", "v1", "statefulsets")
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn started_world(seed: u64, replicas: u32) -> World {
    let mut world = World::playground(seed).unwrap();
    let api = world.api().clone();
    create(
        &api,
        sts_key(),
        statefulset("web", replicas, "iad", &format!("{ECHO_IMAGE}:1")),
    );
    assert!(
        world
            .run_until(Duration::from_secs(60), |w| set_ready(
                w.api(),
                "web",
                u64::from(replicas)
            ))
            .unwrap()
    );
    world
}

#[test]
fn cordoned_node_leaves_new_pods_pending_with_a_reason() {
    let mut world = started_world(2, 1);
    let api = world.api().clone();
    let node = world.site_node("iad").unwrap().to_string();
    world.apply(Fault::Cordon(node.clone())).unwrap();
    api.delete(&pods(), Some(NS), "web-0", &who()).unwrap();
    let pending = world.run_until(Duration::from_secs(10), |w| {
        pod(w.api(), "web-0")
            .is_some_and(|p| condition(&p, "PodScheduled").is_some_and(|c| c["status"] == "False"))
    });
    assert!(pending.unwrap(), "{}", world.event_trace());
    let waiting = pod(&api, "web-0").unwrap();
    assert_eq!(waiting["status"]["phase"], "Pending");
    let scheduled = condition(&waiting, "PodScheduled").unwrap();
    assert_eq!(scheduled["reason"], "Unschedulable");
    let message = scheduled["message"].as_str().unwrap();
    assert!(message.starts_with("0/3 nodes are available:"), "{message}");
    assert!(
        message.contains("1 node(s) were unschedulable"),
        "{message}"
    );
    assert!(
        message.contains("2 node(s) didn't match Pod's node affinity/selector"),
        "{message}"
    );
    assert!(
        world
            .event_trace()
            .contains("Warning FailedScheduling Pod/default/web-0: 0/3 nodes are available")
    );
    let node_obj = api
        .get(&ResourceKey::core("v1", "nodes"), None, &node)
        .unwrap();
    assert!(
        node_obj["spec"]["taints"]
            .to_string()
            .contains("node.kubernetes.io/unschedulable"),
        "{node_obj}"
    );

    world.apply(Fault::Uncordon(node)).unwrap();
    assert!(
        world
            .run_until(Duration::from_secs(30), |w| set_ready(w.api(), "web", 1))
            .unwrap()
    );
}

#[test]
fn node_crash_marks_node_not_ready_and_recovery_restarts_pods() {
    let mut world = started_world(3, 1);
    let api = world.api().clone();
    let node = world.site_node("iad").unwrap().to_string();
    let host = bloodraven_sim::hosts::pod_host_name(NS, "web-0");
    assert!(world.network().is_running(&host));
    world.apply(Fault::CrashNode(node.clone())).unwrap();
    assert!(
        !world.network().is_running(&host),
        "pod host must crash with its node"
    );
    // Nothing changes before the node monitor grace period (40 s) ...
    world.run_for(Duration::from_secs(30)).unwrap();
    let node_obj = api
        .get(&ResourceKey::core("v1", "nodes"), None, &node)
        .unwrap();
    assert_eq!(condition(&node_obj, "Ready").unwrap()["status"], "True");
    // ... then the node is Unknown, tainted, and its pod is not ready.
    world.run_for(Duration::from_secs(15)).unwrap();
    let node_obj = api
        .get(&ResourceKey::core("v1", "nodes"), None, &node)
        .unwrap();
    assert_eq!(
        condition(&node_obj, "Ready").unwrap()["status"],
        "Unknown",
        "{node_obj}"
    );
    assert!(
        node_obj["spec"]["taints"]
            .to_string()
            .contains("node.kubernetes.io/unreachable")
    );
    let web0 = pod(&api, "web-0").unwrap();
    assert_eq!(condition(&web0, "Ready").unwrap()["status"], "False");

    world.apply(Fault::RecoverNode(node.clone())).unwrap();
    assert!(
        world.network().is_running(&host),
        "pod host restarts with its node"
    );
    assert!(
        world
            .run_until(Duration::from_secs(30), |w| pod(w.api(), "web-0")
                .is_some_and(|p| ready(&p)))
            .unwrap()
    );
    let web0 = pod(&api, "web-0").unwrap();
    assert_eq!(
        web0["status"]["containerStatuses"][0]["restartCount"], 1,
        "{web0}"
    );
    assert_eq!(
        web0["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"],
        "Unknown"
    );
    let node_obj = api
        .get(&ResourceKey::core("v1", "nodes"), None, &node)
        .unwrap();
    assert_eq!(condition(&node_obj, "Ready").unwrap()["status"], "True");
    assert!(
        !node_obj["spec"]["taints"]
            .to_string()
            .contains("unreachable")
    );
}

#[test]
fn statefulset_rolls_one_pod_at_a_time_highest_ordinal_first() {
    let mut world = started_world(4, 3);
    let api = world.api().clone();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": format!("{ECHO_IMAGE}:2"), "env": [{"name": "PORT", "value": "7000"}]}]}}}});
    api.patch(
        &sts_key(),
        Some(NS),
        "web",
        Patch::Merge(patch),
        Subresource::Main,
        &who(),
    )
    .unwrap();
    let mut max_not_ready = 0;
    let done = world.run_until(Duration::from_secs(120), |w| {
        let list = w
            .api()
            .list(&pods(), Some(NS), &ListQuery::default())
            .unwrap()
            .items;
        max_not_ready = max_not_ready.max(3 - list.iter().filter(|p| ready(p)).count());
        let set = w.api().get(&sts_key(), Some(NS), "web").unwrap();
        set["status"]["observedGeneration"] == 2
            && set["status"]["currentRevision"] == set["status"]["updateRevision"]
            && set["status"]["updatedReplicas"] == 3
            && set["status"]["readyReplicas"] == 3
    });
    assert!(done.unwrap(), "{}", world.event_trace());
    assert_eq!(
        max_not_ready, 1,
        "rolling update must replace one pod at a time"
    );
    let trace = world.event_trace();
    let order: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("SuccessfulDelete"))
        .collect();
    assert_eq!(order.len(), 3, "{trace}");
    for (line, pod) in order.iter().zip(["web-2", "web-1", "web-0"]) {
        assert!(
            line.contains(&format!("delete Pod {pod} ")),
            "order {order:?}"
        );
    }
    for name in ["web-0", "web-1", "web-2"] {
        assert_eq!(
            pod(&api, name).unwrap()["spec"]["containers"][0]["image"],
            format!("{ECHO_IMAGE}:2")
        );
    }
}

#[test]
fn missing_image_is_visible_as_image_pull_back_off() {
    let mut world = World::playground(5).unwrap();
    let api = world.api().clone();
    create(
        &api,
        pods(),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lost", "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "registry.example/unknown:1"}]}}),
    );
    let pulling = world.run_until(Duration::from_secs(5), |w| {
        pod(w.api(), "lost").is_some_and(|p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
        })
    });
    assert!(pulling.unwrap(), "{:?}", pod(&api, "lost"));
    let backing_off = world.run_until(Duration::from_secs(30), |w| {
        pod(w.api(), "lost").is_some_and(|p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
        })
    });
    assert!(backing_off.unwrap(), "{:?}", pod(&api, "lost"));
    assert_eq!(pod(&api, "lost").unwrap()["status"]["phase"], "Pending");
    let trace = world.event_trace();
    assert!(
        trace.contains(
            "Warning Failed Pod/default/lost: Failed to pull image \"registry.example/unknown:1\""
        ),
        "{trace}"
    );
    assert!(
        trace.contains("Warning BackOff Pod/default/lost: Back-off pulling image"),
        "{trace}"
    );
}

#[test]
fn cronjob_fires_on_simulated_time_and_keeps_history() {
    let mut world = World::playground(6).unwrap();
    let api = world.api().clone();
    create(
        &api,
        ResourceKey::new("batch", "v1", "cronjobs"),
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": NS},
            "spec": {"schedule": "*/2 * * * *", "successfulJobsHistoryLimit": 2, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": bloodraven_sim::programs::JOB_IMAGE, "args": ["5"]}]}}}}}
        }),
    );
    world.run_for(Duration::from_secs(7 * 60 + 30)).unwrap();
    let jobs = api
        .list(
            &ResourceKey::new("batch", "v1", "jobs"),
            Some(NS),
            &ListQuery::default(),
        )
        .unwrap()
        .items;
    let names: Vec<&str> = jobs
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap())
        .collect();
    // Runs at 00:02, 00:04 and 00:06 (epoch 2025-01-01T00:00Z); history keeps the last two.
    let minute = 1_735_689_600 / 60;
    assert_eq!(
        names,
        vec![
            format!("tick-{}", minute + 4),
            format!("tick-{}", minute + 6)
        ]
    );
    for job in &jobs {
        assert!(
            job["status"]["conditions"]
                .to_string()
                .contains("\"Complete\""),
            "{job}"
        );
        assert_eq!(job["status"]["succeeded"], 1);
    }
    let cron = api
        .get(
            &ResourceKey::new("batch", "v1", "cronjobs"),
            Some(NS),
            "tick",
        )
        .unwrap();
    assert_eq!(cron["status"]["lastScheduleTime"], "2025-01-01T00:06:00Z");
    let trace = world.event_trace();
    assert_eq!(
        trace
            .matches("Normal SuccessfulCreate CronJob/default/tick: Created job")
            .count(),
        3,
        "{trace}"
    );
    assert!(
        trace.contains(&format!(
            "SuccessfulDelete CronJob/default/tick: Deleted job tick-{}",
            minute + 2
        )),
        "{trace}"
    );
}

/// Counts its own starts on the `data` volume and publishes the count it saw.
struct CountStarts(std::sync::Arc<std::sync::Mutex<Vec<u64>>>);

#[derive(Default)]
struct StartCounter(std::sync::atomic::AtomicU64);

impl bloodraven_sim::pod::PodProgram for CountStarts {
    fn run(&self, ctx: bloodraven_sim::pod::PodContext) -> bloodraven_sim::pod::ProgramFuture {
        let seen = self.0.clone();
        Box::pin(async move {
            let counter = ctx
                .volumes
                .get("data")
                .expect("data volume")
                .get_or_init(StartCounter::default);
            let count = counter.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            seen.lock().unwrap().push(count);
            ctx.ready.set(true);
            std::future::pending::<()>().await;
            Ok(())
        })
    }
}

#[test]
fn pvc_outlives_its_pod_and_a_new_claim_is_a_fresh_disk() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut builder = bloodraven_sim::WorldBuilder::new(7);
    builder.images_mut().register(
        "counter",
        CountStarts(seen.clone()),
        bloodraven_sim::StartupProfile::default(),
    );
    let mut world = builder.build().unwrap();
    let api = world.api().clone();
    create(&api, sts_key(), statefulset("db", 1, "pdx", "counter:1"));
    assert!(
        world
            .run_until(Duration::from_secs(30), |w| set_ready(w.api(), "db", 1))
            .unwrap()
    );
    let first_uid = pod(&api, "db-0").unwrap()["metadata"]["uid"].clone();
    api.delete(&pods(), Some(NS), "db-0", &who()).unwrap();
    assert!(
        world
            .run_until(Duration::from_secs(30), |w| {
                pod(w.api(), "db-0").is_some_and(|p| p["metadata"]["uid"] != first_uid && ready(&p))
            })
            .unwrap()
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 2],
        "the recreated pod must see the same disk"
    );
    let trace = world.event_trace();
    assert!(
        trace.contains("Normal Killing Pod/default/db-0: Stopping container main"),
        "{trace}"
    );

    // Deleting the claim (and the pod) provisions a fresh, empty disk.
    api.delete(
        &ResourceKey::core("v1", "persistentvolumeclaims"),
        Some(NS),
        "data-db-0",
        &who(),
    )
    .unwrap();
    api.delete(&pods(), Some(NS), "db-0", &who()).unwrap();
    assert!(
        world
            .run_until(Duration::from_secs(30), |w| seen.lock().unwrap().len() == 3
                && set_ready(w.api(), "db", 1))
            .unwrap(),
        "{}",
        world.event_trace()
    );
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 1]);
}

/// A short scenario exercising scheduling, start-up jitter, a node crash and a CronJob.
fn scenario_trace(seed: u64) -> String {
    let mut world = World::playground(seed).unwrap();
    let api = world.api().clone();
    create(
        &api,
        sts_key(),
        statefulset("web", 2, "iad", &format!("{ECHO_IMAGE}:1")),
    );
    create(
        &api,
        ResourceKey::new("apps", "v1", "deployments"),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": NS},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "app"}}, "template": {"metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "c", "image": ECHO_IMAGE}]}}}
        }),
    );
    world.run_for(Duration::from_secs(20)).unwrap();
    let node = world.site_node("iad").unwrap().to_string();
    world.apply(Fault::CrashNode(node.clone())).unwrap();
    world.run_for(Duration::from_secs(50)).unwrap();
    world.apply(Fault::RecoverNode(node)).unwrap();
    world.run_for(Duration::from_secs(20)).unwrap();
    world.event_trace()
}

#[test]
fn same_seed_gives_an_identical_event_trace_and_another_seed_does_not() {
    let first = scenario_trace(42);
    let again = scenario_trace(42);
    let other = scenario_trace(43);
    assert!(first.lines().count() > 20, "{first}");
    assert_eq!(first, again, "same seed, different trace");
    assert_ne!(
        first, other,
        "a different seed should change pod names and scheduling"
    );
}

#[test]
fn cluster_dns_reaches_ready_endpoints_and_refuses_without_them() {
    use bloodraven_sim::dialer::ClusterDialer;
    use bloodraven_sim::pod::Dialer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut world = started_world(8, 1);
    let api = world.api().clone();
    create(
        &api,
        ResourceKey::core("v1", "services"),
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": NS}, "spec": {"selector": {"app": "web"}, "ports": [{"name": "echo", "port": 80, "targetPort": 7000}]}}),
    );
    create(
        &api,
        ResourceKey::core("v1", "services"),
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "nobody", "namespace": NS}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}),
    );
    world.run_for(Duration::from_secs(1)).unwrap();
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = results.clone();
    let dialer = ClusterDialer::new(api.clone(), NS, "client", Duration::from_secs(1));
    world.add_client(
        "client",
        bloodraven_sim::Placement::Site("pdx".to_string()),
        async move {
            for name in [
                "web",
                "web.default.svc.cluster.local",
                "web-0.web.default.svc.cluster.local",
            ] {
                let port = if name.starts_with("web-0") { 7000 } else { 80 };
                let mut stream = dialer.dial(name, port).await?;
                stream.write_all(b"ping").await?;
                let mut buf = [0_u8; 4];
                stream.read_exact(&mut buf).await?;
                out.lock()
                    .unwrap()
                    .push(format!("{name}: {}", String::from_utf8_lossy(&buf)));
            }
            let refused = dialer
                .dial("nobody", 80)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            out.lock().unwrap().push(format!("nobody: {refused}"));
            Ok(())
        },
    );
    world.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(
        *results.lock().unwrap(),
        vec![
            "web: ping".to_string(),
            "web.default.svc.cluster.local: ping".to_string(),
            "web-0.web.default.svc.cluster.local: ping".to_string(),
            "nobody: service default/nobody has no ready endpoints".to_string(),
        ]
    );
}

/// Counts, per container, the seconds its program has been running (polled).
#[derive(Clone, Default)]
struct Ticker(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>);

impl bloodraven_sim::pod::PodProgram for Ticker {
    fn run(&self, ctx: bloodraven_sim::pod::PodContext) -> bloodraven_sim::pod::ProgramFuture {
        let ticks = self.0.clone();
        Box::pin(async move {
            ctx.ready.set(true);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                *ticks
                    .lock()
                    .unwrap()
                    .entry(ctx.container.clone())
                    .or_default() += 1;
            }
        })
    }
}

#[test]
fn a_frozen_container_stops_where_it_is_and_its_neighbour_runs_on() {
    let ticker = Ticker::default();
    let mut builder = bloodraven_sim::WorldBuilder::new(3);
    builder.images_mut().register(
        "ticker",
        ticker.clone(),
        bloodraven_sim::StartupProfile::default(),
    );
    let mut world = builder.build().unwrap();
    let api = world.api().clone();
    create(
        &api,
        pods(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "two", "namespace": NS},
            "spec": {"containers": [
                {"name": "main", "image": "ticker:1"},
                {"name": "sidecar", "image": "ticker:1"}
            ]}
        }),
    );
    assert!(
        world
            .run_until(Duration::from_secs(30), |w| pod(w.api(), "two")
                .is_some_and(|p| ready(&p)))
            .unwrap()
    );
    world.run_for(Duration::from_secs(3)).unwrap();
    let count = |c: &str| ticker.0.lock().unwrap().get(c).copied().unwrap_or(0);
    assert!(count("sidecar") >= 2, "{:?}", ticker.0.lock().unwrap());

    let freeze = |frozen: bool| {
        let (namespace, pod, container) =
            (NS.to_string(), "two".to_string(), "sidecar".to_string());
        if frozen {
            Fault::FreezeContainer {
                namespace,
                pod,
                container,
            }
        } else {
            Fault::ThawContainer {
                namespace,
                pod,
                container,
            }
        }
    };
    world.apply(freeze(true)).unwrap();
    let (main_before, sidecar_before) = (count("main"), count("sidecar"));
    world.run_for(Duration::from_secs(10)).unwrap();
    assert_eq!(
        count("sidecar"),
        sidecar_before,
        "a frozen program must not run"
    );
    assert!(
        count("main") >= main_before + 9,
        "the other container runs on"
    );
    // Frozen is not dead: the pod stays Running and Ready, no restart.
    let p = pod(&api, "two").unwrap();
    assert!(ready(&p), "{p}");
    assert_eq!(p["status"]["containerStatuses"][1]["restartCount"], 0);

    world.apply(freeze(false)).unwrap();
    world.run_for(Duration::from_secs(3)).unwrap();
    assert!(count("sidecar") > sidecar_before, "thawed, it runs again");

    let unknown = world
        .apply(Fault::FreezeContainer {
            namespace: NS.into(),
            pod: "two".into(),
            container: "nope".into(),
        })
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "cannot freeze or thaw a container: pod default/two has no container \"nope\" (containers: main, sidecar)"
    );
    let no_pod = world
        .apply(Fault::ThawContainer {
            namespace: NS.into(),
            pod: "gone".into(),
            container: "main".into(),
        })
        .unwrap_err();
    assert_eq!(
        no_pod.to_string(),
        "cannot freeze or thaw a container: no pod default/gone runs on any node"
    );
}
