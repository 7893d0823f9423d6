//! Status (spec §6), list (§10) and purge (§11) over HTTP.

mod http_support;

use std::collections::BTreeSet;

use http_support::{backend_tests, header, json_body, spawn_app_on, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

// Each runs on SQLite and on Azurite: the API must not depend on the store.
backend_tests!(
    status_codes_follow_the_runtime_status,
    failed_is_200_in_v2_500_with_the_flag_and_in_v1,
    history_rendering,
    list_filters_pages_and_always_sends_the_token,
    purge_one,
    purge_by_filter,
    ids_with_spaces_and_unknown_routes,
);

async fn status_codes_follow_the_runtime_status(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app.get(&app.v2("/instances/nobody")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.bytes().await.unwrap().is_empty());

    app.start("LongTimer", &json!(60)).await;
    let id = app.start("LongTimer", &json!(60)).await;
    let url = app.v2(&format!("/instances/{id}?showInput=True"));
    app.until_status(&id, "Running").await;
    let r = app.get(&url).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("5"));
    assert_eq!(header(&r, "location").as_deref(), Some(url.as_str()));
    let v = json_body(r).await;
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "name",
            "instanceId",
            "runtimeStatus",
            "input",
            "customStatus",
            "output",
            "createdTime",
            "lastUpdatedTime"
        ]
    );
    assert_eq!(v["name"], "LongTimer");
    assert_eq!(v["input"], 60);
    let created = v["createdTime"].as_str().unwrap();
    assert_eq!(created.len(), 20, "whole seconds with Z: {created}");
    assert!(created.ends_with('Z'));

    app.post(&app.v2(&format!("/instances/{id}/terminate?reason=enough")))
        .await;
    app.until_status(&id, "Terminated").await;
    let r = app.get(&url).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "location").is_none());
    assert_eq!(json_body(r).await["output"], "enough");
}

async fn failed_is_200_in_v2_500_with_the_flag_and_in_v1(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let id = app.start("FailAtStep", &Value::Null).await;
    app.until_status(&id, "Failed").await;
    let path = format!("/instances/{id}");
    assert_eq!(app.get(&app.v2(&path)).await.status(), StatusCode::OK);
    let r = app
        .get(&app.v2(&format!("{path}?returnInternalServerErrorOnFailure=true")))
        .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json_body(r).await["runtimeStatus"], "Failed");
    let r = app.get(&app.v1(&path)).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let v = json_body(r).await;
    assert_eq!(v["runtimeStatus"], "Failed");
    assert!(v["output"].is_string());
}

async fn history_rendering(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let id = app.start("HelloSequence", &json!({"x": 1})).await;
    app.until_status(&id, "Completed").await;

    let r = app.get(&app.v2(&format!("/instances/{id}"))).await;
    assert!(json_body(r).await.get("historyEvents").is_none());

    let r = app
        .get(&app.v2(&format!(
            "/instances/{id}?showHistory=true&showHistoryOutput=true"
        )))
        .await;
    let v = json_body(r).await;
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.last().unwrap().as_str(), "historyEvents");
    let events = v["historyEvents"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["EventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "TaskCompleted",
            "TaskCompleted",
            "TaskCompleted",
            "ExecutionCompleted"
        ]
    );
    assert_eq!(events[0]["FunctionName"], "HelloSequence");
    assert_eq!(events[0]["Input"], "{\"x\":1}", "raw JSON text");
    assert_eq!(events[1]["FunctionName"], "SayHello");
    assert_eq!(events[1]["Result"], "Hello Tokyo!");
    assert_eq!(events[1]["Input"], "\"Tokyo\"");
    assert!(events[1]["ScheduledTime"].as_str().unwrap().ends_with('Z'));
    assert!(events[1].get("TaskScheduledId").is_none());
    assert_eq!(events[4]["OrchestrationStatus"], "Completed");
    assert_eq!(
        events[4]["Result"],
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );

    let r = app
        .get(&app.v2(&format!("/instances/{id}?showHistory=true&showInput=false")))
        .await;
    let v = json_body(r).await;
    assert_eq!(v["input"], Value::Null);
    for e in v["historyEvents"].as_array().unwrap() {
        assert!(e.get("Input").is_none(), "{e}");
        assert!(e.get("Result").is_none(), "{e}");
    }
}

