//! Raise event, terminate, suspend, resume, rewind and restart over HTTP (spec §9).

mod http_support;

use http_support::{backend_tests, json_body, spawn_app_on, spawn_on, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

// Each runs on SQLite and on Azurite: the API must not depend on the store.
backend_tests!(
    raise_event,
    terminate,
    suspend_and_resume,
    rewind,
    the_status_right_after_a_rewind_is_pending,
    restart,
    operations_on_unknown_paths_and_methods,
);

async fn raise_event(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let url = |id: &str| app.v2(&format!("/instances/{id}/raiseEvent/Approval"));
    assert_eq!(
        app.post_json(&url("nobody"), &json!(true)).await.status(),
        StatusCode::NOT_FOUND
    );
    let id = app.start("WaitForApproval", &Value::Null).await;
    app.until(&id, 20, |v| v["customStatus"] == "waiting").await;

    // Wrong content type, then invalid JSON: 400, and the instance keeps waiting.
    let r = app
        .http
        .post(url(&id))
        .header("content-type", "text/plain")
        .body("true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_body(r).await["Message"],
        "Only application/json request content is supported"
    );
    let r = app
        .http
        .post(url(&id))
        .header("content-type", "application/json; charset=utf-8")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(r).await["Message"], "Invalid JSON content");

    let r = app
        .post_json(
            &app.v2(&format!("/Instances/{id}/RAISEEVENT/Approval")),
            &json!({"ok": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.bytes().await.unwrap().is_empty());
    let done = app.until_status(&id, "Completed").await;
    assert_eq!(done["output"], json!({"ok": 1}));

    assert_eq!(
        app.post_json(&url(&id), &json!(true)).await.status(),
        StatusCode::GONE
    );
}

async fn terminate(backend: Backend) {
    let app = spawn_app_on(backend).await;
    assert_eq!(
        app.post(&app.v2("/instances/nobody/terminate"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let id = app.start("LongTimer", &json!(60)).await;
    let r = app
        .post(&app.v2(&format!("/instances/{id}/terminate?reason=because+I+said")))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let s = app.until_status(&id, "Terminated").await;
    assert_eq!(s["output"], "because I said");
    assert_eq!(
        app.post(&app.v2(&format!("/instances/{id}/terminate")))
            .await
            .status(),
        StatusCode::GONE
    );
}

async fn suspend_and_resume(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let op = |id: &str, op: &str| app.v2(&format!("/instances/{id}/{op}?reason=test"));
    assert_eq!(app.post(&op("nobody", "suspend")).await.status(), 404);
    assert_eq!(app.post(&op("nobody", "resume")).await.status(), 404);
    let id = app.start("WaitForApproval", &Value::Null).await;
    app.until(&id, 20, |v| v["customStatus"] == "waiting").await;

    let r = app.post(&op(&id, "resume")).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert!(json_body(r).await["ExceptionMessage"].is_string());

    assert_eq!(
        app.post(&op(&id, "suspend")).await.status(),
        StatusCode::ACCEPTED
    );
    app.until_status(&id, "Suspended").await;
    assert_eq!(
        app.post(&op(&id, "suspend")).await.status(),
        StatusCode::PRECONDITION_FAILED
    );
    // Suspended is still non-terminal: status answers 202.
    assert_eq!(
        app.get(&app.v2(&format!("/instances/{id}"))).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.post(&op(&id, "resume")).await.status(),
        StatusCode::ACCEPTED
    );
    app.until_status(&id, "Running").await;

    app.post_json(
        &app.v2(&format!("/instances/{id}/raiseEvent/Approval")),
        &json!("yes"),
    )
    .await;
    app.until_status(&id, "Completed").await;
    assert_eq!(
        app.post(&op(&id, "suspend")).await.status(),
        StatusCode::GONE
    );
    assert_eq!(
        app.post(&op(&id, "resume")).await.status(),
        StatusCode::GONE
    );
}

async fn rewind(backend: Backend) {
    let app = spawn_app_on(backend).await;
    assert_eq!(
        app.post(&app.v2("/instances/nobody/rewind")).await.status(),
        StatusCode::NOT_FOUND
    );
    let running = app.start("LongTimer", &json!(60)).await;
    let r = app
        .post(&app.v2(&format!("/instances/{running}/rewind")))
        .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert!(json_body(r).await["ExceptionMessage"]
        .as_str()
        .unwrap()
        .contains("failed"));

    let id = app.start("FailAtStep", &Value::Null).await;
    app.until_status(&id, "Failed").await;
    let r = app
        .post(&app.v1(&format!("/instances/{id}/rewind?reason=retry")))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let s = app.until_status(&id, "Completed").await;
    assert_eq!(s["output"], "ok");
}

async fn the_status_right_after_a_rewind_is_pending(backend: Backend) {
    // The server only manages; the test runs the executor, so that nothing but the rewind
    // changes the status between the rewind and the read after it.
    let app = spawn_on(backend, |c| c.executor.enabled = false).await;
    let executor = app.executor();
    let id = app.start("FailAtStep", &Value::Null).await;
    app.until_status(&id, "Failed").await;
    executor.shutdown().await;
    drop(executor);

    let r = app
        .post(&app.v2(&format!("/instances/{id}/rewind?reason=retry")))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A client that polls after the rewind must not read the Failed of before and stop.
    let s = json_body(app.get(&app.v2(&format!("/instances/{id}"))).await).await;
    assert_eq!(s["runtimeStatus"], "Pending", "{s}");

    let executor = app.executor();
    let s = app.until_status(&id, "Completed").await;
    assert_eq!(s["output"], "ok");
    executor.shutdown().await;
}

async fn restart(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app.post(&app.v2("/instances/nobody/restart")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_body(r).await["Message"],
        "InstanceId does not match a valid orchestration instance."
    );

    let r = app
        .post_json(&app.v2("/orchestrators/HelloSequence/orig"), &json!("in"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.until_status("orig", "Completed").await;

    // Default: a new id, same name and input.
    let r = app.post(&app.v2("/instances/orig/restart")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let new_id = json_body(r).await["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, "orig");
    let s = app.until_status(&new_id, "Completed").await;
    assert_eq!(s["name"], "HelloSequence");
    assert_eq!(s["input"], "in");

    // Same id, with the wait variant.
    let r = app
        .post(&app.v2(
            "/instances/orig/restart?restartWithNewInstanceId=false&timeout=20&pollingInterval=1",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        json_body(r).await,
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );

    let timer = app.start("LongTimer", &json!(60)).await;
    let r = app
        .post(&app.v2(&format!(
            "/instances/{timer}/restart?restartWithNewInstanceId=false"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

async fn operations_on_unknown_paths_and_methods(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let id = app.start("LongTimer", &json!(60)).await;
    assert_eq!(
        app.post(&app.v2(&format!("/instances/{id}/explode")))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&app.v2(&format!("/instances/{id}/terminate")))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .get(&app.v1(&format!("/instances/{id}/terminate")))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(r).await["Message"], "No such API");
}
