//! The Azure Storage backend against Azurite: end-to-end runs, and layout fidelity with the
//! Durable Task Framework (rows, messages, blobs exactly as `spec/azure-storage-taskhub.md`).
//! Needs Azurite (`./scripts/test.sh` starts it); fails, never skips, without it.

#![cfg(feature = "azure")]

mod azure;

use std::time::Duration;

use azure::{finish, fresh_hub, runtime, store, store_with};
use serde_json::{json, Value};
use taskhub::engine::{ActivityContext, OrchestrationContext, Registry};
use taskhub::model::{new_guid_n, EventKind, InstanceId, RuntimeStatus};
use taskhub::samples;
use taskhub::store::azure::entities::Entity;
use taskhub::store::azure::keys::{control_queue_name, escape_partition_key, partition_index};
use taskhub::store::azure::messages::{self, Encoding, Parsed};
use taskhub::store::azure::AzureOptions;
use taskhub::store::{InstanceFilter, InstanceQuery, NewInstance, ReusePolicy, Store};

/// The shared store conformance suite, one test per check, each on fresh hubs in Azurite.
async fn azure_factory() -> taskhub::store::conformance::Factory {
    azure::require_azurite();
    std::sync::Arc::new(|hub: String| {
        Box::pin(async move {
            taskhub::store::azure::AzureStore::open(azure::CONN, &hub, AzureOptions::default())
                .unwrap() as std::sync::Arc<dyn Store>
        })
    })
}

taskhub::store_conformance_tests!(azure_factory);

fn new_instance(id: &str, name: &str, input: Option<&str>) -> NewInstance {
    NewInstance {
        instance_id: InstanceId::parse(id).unwrap(),
        name: name.into(),
        version: String::new(),
        execution_id: new_guid_n(),
        input: input.map(str::to_string),
        created_time: chrono::Utc::now(),
        scheduled_start_time: None,
        parent: None,
        tags: Default::default(),
    }
}

fn str_of<'a>(e: &'a Entity, k: &str) -> &'a str {
    e.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("column {k} missing in {e:?}"))
}

/// An instance's raw History rows (every execution, sentinel last).
async fn history_rows(s: &taskhub::store::azure::AzureStore, id: &str) -> Vec<Entity> {
    let pk = escape_partition_key(id);
    s.hub_resources()
        .history
        .query(Some(format!("PartitionKey eq '{pk}'")), None)
        .await
        .unwrap()
}