async fn list_filters_pages_and_always_sends_the_token(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut ids = BTreeSet::new();
    for i in 0..5 {
        let r = app
            .post(&app.v2(&format!("/orchestrators/HelloSequence/seq-{i}")))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        ids.insert(format!("seq-{i}"));
    }
    for id in &ids {
        app.until_status(id, "Completed").await;
    }
    let timer = app.start("LongTimer", &json!(60)).await;
    app.until_status(&timer, "Running").await;

    // Paging with top=2: every instance exactly once, token empty on the last page.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut req = app.http.get(app.v2("/Instances/?top=2"));
        if let Some(t) = &token {
            req = req.header("x-ms-continuation-token", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let next = header(&r, "x-ms-continuation-token").expect("token header always present");
        let page = json_body(r).await;
        assert!(page.as_array().unwrap().len() <= 2);
        for s in page.as_array().unwrap() {
            assert!(s.get("historyEvents").is_none());
            seen.push(s["instanceId"].as_str().unwrap().to_string());
        }
        if next.is_empty() {
            token = None;
            break;
        }
        token = Some(next);
    }
    assert!(token.is_none(), "paging ended");
    assert_eq!(seen.len(), 6, "{seen:?}");

    let list = |q: &'static str| {
        let url = app.v2(&format!("/instances?{q}"));
        let http = app.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{q}");
            assert_eq!(header(&r, "x-ms-continuation-token").as_deref(), Some(""));
            json_body(r).await.as_array().unwrap().clone()
        }
    };
    assert_eq!(list("runtimeStatus=Running").await.len(), 1);
    assert_eq!(list("runtimeStatus=Running,Completed").await.len(), 6);
    assert_eq!(list("runtimeStatus=Pending").await.len(), 0);
    assert_eq!(list("instanceIdPrefix=seq-").await.len(), 5);
    assert_eq!(list("name=LongTimer").await.len(), 1);
    assert_eq!(list("createdTimeFrom=2000-01-01T00:00:00Z").await.len(), 6);
    assert_eq!(
        list("createdTimeTo=2000-01-01T00:00:00.0000000Z")
            .await
            .len(),
        0
    );
    let hidden = list("showInput=false&name=LongTimer").await;
    assert_eq!(hidden[0]["input"], Value::Null);
    assert_eq!(list("name=LongTimer").await[0]["input"], 60);

    for bad in [
        "runtimeStatus=Sleeping",
        "createdTimeFrom=yesterday",
        "createdTimeTo=2024-13-45",
    ] {
        let r = app.get(&app.v2(&format!("/instances?{bad}"))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(json_body(r).await["ExceptionMessage"].is_string());
    }
    let r = app
        .http
        .get(app.v2("/instances"))
        .header("x-ms-continuation-token", "garbage!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn purge_one(backend: Backend) {
    let app = spawn_app_on(backend).await;
    assert_eq!(
        app.delete(&app.v2("/instances/nobody")).await.status(),
        StatusCode::NOT_FOUND
    );
    let running = app.start("LongTimer", &json!(60)).await;
    let r = app.delete(&app.v2(&format!("/instances/{running}"))).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert!(json_body(r).await["Message"].is_string());

    let done = app.start("HelloSequence", &Value::Null).await;
    app.until_status(&done, "Completed").await;
    let r = app.delete(&app.v2(&format!("/instances/{done}"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_body(r).await, json!({"instancesDeleted": 1}));
    assert_eq!(
        app.get(&app.v2(&format!("/instances/{done}")))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

async fn purge_by_filter(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app.delete(&app.v2("/instances")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_body(r).await,
        json!("Please provide value for 'createdTimeFrom' parameter.")
    );
    let r = app
        .delete(&app.v2("/instances?createdTimeFrom=2000-01-01T00:00:00Z"))
        .await;
    let st = r.status();
    assert_eq!(st, StatusCode::NOT_FOUND, "{}", r.text().await.unwrap());

    let a = app.start("HelloSequence", &Value::Null).await;
    let b = app.start("FailAtStep", &Value::Null).await;
    let running = app.start("LongTimer", &json!(60)).await;
    app.until_status(&a, "Completed").await;
    app.until_status(&b, "Failed").await;
    app.until_status(&running, "Running").await;

    let r = app
        .delete(&app.v2("/instances?createdTimeFrom=2000-01-01T00:00:00Z&runtimeStatus=Failed"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_body(r).await, json!({"instancesDeleted": 1}));
    // Non-terminal statuses are never purged.
    let r = app
        .delete(&app.v2("/instances?createdTimeFrom=2000-01-01T00:00:00Z&runtimeStatus=Running"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .delete(&app.v2("/instances?createdTimeFrom=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_body(r).await, json!({"instancesDeleted": 1}));
    assert_eq!(
        app.get(&app.v2(&format!("/instances/{running}")))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

async fn ids_with_spaces_and_unknown_routes(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app
        .post(&app.v2("/orchestrators/HelloSequence/with%20space"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.until_status("with%20space", "Completed").await;
    let r = app.get(&app.v2("/INSTANCES/with%20space/")).await;
    assert_eq!(json_body(r).await["instanceId"], "with space");

    let r = app.get(&app.v2("/instancez")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = app.get(&app.v1("/instancez")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(r).await, json!({"Message": "No such API"}));
}

#[tokio::test]
async fn until_fails_at_its_deadline_when_the_instance_never_appears() {
    let app = std::sync::Arc::new(http_support::spawn_app().await);
    let poller = app.clone();
    let waiting =
        tokio::spawn(async move { poller.until("nobody", 1, |_| true).await.to_string() });
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("until gives up at its deadline instead of waiting forever");
    let panic = ended.expect_err("until cannot succeed").into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(message, "nobody never appeared in 1s");
}

/// `DELETE /instances/{id}` checked the status, then deleted whatever was there: a start of the
/// same id that landed in between was answered 202 and then vanished (8 of 40). The check and
/// the delete are now one write, so a start that was accepted is never lost to a racing purge.
#[tokio::test]
async fn a_start_racing_a_purge_of_the_same_id_is_never_lost() {
    let app = http_support::spawn_app().await;
    for round in 0..25 {
        let id = format!("raced{round}");
        let start = app.v2(&format!("/orchestrators/LongTimer/{id}"));
        assert_eq!(
            app.post_json(&start, &json!(60)).await.status(),
            StatusCode::ACCEPTED
        );
        app.post(&app.v2(&format!("/instances/{id}/terminate")))
            .await;
        app.until_status(&id, "Terminated").await;

        let purge = app.v2(&format!("/instances/{id}"));
        let input = json!(60);
        // Either may reach the server first: alternate which is sent first.
        let (purged, started) = if round % 2 == 0 {
            tokio::join!(app.delete(&purge), app.post_json(&start, &input))
        } else {
            let (s, p) = tokio::join!(app.post_json(&start, &input), app.delete(&purge));
            (p, s)
        };
        let (purged, started) = (purged.status(), started.status());
        assert!(
            [StatusCode::OK, StatusCode::PRECONDITION_FAILED].contains(&purged),
            "{purged}"
        );
        if started == StatusCode::ACCEPTED {
            let r = app.get(&app.v2(&format!("/instances/{id}"))).await;
            assert_ne!(
                r.status(),
                StatusCode::NOT_FOUND,
                "round {round}: the start was accepted and then purged (purge said {purged})"
            );
        }
    }
}

/// A page of 100 large inputs was tens of MB in one answer: a page now ends once it passes about
/// 4 MB, and its continuation token leads to the rest.
#[tokio::test]
async fn a_page_of_large_instances_ends_early_and_continues() {
    let app = http_support::spawn_app().await;
    let input = json!("x".repeat(900 * 1024));
    for i in 0..8 {
        let r = app
            .post_json(
                &app.v2(&format!("/orchestrators/LongTimer/large{i}")),
                &input,
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let mut seen = BTreeSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = app
            .http
            .get(app.v2("/instances?showInput=true&top=100&instanceIdPrefix=large"));
        if let Some(t) = &token {
            req = req.header("x-ms-continuation-token", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let next = header(&r, "x-ms-continuation-token");
        let body = r.bytes().await.unwrap();
        assert!(
            body.len() < 5 * 1024 * 1024,
            "a page of {} bytes",
            body.len()
        );
        let rows: Value = serde_json::from_slice(&body).unwrap();
        for row in rows.as_array().unwrap() {
            assert!(seen.insert(row["instanceId"].as_str().unwrap().to_string()));
        }
        pages += 1;
        match next.filter(|t| !t.is_empty() && t != "null") {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert!(pages >= 2, "all 8 came in one page");
}