/// The reasons of the `GenericEvent` rows a rewind left ("Rewound: …").
fn rewound_reasons(rows: &[Entity]) -> Vec<&str> {
    rows.iter()
        .filter(|r| r.get("EventType") == Some(&json!("GenericEvent")))
        .filter_map(|r| r.get("Reason").and_then(Value::as_str))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_sequence_runs_and_history_has_dtfx_rows() {
    let hub = fresh_hub();
    let (rt, client) = runtime(&hub, samples::registry(), true, &[]);
    let id = client
        .start("HelloSequence", None, Value::Null)
        .await
        .unwrap();
    let status = finish(&client, id.as_str(), 60).await;
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    let out: Value = serde_json::from_str(status.output.as_deref().unwrap()).unwrap();
    assert_eq!(
        out,
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );

    let history = client.history(id.as_str()).await.unwrap();
    assert!(matches!(
        history[0].kind,
        EventKind::OrchestratorStarted | EventKind::ExecutionStarted { .. }
    ));
    let scheduled = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TaskScheduled { .. }))
        .count();
    assert_eq!(scheduled, 3);

    // Raw rows: hex RowKeys from 0, the sentinel with typed checkpoint columns.
    let s = store(&hub);
    let rows = history_rows(&s, id.as_str()).await;
    assert_eq!(str_of(&rows[0], "RowKey"), "0000000000000000");
    let sentinel = rows.last().unwrap();
    assert_eq!(str_of(sentinel, "RowKey"), "sentinel");
    assert_eq!(sentinel["IsCheckpointComplete"], json!(true));
    assert_eq!(
        sentinel["CheckpointCompletedTimestamp@odata.type"],
        json!("Edm.DateTime")
    );
    assert_eq!(str_of(sentinel, "ExecutionId"), status.execution_id);
    for r in &rows[..rows.len() - 1] {
        assert_eq!(r["_Timestamp@odata.type"], json!("Edm.DateTime"));
        assert!(r["EventId"].is_i64(), "EventId is Int32: {r:?}");
        assert_eq!(str_of(r, "ExecutionId"), status.execution_id);
    }
    let completed = rows
        .iter()
        .find(|r| r.get("EventType") == Some(&json!("ExecutionCompleted")))
        .unwrap();
    assert_eq!(str_of(completed, "OrchestrationStatus"), "Completed");

    // The Instances row after the worker's checkpoint.
    let row = s
        .hub_resources()
        .read_row(id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(str_of(&row, "RuntimeStatus"), "Completed");
    assert_eq!(row["CompletedTime@odata.type"], json!("Edm.DateTime"));
    assert_eq!(str_of(&row, "CustomStatus"), "null");
    assert_eq!(str_of(&row, "TaskHubName"), hub);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_start_writes_the_spec_row_and_message_and_no_lease_state() {
    let hub = fresh_hub();
    let s = store(&hub);
    let id = "order 42 o'neil ^#?";
    let bad = InstanceId::parse(id);
    // '#' and '?' are rejected at the edge; the escaping still covers ids DTFx apps create.
    assert!(bad.is_err());
    let id = "order 42 o'neil ^x";
    let new = new_instance(id, "ProcessOrder", Some("{\"id\":42}"));
    s.create_instance(new.clone(), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();

    let h = s.hub_resources();
    let row = h.read_row(id).await.unwrap().expect("Pending row");
    assert_eq!(str_of(&row, "PartitionKey"), "order 42 o'neil ^^x");
    assert_eq!(str_of(&row, "RowKey"), "");
    assert_eq!(str_of(&row, "RuntimeStatus"), "Pending");
    assert_eq!(str_of(&row, "Name"), "ProcessOrder");
    assert_eq!(str_of(&row, "Version"), "");
    assert_eq!(str_of(&row, "Input"), "{\"id\":42}");
    assert_eq!(str_of(&row, "ExecutionId"), new.execution_id);
    assert_eq!(row["Generation"], json!(0));
    assert_eq!(row["CreatedTime@odata.type"], json!("Edm.DateTime"));
    assert_eq!(row["LastUpdatedTime@odata.type"], json!("Edm.DateTime"));
    assert!(!row.contains_key("CompletedTime"));
    assert!(!row.contains_key("CustomStatus"));

    // The start message sits in the FNV-1a-chosen control queue, DTFx-shaped.
    let p = partition_index(id, 4);
    let q = h.control_queue(p);
    assert_eq!(q.name(), control_queue_name(&hub, p));
    let got = q.get(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    let text = &got[0].text;
    assert!(
        text.starts_with("{\"$type\":\"DurableTask.AzureStorage.MessageData\""),
        "{text}"
    );
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        v["TaskMessage"]["Event"]["$type"],
        "DurableTask.Core.History.ExecutionStartedEvent"
    );
    assert_eq!(v["TaskMessage"]["Event"]["EventType"], 0);
    assert_eq!(
        v["TaskMessage"]["Event"]["Timestamp"]
            .as_str()
            .unwrap()
            .len(),
        28
    );
    assert_eq!(
        v["TaskMessage"]["OrchestrationInstance"]["ExecutionId"],
        json!(new.execution_id)
    );
    assert_eq!(v["Sender"], json!({"InstanceId": "", "ExecutionId": ""}));
    assert!(v.get("Episode").is_none());
    // Row and message agree, as the DTFx worker's start de-dupe requires.
    assert_eq!(
        dtfx_time(&v["TaskMessage"]["Event"]["Timestamp"]),
        dtfx_time(&row["CreatedTime"])
    );

    // A second start of a non-terminal instance is refused.
    let again = s
        .create_instance(
            new_instance(id, "ProcessOrder", None),
            ReusePolicy::ReplaceTerminal,
        )
        .await;
    assert!(
        matches!(again, Err(taskhub::store::StoreError::AlreadyExists { .. })),
        "{again:?}"
    );

    // Management never creates partition rows or taskhub.json.
    assert!(h.partitions.query(None, None).await.unwrap().is_empty());
    assert_eq!(
        h.leases_container.read_plain("taskhub.json").await.unwrap(),
        None
    );
}

fn dtfx_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    taskhub::store::azure::dtfx::parse_time(v.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_encoding_is_written_when_configured_and_both_are_read() {
    let hub = fresh_hub();
    let opts = AzureOptions {
        encoding: Encoding::Base64,
        ..AzureOptions::default()
    };
    let s = store_with(&hub, opts);
    s.create_instance(
        new_instance("b64", "HelloSequence", None),
        ReusePolicy::ReplaceTerminal,
    )
    .await
    .unwrap();
    let h = s.hub_resources();
    let q = h.control_queue(partition_index("b64", 4));
    let got = q.get(1, Duration::from_secs(1)).await.unwrap();
    assert!(
        !got[0].text.starts_with('{'),
        "base64 expected: {}",
        got[0].text
    );
    let decoded = messages::decode_body(&got[0].text).unwrap();
    assert!(decoded.starts_with("{\"$type\":\"DurableTask.AzureStorage.MessageData\""));
    let m = h.decode(&got[0]).await.unwrap();
    assert_eq!(m.instance_id, "b64");
    // The same message as raw UTF-8 reads the same.
    q.put(decoded.clone(), Duration::ZERO).await.unwrap();
    let raw = q.get(1, Duration::from_secs(30)).await.unwrap();
    assert!(raw[0].text.starts_with('{'));
    assert_eq!(h.decode(&raw[0]).await.unwrap().event, m.event);
}

/// Rows and a message exactly as a DTFx worker and client write them (spec §2-§4), built by
/// hand; taskhub must read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtfx_written_rows_and_messages_are_read() {
    let hub = fresh_hub();
    let s = store(&hub);
    s.create_hub().await.unwrap();
    let h = s.hub_resources();
    let id = "dtfx/1"; // '/' is escaped as ^0 in keys
    let pk = "dtfx^01";
    let exec = "0f8fad5bd9cb469fa16570867728950e";
    let t = |s: &str| json!(s);
    let row = |v: Value| -> Entity { v.as_object().unwrap().clone() };
    h.instances
        .insert(&row(json!({
            "PartitionKey": pk, "RowKey": "",
            "Name": "ProcessOrder", "Version": "", "ExecutionId": exec,
            "RuntimeStatus": "Completed",
            "CreatedTime@odata.type": "Edm.DateTime", "CreatedTime": "2025-01-02T03:04:05.1234567Z",
            "LastUpdatedTime@odata.type": "Edm.DateTime", "LastUpdatedTime": "2025-01-02T03:04:07Z",
            "CompletedTime@odata.type": "Edm.DateTime", "CompletedTime": "2025-01-02T03:04:07Z",
            "Input": "{\"id\":42}", "Output": "\"Hello\"", "CustomStatus": "null",
            "Generation": 0, "Tags": "null", "TaskHubName": hub
        })))
        .await
        .unwrap();
    let ts = |v: &str| {
        [
            ("_Timestamp@odata.type", t("Edm.DateTime")),
            ("_Timestamp", t(v)),
        ]
    };
    let mut events = [
        json!({"EventType": "OrchestratorStarted", "EventId": -1, "IsPlayed": false}),
        json!({"EventType": "ExecutionStarted", "EventId": -1, "IsPlayed": false,
               "OrchestrationInstance": format!("{{\"InstanceId\":\"{id}\",\"ExecutionId\":\"{exec}\"}}"),
               "ParentInstance": "null", "Name": "ProcessOrder", "Version": "", "Input": "{\"id\":42}",
               "Tags": "null", "Generation": 0, "GenerateNewTrace": false}),
        json!({"EventType": "TaskScheduled", "EventId": 0, "IsPlayed": false, "Name": "SayHello", "Version": ""}),
        json!({"EventType": "OrchestratorCompleted", "EventId": -1, "IsPlayed": false}),
        // v1 omitted null object columns; a v1 row has no FailureDetails at all.
        json!({"EventType": "TaskCompleted", "EventId": -1, "IsPlayed": false, "TaskScheduledId": 0, "Result": "\"Hello\""}),
        json!({"EventType": "ExecutionCompleted", "EventId": 1, "IsPlayed": false,
               "OrchestrationStatus": "Completed", "Result": "\"Hello\"", "FailureDetails": "null"}),
    ];
    for (n, e) in events.iter_mut().enumerate() {
        let o = e.as_object_mut().unwrap();
        o.insert("PartitionKey".into(), t(pk));
        o.insert("RowKey".into(), json!(format!("{n:016X}")));
        o.insert("ExecutionId".into(), t(exec));
        for (k, v) in ts("2025-01-02T03:04:06.5Z") {
            o.insert(k.into(), v);
        }
        h.history.insert(o).await.unwrap();
    }
    // A leftover row of an older execution past the tail must be ignored.
    h.history
        .insert(&row(
            json!({"PartitionKey": pk, "RowKey": format!("{:016X}", 6), "ExecutionId": "old",
            "EventType": "OrchestratorStarted", "EventId": -1, "IsPlayed": false}),
        ))
        .await
        .unwrap();
    h.history
        .insert(&row(
            json!({"PartitionKey": pk, "RowKey": "sentinel", "ExecutionId": exec,
            "IsCheckpointComplete": true,
            "CheckpointCompletedTimestamp@odata.type": "Edm.DateTime",
            "CheckpointCompletedTimestamp": "2025-01-02T03:04:07Z"}),
        ))
        .await
        .unwrap();

    let rec = s.get_instance(id).await.unwrap().unwrap();
    assert_eq!(rec.instance_id, id);
    assert_eq!(rec.runtime_status, RuntimeStatus::Completed);
    assert_eq!(rec.output.as_deref(), Some("\"Hello\""));
    assert_eq!(rec.custom_status, None);
    assert_eq!(
        rec.created_time.to_rfc3339(),
        "2025-01-02T03:04:05.123456700+00:00"
    );
    let hist = s.get_history(id).await.unwrap();
    assert_eq!(hist.len(), 6);
    assert!(
        matches!(&hist[1].kind, EventKind::ExecutionStarted { execution_id, .. } if execution_id == exec)
    );
    assert!(matches!(
        &hist[5].kind,
        EventKind::ExecutionCompleted {
            failure_details: None,
            ..
        }
    ));

    // The spec's example start message, as a DTFx client enqueues it.
    let text = r#"{"$type":"DurableTask.AzureStorage.MessageData","ActivityId":"5c1f0e3a-9a6b-4f6e-8d7e-2d1b0c9a8f11","TaskMessage":{"$type":"DurableTask.Core.TaskMessage","Event":{"$type":"DurableTask.Core.History.ExecutionStartedEvent","OrchestrationInstance":{"$type":"DurableTask.Core.OrchestrationInstance","InstanceId":"order-42","ExecutionId":"0f8fad5bd9cb469fa16570867728950e"},"EventType":0,"ParentInstance":null,"Name":"ProcessOrder","Version":"","Input":"{\"id\":42}","Tags":null,"Correlation":null,"ParentTraceContext":null,"ScheduledStartTime":null,"Generation":0,"GenerateNewTrace":false,"EventId":-1,"IsPlayed":false,"Timestamp":"2025-01-02T03:04:05.1234567Z"},"SequenceNumber":0,"OrchestrationInstance":{"$type":"DurableTask.Core.OrchestrationInstance","InstanceId":"order-42","ExecutionId":"0f8fad5bd9cb469fa16570867728950e"},"OrchestrationExecutionContext":null},"CompressedBlobName":null,"SequenceNumber":1,"Sender":{"InstanceId":"","ExecutionId":""},"SerializableTraceContext":null}"#;
    let Parsed::Message(m) = messages::parse(text).unwrap() else {
        panic!()
    };
    assert_eq!(m.instance_id, "order-42");
    assert_eq!(m.execution_id.as_deref(), Some(exec));
    assert!(
        matches!(&m.event.kind, EventKind::ExecutionStarted { name, input: Some(i), .. } if name == "ProcessOrder" && i == "{\"id\":42}")
    );
    // And what taskhub writes for the same start is the same JSON but for ids and times.
    let ours = messages::MessageData {
        activity_id: m.activity_id,
        ..(*m).clone()
    }
    .to_json();
    assert_eq!(
        serde_json::from_str::<Value>(&ours).unwrap(),
        serde_json::from_str::<Value>(text).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_inputs_and_results_go_to_gzip_blobs_and_come_back() {
    let hub = fresh_hub();
    let registry = || {
        let mut reg = Registry::new();
        reg.orchestrator("Big", |ctx: OrchestrationContext| async move {
            let input: String = ctx.input()?;
            let r = ctx.call_activity("Double", input).await?;
            Ok(r)
        })
        .activity("Double", |ctx: ActivityContext| async move {
            let s: String = ctx.input()?;
            Ok(json!(format!("{s}{s}")))
        });
        reg
    };
    // 80 KB of UTF-8, 40,000 UTF-16 units.
    let big = "é".repeat(40_000);
    // Started without an executor, so that the row is read before the first episode rewrites it.
    let (starter_rt, starter) = runtime(&hub, registry(), false, &[]);
    let id = starter.start("Big", None, json!(big)).await.unwrap();
    // The client row references the start message blob by URL.
    let s = store(&hub);
    let h = s.hub_resources();
    let row = h.read_row(id.as_str()).await.unwrap().unwrap();
    let url = str_of(&row, "Input");
    assert!(
        url.starts_with("http://127.0.0.1:10000/devstoreaccount1/"),
        "{url}"
    );
    assert!(url.ends_with("ExecutionStarted.json.gz"), "{url}");
    let rec = starter.status(id.as_str()).await.unwrap();
    assert_eq!(rec.input.as_deref(), Some(json!(big).to_string().as_str()));
    starter_rt.shutdown().await;

    let (rt, client) = runtime(&hub, registry(), true, &[]);
    let done = finish(&client, id.as_str(), 60).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.output, Some(json!(format!("{big}{big}")).to_string()));
    // History: large columns are "" plus a {Column}BlobName.
    let pk = escape_partition_key(id.as_str());
    let rows = history_rows(&s, id.as_str()).await;
    let completed = rows
        .iter()
        .find(|r| r["EventType"] == json!("TaskCompleted"))
        .unwrap();
    assert_eq!(str_of(completed, "Result"), "");
    let blob = str_of(completed, "ResultBlobName");
    assert!(blob.starts_with(&format!("{pk}/history-")), "{blob}");
    assert!(blob.ends_with("-Result.json.gz"), "{blob}");
    // Instances Output is an absolute URL to a blob.
    let row = h.read_row(id.as_str()).await.unwrap().unwrap();
    assert!(
        str_of(&row, "Output").contains("/history--Output-"),
        "{:?}",
        row.get("Output")
    );
    let hist = client.history(id.as_str()).await.unwrap();
    assert!(hist.iter().any(
        |e| matches!(&e.kind, EventKind::TaskCompleted { result: Some(r), .. } if r.len() > 100_000)
    ));

    // Purge removes the blobs with the rows.
    assert_eq!(s.purge_instance(id.as_str()).await.unwrap(), 1);
    assert_eq!(
        h.large
            .delete_prefix(&format!("{}/", id.as_str()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(h.large.delete_prefix(&format!("{pk}/")).await.unwrap(), 0);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_edits_history_in_place_and_the_instance_completes() {
    let hub = fresh_hub();
    let (rt, client) = runtime(&hub, samples::registry(), true, &[]);
    let id = client.start("FailAtStep", None, Value::Null).await.unwrap();
    let failed = finish(&client, id.as_str(), 60).await;
    assert_eq!(failed.runtime_status, RuntimeStatus::Failed);
    client
        .rewind(id.as_str(), Some("fixed".into()))
        .await
        .unwrap();
    let done = finish(&client, id.as_str(), 60).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.output.as_deref(), Some("\"ok\""));

    let rows = history_rows(&store(&hub), id.as_str()).await;
    let reasons = rewound_reasons(&rows);
    assert!(reasons.contains(&"Rewound: TaskScheduled"), "{reasons:?}");
    assert!(reasons.contains(&"Rewound: TaskFailed"), "{reasons:?}");
    assert!(
        reasons.contains(&"Rewound: ExecutionCompleted"),
        "{reasons:?}"
    );
    assert!(!rows
        .iter()
        .any(|r| r.get("EventType") == Some(&json!("ExecutionRewound"))));
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_recurses_into_a_failed_sub_orchestration() {
    let hub = fresh_hub();
    let mut reg = samples::registry();
    reg.orchestrator("ParentOfFlaky", |ctx: OrchestrationContext| async move {
        let child = format!("{}-child", ctx.instance_id());
        Ok(ctx
            .call_sub_orchestrator("FailAtStep", Some(&child), Value::Null)
            .await?)
    });
    let (rt, client) = runtime(&hub, reg, true, &[]);
    let id = client
        .start("ParentOfFlaky", None, Value::Null)
        .await
        .unwrap();
    let child = format!("{}-child", id.as_str());
    let failed = finish(&client, id.as_str(), 60).await;
    assert_eq!(failed.runtime_status, RuntimeStatus::Failed, "{failed:?}");
    assert_eq!(
        client.status(&child).await.unwrap().runtime_status,
        RuntimeStatus::Failed
    );

    client.rewind(id.as_str(), None).await.unwrap();
    let done = finish(&client, id.as_str(), 60).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    assert_eq!(done.output.as_deref(), Some("\"ok\""));
    let child_done = client.status(&child).await.unwrap();
    assert_eq!(child_done.runtime_status, RuntimeStatus::Completed);

    // Both levels were edited in place: the parent's failed sub-orchestration and the child's
    // failed activity are kept as rewound GenericEvents.
    let s = store(&hub);
    let parent_rows = history_rows(&s, id.as_str()).await;
    let parent = rewound_reasons(&parent_rows);
    assert!(
        parent.contains(&"Rewound: SubOrchestrationInstanceFailed"),
        "{parent:?}"
    );
    let child_rows = history_rows(&s, &child).await;
    let child_reasons = rewound_reasons(&child_rows);
    assert!(
        child_reasons.contains(&"Rewound: TaskFailed"),
        "{child_reasons:?}"
    );
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_carries_on_after_its_hub_is_deleted_and_used_again() {
    let hub = fresh_hub();
    let (rt, client) = runtime(&hub, samples::registry(), true, &[]);
    let first = client
        .start("HelloSequence", None, Value::Null)
        .await
        .unwrap();
    let done = finish(&client, first.as_str(), 60).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);

    // Deleted by another process (the CLI's delete-task-hub), then used again through this one.
    store(&hub).delete_hub().await.unwrap();
    let second = client
        .start("HelloSequence", None, Value::Null)
        .await
        .unwrap();
    let done = finish(&client, second.as_str(), 60).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    assert!(client.status(first.as_str()).await.is_err());
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_keep_off_a_hub_whose_app_lease_a_dtfx_app_holds() {
    let hub = fresh_hub();
    // A Durable Task Framework app runs the hub: it holds the app lease on `{h}-applease`.
    let s = store(&hub);
    let applease = &s.hub_resources().applease_container;
    applease.create().await.unwrap();
    applease.lease_container(60).await.unwrap();

    let env = [("TASKHUB_AZURE_LEASE_SECONDS", "3")];
    let (rt, client) = runtime(&hub, samples::registry(), true, &env);
    let id = client
        .start("HelloSequence", None, Value::Null)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        client.status(id.as_str()).await.unwrap().runtime_status,
        RuntimeStatus::Pending,
        "the app's instance is left to the app"
    );
    let rows = s
        .hub_resources()
        .partitions
        .query(None, None)
        .await
        .unwrap();
    assert!(
        rows.is_empty(),
        "no partition rows on the app's hub: {rows:?}"
    );

    // The app stops (its lease ends): this process takes the partitions and runs the instance.
    applease.break_container_lease().await.unwrap();
    let done = finish(&client, id.as_str(), 60).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed, "{done:?}");
    rt.shutdown().await;
}

/// The crash window of at-least-once delivery: an episode sent an activity message and its
/// process died before the history write; the retried episode schedules the task again. The
/// orphaned message comes back (redelivered) and must not run beside the committed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_message_of_an_episode_that_never_committed_does_not_run() {
    use taskhub::model::HistoryEvent;
    use taskhub::store::{
        ActivityRequest, HistoryWrite, OrchestrationCommit, OrchestrationMessage,
    };

    let hub = fresh_hub();
    let s = store(&hub);
    s.create_instance(new_instance("o", "N", None), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = s
        .lock_next_orchestration(Duration::from_secs(60), Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the start");
    let record = item.instance.clone().unwrap();
    let scheduled = |at, input: &str| {
        HistoryEvent::new(
            0,
            at,
            EventKind::TaskScheduled {
                name: "A".into(),
                input: Some(input.into()),
            },
        )
    };
    // The crashed episode's message, already delivered once (its process held it when it died).
    let h = s.hub_resources();
    let orphan = OrchestrationMessage {
        instance_id: "o".into(),
        execution_id: Some(record.execution_id.clone()),
        event: scheduled(
            taskhub::model::now() - chrono::Duration::seconds(61),
            "\"old\"",
        ),
        visible_at: None,
    };
    h.enqueue(&orphan, Some(1), true).await.unwrap();
    let got = h.workitems.get(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    h.workitems
        .set_visibility(
            &got[0].id,
            &got[0].pop_receipt,
            &got[0].text,
            Duration::ZERO,
        )
        .await
        .unwrap();

    // The retried episode commits TaskScheduled for the same task and sends its own message.
    let mut history = vec![HistoryEvent::new(
        -1,
        taskhub::model::now(),
        EventKind::OrchestratorStarted,
    )];
    history.extend(item.messages.iter().map(|m| m.event.clone()));
    history.push(scheduled(taskhub::model::now(), "\"new\""));
    let state = taskhub::store::InstanceState {
        name: record.name.clone(),
        version: record.version.clone(),
        execution_id: record.execution_id.clone(),
        runtime_status: RuntimeStatus::Running,
        input: record.input.clone(),
        output: None,
        custom_status: None,
        created_time: record.created_time,
        last_updated_time: taskhub::model::now(),
        completed_time: None,
        parent_instance_id: None,
        tags: Default::default(),
    };
    let commit = OrchestrationCommit {
        history: HistoryWrite::Append(history),
        state: Some(state),
        messages: Vec::new(),
        new_instances: Vec::new(),
        activities: vec![ActivityRequest {
            instance_id: "o".into(),
            execution_id: record.execution_id.clone(),
            task_id: 0,
            name: "A".into(),
            input: Some("\"new\"".into()),
            attempt: 1,
        }],
    };
    s.complete_orchestration(&item, commit).await.unwrap();

    // Only the committed episode's message runs; the orphan is deleted.
    let work = s
        .lock_next_activity(Duration::from_secs(60), Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the committed episode's activity");
    assert_eq!(work.request.input.as_deref(), Some("\"new\""));
    assert!(s
        .lock_next_activity(Duration::from_secs(60), Duration::from_secs(3))
        .await
        .unwrap()
        .is_none());
    let left = h.workitems.get(32, Duration::from_secs(1)).await.unwrap();
    assert!(left.is_empty(), "the orphan is deleted: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_only_mode_manages_without_partition_state() {
    let hub = fresh_hub();
    let (rt, client) = runtime(&hub, samples::registry(), false, &[]);
    let a = client
        .start("WaitForApproval", None, Value::Null)
        .await
        .unwrap();
    let b = client
        .start("HelloSequence", None, Value::Null)
        .await
        .unwrap();
    assert_eq!(
        client.status(a.as_str()).await.unwrap().runtime_status,
        RuntimeStatus::Pending
    );
    client
        .raise_event(a.as_str(), "Approval", json!(true))
        .await
        .unwrap();
    client
        .terminate(b.as_str(), Some("stop".into()))
        .await
        .unwrap();
    let page = client
        .query(&InstanceQuery {
            filter: InstanceFilter::default(),
            page_size: 10,
            continuation: None,
            include_input: false,
            max_bytes: None,
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let s = store(&hub);
    let h = s.hub_resources();
    // Both messages wait in the control queues for the app's workers.
    let mut n = 0;
    for p in 0..4 {
        n += h
            .control_queue(p)
            .get(32, Duration::from_secs(1))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(n, 4, "2 starts + 1 event + 1 terminate");
    assert!(h.partitions.query(None, None).await.unwrap().is_empty());
    assert_eq!(
        h.leases_container.read_plain("taskhub.json").await.unwrap(),
        None
    );
    // Nothing runs it here, so it is still Pending: a purge refuses it and leaves it whole.
    assert!(matches!(
        s.purge_instance(a.as_str()).await,
        Err(taskhub::store::StoreError::NotTerminal { .. })
    ));
    assert!(client.try_status(a.as_str()).await.unwrap().is_some());
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_page_by_key_and_filter_and_purge_by_filter() {
    let hub = fresh_hub();
    let s = store(&hub);
    for i in 0..7 {
        let name = if i % 2 == 0 { "Even" } else { "Odd" };
        s.create_instance(
            new_instance(&format!("q-{i}"), name, None),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    }
    s.create_instance(
        new_instance("other", "Even", None),
        ReusePolicy::ReplaceTerminal,
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut continuation = None;
    loop {
        let page = s
            .query_instances(&InstanceQuery {
                filter: InstanceFilter {
                    instance_id_prefix: Some("q-".into()),
                    ..Default::default()
                },
                page_size: 3,
                continuation: continuation.clone(),
                include_input: false,
                max_bytes: None,
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.instance_id.clone()));
        match page.continuation {
            Some(c) => continuation = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("q-{i}")).collect::<Vec<_>>());
    let odd = s
        .query_instances(&InstanceQuery {
            filter: InstanceFilter {
                name: Some("Odd".into()),
                statuses: vec![RuntimeStatus::Pending],
                ..Default::default()
            },
            page_size: 100,
            continuation: None,
            include_input: false,
            max_bytes: None,
        })
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 3);
    assert_eq!(odd.continuation, None);
    let bad = s
        .query_instances(&InstanceQuery {
            filter: Default::default(),
            page_size: 1,
            continuation: Some("!!".into()),
            include_input: false,
            max_bytes: None,
        })
        .await;
    assert!(matches!(
        bad,
        Err(taskhub::store::StoreError::InvalidContinuationToken)
    ));

    let filter = InstanceFilter {
        instance_id_prefix: Some("q-".into()),
        ..Default::default()
    };
    let first = s.purge_instances(&filter, 5).await.unwrap();
    assert_eq!((first.instances_deleted, first.complete), (5, false));
    let second = s.purge_instances(&filter, 5).await.unwrap();
    assert_eq!((second.instances_deleted, second.complete), (2, true));
    assert!(s.get_instance("other").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_sub_orchestrations_events_and_timers() {
    let hub = fresh_hub();
    let (rt, client) = runtime(&hub, samples::registry(), true, &[]);
    let counter = client.start("Counter", None, json!(0)).await.unwrap();
    let parent = client
        .start("ParentChild", None, Value::Null)
        .await
        .unwrap();
    let approval = client
        .start("WaitForApproval", None, json!(60))
        .await
        .unwrap();
    let timer = client.start("LongTimer", None, json!(2)).await.unwrap();
    // The event may arrive before the instance waits for it: it is buffered.
    client
        .raise_event(approval.as_str(), "Approval", json!("yes"))
        .await
        .unwrap();

    let c = finish(&client, counter.as_str(), 90).await;
    assert_eq!(
        (c.runtime_status, c.output.as_deref()),
        (RuntimeStatus::Completed, Some("5"))
    );
    let p = finish(&client, parent.as_str(), 90).await;
    assert_eq!(p.runtime_status, RuntimeStatus::Completed, "{p:?}");
    assert_eq!(
        serde_json::from_str::<Value>(p.output.as_deref().unwrap()).unwrap()[0],
        "Hello Tokyo!"
    );
    let a = finish(&client, approval.as_str(), 90).await;
    assert_eq!(a.output.as_deref(), Some("\"yes\""));
    let t = finish(&client, timer.as_str(), 90).await;
    assert_eq!(t.runtime_status, RuntimeStatus::Completed);
    assert!(t.last_updated_time - t.created_time >= chrono::Duration::seconds(2));
    // The continued execution's history is the last one only.
    let h = client.history(counter.as_str()).await.unwrap();
    assert!(
        matches!(&h.iter().find(|e| matches!(e.kind, EventKind::ExecutionStarted { .. })).unwrap().kind,
        EventKind::ExecutionStarted { input: Some(i), .. } if i == "5")
    );
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_and_restart_reuse_the_id_with_a_new_generation() {
    let hub = fresh_hub();
    let (rt, client) = runtime(&hub, samples::registry(), true, &[]);
    let id = InstanceId::parse("fixed-id").unwrap();
    client
        .start("WaitForApproval", Some(id.clone()), Value::Null)
        .await
        .unwrap();
    azure_until(&client, id.as_str(), |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    client
        .terminate(id.as_str(), Some("enough".into()))
        .await
        .unwrap();
    let t = finish(&client, id.as_str(), 60).await;
    assert_eq!(t.runtime_status, RuntimeStatus::Terminated);
    assert_eq!(t.output.as_deref(), Some("\"enough\""));
    client
        .start("HelloSequence", Some(id.clone()), Value::Null)
        .await
        .unwrap();
    let s = store(&hub);
    let row = s
        .hub_resources()
        .read_row(id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["Generation"], json!(1));
    // A re-create replaces the whole row: the old CompletedTime is gone (the new execution may
    // already have completed, with a CompletedTime of its own).
    let completed = row.get("CompletedTime").and_then(Value::as_str);
    let old = t.completed_time.unwrap();
    assert!(
        completed.is_none_or(|c| c.parse::<chrono::DateTime<chrono::Utc>>().unwrap() > old),
        "{completed:?} is the terminated execution's ({old})"
    );
    let done = finish(&client, id.as_str(), 60).await;
    assert_eq!(done.runtime_status, RuntimeStatus::Completed);
    assert_eq!(
        client
            .history(id.as_str())
            .await
            .unwrap()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::TaskCompleted { .. }))
            .count(),
        3
    );
    rt.shutdown().await;
}

async fn azure_until(
    client: &taskhub::client::Client,
    id: &str,
    check: impl Fn(&taskhub::store::InstanceRecord) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = client.try_status(id).await.unwrap() {
            if check(&s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached: {s:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stopping server gives its partitions up before it exits: a second process takes the work
/// over at once instead of waiting out the 30 s leases (a restarted server used to wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_store_gives_its_partitions_up_at_once() {
    let hub = fresh_hub();
    let options = |worker: &str| AzureOptions {
        worker_id: worker.into(),
        lease_duration: Duration::from_secs(30),
        ..AzureOptions::default()
    };
    let a = store_with(&hub, options("a"));
    a.create_instance(
        new_instance("handover", "HelloSequence", None),
        ReusePolicy::ReplaceTerminal,
    )
    .await
    .unwrap();
    let item = a
        .lock_next_orchestration(Duration::from_secs(60), Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the first process locks the start");
    a.abandon_orchestration(&item, Duration::ZERO)
        .await
        .unwrap();
    a.stop_execution().await.unwrap();

    let b = store_with(&hub, options("b"));
    let started = std::time::Instant::now();
    let item = b
        .lock_next_orchestration(Duration::from_secs(60), Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the second process gets the work before the first one's leases would expire");
    assert_eq!(item.instance_id, "handover");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
