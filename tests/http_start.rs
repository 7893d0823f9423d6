//! Start (spec §5), the wait variant (§8), the user-level sample routes, and what every request
//! shares: hub and connection selection, generated URLs, access key, body limit.

mod http_support;

use std::time::{Duration, Instant};

use http_support::{
    backend_tests, header, json_body, spawn_app, spawn_app_on, spawn_with, Backend,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const HELLO: [&str; 3] = ["Hello Tokyo!", "Hello Seattle!", "Hello London!"];

// Each runs on SQLite and on Azurite: the API must not depend on the store.
backend_tests!(
    start_answers_202_with_the_v2_payload_and_headers,
    v1_payload_has_rewind_and_no_restart,
    start_with_an_id_input_and_the_id_reuse_rules,
    bad_starts_are_400_and_start_nothing,
    empty_body_with_any_content_type_is_null_input_and_json_string_is_kept,
    wait_variant_answers_with_the_output_or_202,
    wait_variant_on_failure_gives_the_status_object,
    user_level_sample_routes,
    graceful_shutdown_answers_waiters,
    a_hub_nobody_runs_is_a_404_and_asking_creates_nothing,
    a_hub_another_process_runs_is_managed_here_but_not_run,
);

async fn start_answers_202_with_the_v2_payload_and_headers(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app.post(&app.v2("/orchestrators/HelloSequence")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("10"));
    let location = header(&r, "location").unwrap();
    let body = json_body(r).await;
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "statusQueryGetUri",
            "sendEventPostUri",
            "terminatePostUri",
            "purgeHistoryDeleteUri",
            "restartPostUri",
            "suspendPostUri",
            "resumePostUri"
        ]
    );
    let id = body["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let status_url = format!(
        "{}/runtime/webhooks/durabletask/instances/{id}?taskHub={}&connection=Storage",
        app.origin, app.hub
    );
    assert_eq!(body["statusQueryGetUri"], status_url);
    assert_eq!(location, status_url);
    assert_eq!(
        body["terminatePostUri"],
        format!(
            "{}/runtime/webhooks/durabletask/instances/{id}/terminate?reason={{text}}&taskHub={}&connection=Storage",
            app.origin, app.hub
        )
    );
    // The generated URL works as given.
    let done = app.until_status(id, "Completed").await;
    assert_eq!(done["output"], json!(HELLO));
    assert_eq!(app.get(&status_url).await.status(), StatusCode::OK);
}

async fn v1_payload_has_rewind_and_no_restart(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app.post(&app.v1("/Orchestrators/HelloSequence")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body = json_body(r).await;
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "statusQueryGetUri",
            "sendEventPostUri",
            "terminatePostUri",
            "rewindPostUri",
            "purgeHistoryDeleteUri"
        ]
    );
    assert!(body["statusQueryGetUri"]
        .as_str()
        .unwrap()
        .contains("/admin/extensions/DurableTaskExtension/instances/"));
}

async fn start_with_an_id_input_and_the_id_reuse_rules(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let url = app.v2("/orchestrators/LongTimer/my%20timer");
    let r = app.post_json(&url, &json!(30)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body = json_body(r).await;
    assert_eq!(body["id"], "my timer");
    assert!(body["statusQueryGetUri"]
        .as_str()
        .unwrap()
        .contains("/instances/my%20timer?"));
    let s = app.until("my%20timer", 20, |v| v["input"] == 30).await;
    assert_eq!(s["instanceId"], "my timer");
    // A non-terminal instance with that id: 409.
    let r = app.post_json(&url, &json!(1)).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(json_body(r).await["ExceptionMessage"]
        .as_str()
        .unwrap()
        .contains("my timer"));
    // A terminal one is replaced.
    let t = app
        .post(&app.v2("/instances/my%20timer/terminate?reason=stop"))
        .await;
    assert_eq!(t.status(), StatusCode::ACCEPTED);
    app.until_status("my%20timer", "Terminated").await;
    let r = app.post_json(&url, &json!(0)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.until("my%20timer", 20, |v| {
        v["runtimeStatus"] == "Completed" && v["input"] == 0
    })
    .await;
}

async fn bad_starts_are_400_and_start_nothing(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let cases = [
        (
            app.v2("/orchestrators/HelloSequence/bad"),
            "{not json",
            "Invalid JSON content",
        ),
        (
            app.v2("/orchestrators/HelloSequence/%40entity"),
            "",
            "instance ID is not valid",
        ),
        (
            app.v2("/orchestrators/HelloSequence/a%23b"),
            "",
            "instance ID is not valid",
        ),
        (app.v2("/orchestrators/NoSuchThing/x"), "", "doesn't exist"),
        (
            app.v2("/orchestrators/HelloSequence/w?timeout=1&pollingInterval=2"),
            "",
            "should be bigger than retry timeout",
        ),
        (
            app.v2("/orchestrators/HelloSequence/t?timeout=soon"),
            "",
            "'timeout' parameter",
        ),
        // Once overflowed the clock and panicked, after the instance had started.
        (
            app.v2("/orchestrators/HelloSequence/huge?timeout=9300000000000000000"),
            "",
            "'timeout' parameter",
        ),
        (
            app.url("/api/orchestrators/HelloSequence/wait?timeout=9300000000000000000"),
            "",
            "'timeout' parameter",
        ),
    ];
    for (url, body, expected) in cases {
        let r = app.http.post(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        let v = json_body(r).await;
        assert!(v["Message"].is_string(), "{url}: {v}");
        let text = format!("{}{}", v["Message"], v["ExceptionMessage"]);
        assert!(text.contains(expected), "{url}: {v}");
    }
    let list: Value = app.get(&app.v2("/instances")).await.json().await.unwrap();
    assert_eq!(list, json!([]), "nothing was started");
}

async fn empty_body_with_any_content_type_is_null_input_and_json_string_is_kept(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app
        .http
        .post(app.v2("/orchestrators/HelloSequence/a"))
        .header("content-type", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .http
        .post(app.v2("/orchestrators/HelloSequence/b"))
        .body("\"\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.until_status("a", "Completed").await["input"],
        Value::Null
    );
    assert_eq!(app.until_status("b", "Completed").await["input"], json!(""));
}

async fn wait_variant_answers_with_the_output_or_202(backend: Backend) {
    let app = spawn_app_on(backend).await;
    // SQLite pushes changes, so the answer must not wait for a 10 s polling interval. The Azure
    // store cannot (another process may finish the instance), so the wait polls at the caller's
    // interval as Durable Functions does; a 1 s interval must still answer promptly.
    let polling = match backend {
        Backend::Sqlite => 10,
        #[cfg(feature = "azure")]
        Backend::Azure => 1,
    };
    let started = Instant::now();
    let r = app
        .post(&app.v2(&format!(
            "/orchestrators/HelloSequence?timeout=20&pollingInterval={polling}"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "location").is_none());
    assert_eq!(json_body(r).await, json!(HELLO));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let r = app
        .post_json(
            &app.v2("/orchestrators/LongTimer?timeout=0.2&pollingInterval=0.1"),
            &json!(60),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").is_some());
    assert!(json_body(r).await["statusQueryGetUri"].is_string());
}

async fn wait_variant_on_failure_gives_the_status_object(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let r = app
        .post(&app.v2("/orchestrators/FailAtStep/f1?timeout=20"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_body(r).await;
    assert_eq!(v["runtimeStatus"], "Failed");
    let r = app
        .post(
            &app.v2(
                "/orchestrators/FailAtStep/f2?timeout=20&returnInternalServerErrorOnFailure=true",
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json_body(r).await["runtimeStatus"], "Failed");
}

async fn user_level_sample_routes(backend: Backend) {
    let app = spawn_app_on(backend).await;
    for prefix in ["/api", ""] {
        let r = app
            .post(&app.url(&format!("{prefix}/orchestrators/E1_HelloSequence")))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{prefix}");
        let body = json_body(r).await;
        assert!(body["statusQueryGetUri"]
            .as_str()
            .unwrap()
            .contains("/runtime/webhooks/durabletask/instances/"));

        let r = app
            .post(&app.url(&format!(
                "{prefix}/orchestrators/HelloSequence/u{}",
                prefix.len()
            )))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(json_body(r).await["id"], format!("u{}", prefix.len()));

        // The seed's example: http POST …/orchestrators/E1_HelloSequence/wait?timeout=2&retryInterval=0.5
        let r = app
            .post(&app.url(&format!(
                "{prefix}/orchestrators/E1_HelloSequence/wait?timeout=10&retryInterval=0.5"
            )))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(json_body(r).await, json!(HELLO));

        let r = app
            .post_json(
                &app.url(&format!(
                    "{prefix}/Orchestrators/LongTimer/WAIT?timeout=0.1"
                )),
                &json!(60),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "retry-after").as_deref(), Some("10"));

        let r = app
            .post(&app.url(&format!(
                "{prefix}/orchestrators/HelloSequence/wait?timeout=1&retryInterval=2"
            )))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn task_hub_and_connection_select_where_instances_live() {
    let app = spawn_with(|c| {
        c.connections = vec!["Other".into()];
        c.task_hubs = vec!["OtherHub".into()];
    })
    .await;
    let r = app
        .post(&app.v2("/orchestrators/HelloSequence/h1?taskHub=OtherHub&connection=Other"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body = json_body(r).await;
    let status_url = body["statusQueryGetUri"].as_str().unwrap().to_string();
    assert!(status_url.ends_with("/instances/h1?taskHub=OtherHub&connection=Other"));
    let r = app.get(&status_url).await;
    assert!(r.status().is_success());
    // Not in the default hub, nor in the same hub on the default connection.
    assert_eq!(app.get(&app.v2("/instances/h1")).await.status(), 404);
    assert_eq!(
        app.get(&app.v2("/instances/h1?taskHub=OtherHub"))
            .await
            .status(),
        404
    );

    let r = app.get(&app.v2("/instances?connection=Missing")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(json_body(r).await["ExceptionMessage"]
        .as_str()
        .unwrap()
        .contains("'Missing' is not one this server offers"));
    let r = app.get(&app.v2("/instances?taskHub=bad-name")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// `?connection=` once opened whatever an environment variable of the server named (another
/// application's database included). Only the configured settings are offered, and every other
/// name gets the same answer, defined or not, so the answer reveals nothing.
#[tokio::test]
async fn a_request_cannot_name_a_connection_the_server_does_not_offer() {
    let app = spawn_app().await;
    let defined_but_not_offered = app.get(&app.v2("/instances?connection=Other")).await;
    let undefined = app.get(&app.v2("/instances?connection=Missing")).await;
    assert_eq!(defined_but_not_offered.status(), StatusCode::BAD_REQUEST);
    assert_eq!(undefined.status(), StatusCode::BAD_REQUEST);
    let a = json_body(defined_but_not_offered).await;
    let b = json_body(undefined).await;
    assert_eq!(
        a["ExceptionMessage"]
            .as_str()
            .unwrap()
            .replace("Other", "X"),
        b["ExceptionMessage"]
            .as_str()
            .unwrap()
            .replace("Missing", "X"),
    );
    let started = app
        .post(&app.v2("/orchestrators/HelloSequence/x?connection=Other"))
        .await;
    assert_eq!(started.status(), StatusCode::BAD_REQUEST);
    // The default connection is always offered, by name and by Durable Functions' alias.
    for name in ["AzureWebJobsStorage", "Storage"] {
        let r = app
            .get(&app.v2(&format!("/instances?connection={name}")))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
}

#[tokio::test]
async fn forwarded_host_is_used_only_when_enabled() {
    let plain = spawn_app().await;
    let send = |app: &http_support::TestApp| {
        app.http
            .post(app.v2("/orchestrators/HelloSequence"))
            .header("x-forwarded-host", "api.example.com")
            .header("x-forwarded-proto", "https")
            .send()
    };
    let body: Value = send(&plain).await.unwrap().json().await.unwrap();
    assert!(body["statusQueryGetUri"]
        .as_str()
        .unwrap()
        .starts_with(&plain.origin));
    let proxied = spawn_with(|c| c.use_forwarded_host = true).await;
    let body: Value = send(&proxied).await.unwrap().json().await.unwrap();
    assert!(body["statusQueryGetUri"]
        .as_str()
        .unwrap()
        .starts_with("https://api.example.com/runtime/webhooks/durabletask/instances/"));
}

#[tokio::test]
async fn access_key_is_required_and_carried_by_generated_urls() {
    let app = spawn_with(|c| c.access_key = Some("k3y/+-long-enough-key".into())).await;
    let r = app.post(&app.v2("/orchestrators/HelloSequence")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(r).await["Message"], "Unauthorized");
    let r = app
        .http
        .post(app.v2("/orchestrators/HelloSequence"))
        .header("x-functions-key", "k3y/+-long-enough-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body = json_body(r).await;
    let url = body["statusQueryGetUri"].as_str().unwrap();
    assert!(url.contains("&connection=Storage&code=l1.0."), "{url}");
    assert!(app.get(url).await.status().is_success());
    assert_eq!(
        app.get(&app.v2("/instances?code=wrong")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// The URLs an application hands to its users (Durable Functions' extension issue 838) carry a
/// code for that one instance, never the key: it opens that instance's routes, and nothing else.
#[tokio::test]
async fn generated_urls_carry_a_link_for_their_instance_not_the_key() {
    const KEY: &str = "the-primary-key-0123456789";
    let app = spawn_with(|c| c.access_key = Some(KEY.into())).await;
    let start = |id: &str| {
        app.http
            .post(app.v2(&format!("/orchestrators/WaitForApproval/{id}")))
            .header("x-functions-key", KEY)
            .send()
    };
    let mine = json_body(start("mine").await.unwrap()).await;
    start("theirs").await.unwrap();
    for (name, url) in mine.as_object().unwrap() {
        let url = url.as_str().unwrap();
        assert!(!url.contains(KEY), "{name} carries the key: {url}");
    }
    let status = mine["statusQueryGetUri"].as_str().unwrap();
    assert_eq!(app.get(status).await.status(), StatusCode::ACCEPTED);
    let code = status.split("code=").nth(1).unwrap();

    // The same code on another instance, on the list, or on a start: refused, and why.
    let theirs = app.v2(&format!("/instances/theirs?code={code}"));
    let r = app.get(&theirs).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(json_body(r).await["ExceptionMessage"]
        .as_str()
        .unwrap()
        .contains("only the management routes of the instance it was made for"));
    for r in [
        app.get(&app.v2(&format!("/instances?code={code}"))).await,
        app.post(&app.v2(&format!("/orchestrators/HelloSequence?code={code}")))
            .await,
        app.get(&app.v2(&format!("/instances/mine?taskHub=OtherHub&code={code}")))
            .await,
    ] {
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    // Every operation URL of its own instance works with it.
    let raise = mine["sendEventPostUri"]
        .as_str()
        .unwrap()
        .replace("{eventName}", "Approval");
    let r = app.post_json(&raise, &json!(true)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.get(status).await;
    assert!(r.status().is_success());
    let purge = mine["purgeHistoryDeleteUri"].as_str().unwrap();
    let done = loop {
        let r = app.delete(purge).await;
        if r.status() != StatusCode::PRECONDITION_FAILED {
            break r.status();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done, StatusCode::OK);
}

/// A second full key (rotation) does everything; a read-only key only reads.
#[tokio::test]
async fn rotated_and_read_only_keys_do_what_they_are_for() {
    let app = spawn_with(|c| {
        c.access_key = Some("the-primary-key-0123456789".into());
        c.access_keys = vec!["the-next-key-0123456789".into()];
        c.read_only_keys = vec!["a-reader-key-0123456789".into()];
    })
    .await;
    let r = app
        .post(&app.v2("/orchestrators/HelloSequence/rotated?code=the-next-key-0123456789"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let read = app
        .get(&app.v2("/instances/rotated?code=a-reader-key-0123456789"))
        .await;
    assert!(read.status().is_success());
    let list = app
        .get(&app.v2("/instances?code=a-reader-key-0123456789"))
        .await;
    assert_eq!(list.status(), StatusCode::OK);
    let write = app
        .post(&app.v2("/instances/rotated/terminate?code=a-reader-key-0123456789"))
        .await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert!(json_body(write).await["ExceptionMessage"]
        .as_str()
        .unwrap()
        .contains("may only read"));
}

#[tokio::test]
async fn oversized_bodies_are_413_and_start_nothing() {
    let app = spawn_with(|c| c.max_body_bytes = 64).await;
    let big = json!("x".repeat(200));
    let r = app
        .post_json(&app.v2("/orchestrators/HelloSequence/big"), &big)
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json_body(r).await["ExceptionMessage"]
        .as_str()
        .unwrap()
        .contains("64 bytes"));
    assert_eq!(app.get(&app.v2("/instances/big")).await.status(), 404);
}

async fn graceful_shutdown_answers_waiters(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let url = app.url("/api/orchestrators/LongTimer/wait?timeout=60");
    let waiter = {
        let http = app.http.clone();
        tokio::spawn(async move { http.post(url).json(&json!(60)).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    app.stop().await;
    let r = waiter.await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A form on another site, or a page re-pointed at 127.0.0.1 by DNS, reaches a keyless loopback
/// server through the user's browser: both are refused, and nothing is started.
#[tokio::test]
async fn browsers_cannot_drive_a_keyless_server_from_another_site() {
    let app = spawn_app().await;
    let url = app.v2("/orchestrators/HelloSequence");
    let cross_site = app
        .http
        .post(&url)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert!(json_body(cross_site).await["ExceptionMessage"]
        .as_str()
        .unwrap()
        .contains("evil.example"));
    let rebound = app
        .http
        .get(app.v2("/instances"))
        .header("Host", "evil.example:7071")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let list: Value = app.get(&app.v2("/instances")).await.json().await.unwrap();
    assert_eq!(list, json!([]), "nothing was started");

    // The same site, and clients that send no Origin (curl, SDKs), are served.
    let same_site = app
        .http
        .post(&url)
        .header("Origin", app.origin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), StatusCode::ACCEPTED);
}

/// Every `taskHub` a request named once opened a hub for good, with an executor and a lease (200
/// names: 11 → 131 MB; on Azure, queues, tables and containers). Now a hub the server does not
/// run must already exist, and asking leaves nothing behind.
async fn a_hub_nobody_runs_is_a_404_and_asking_creates_nothing(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let hub = format!("Nobody{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    for r in [
        app.get(&app.v2(&format!("/instances?taskHub={hub}"))).await,
        app.get(&app.v2(&format!("/instances/x?taskHub={hub}")))
            .await,
        app.post(&app.v2(&format!("/orchestrators/HelloSequence?taskHub={hub}")))
            .await,
        app.delete(&app.v2(&format!(
            "/instances?taskHub={hub}&createdTimeFrom=2020-01-01T00:00:00Z"
        )))
        .await,
    ] {
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body = json_body(r).await;
        assert!(
            body["ExceptionMessage"]
                .as_str()
                .unwrap()
                .contains(&format!("'{hub}' does not exist")),
            "{body}"
        );
    }
    assert!(!app.store_elsewhere(&hub).hub_exists().await.unwrap());
    assert_eq!(app.runtime.visited_hubs(), 0);
}

/// A hub that exists in storage but that this server does not run (another process runs it):
/// managed here, never run here.
async fn a_hub_another_process_runs_is_managed_here_but_not_run(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let hub = format!(
        "Elsewhere{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let elsewhere = app.store_elsewhere(&hub);
    taskhub::client::Client::new(elsewhere.clone(), None)
        .start(
            "HelloSequence",
            Some(taskhub::model::InstanceId::parse("made-elsewhere").unwrap()),
            Value::Null,
        )
        .await
        .unwrap();

    let url = |path: &str| app.v2(&format!("{path}?taskHub={hub}"));
    let r = app.get(&url("/instances/made-elsewhere")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "Pending answers 202");
    assert_eq!(json_body(r).await["runtimeStatus"], "Pending");
    // A start through this server lands in that hub too, for its runner to run.
    let r = app
        .post(&url("/orchestrators/HelloSequence/started-here"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(app.runtime.visited_hubs(), 1);

    // The server's executors run its own hub: a sample there completes meanwhile...
    let own = app.start("HelloSequence", &Value::Null).await;
    app.until_status(&own, "Completed").await;
    // ...while the visited hub's instances are still waiting for their runner.
    for id in ["made-elsewhere", "started-here"] {
        let r = app.get(&url(&format!("/instances/{id}"))).await;
        assert_eq!(json_body(r).await["runtimeStatus"], "Pending", "{id}");
    }
    let r = app.post(&url("/instances/made-elsewhere/terminate")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// However many existing hubs requests name, only a bounded number stay open.
#[tokio::test]
async fn visited_hubs_are_bounded() {
    let app = spawn_app().await;
    let count = taskhub::runtime::MAX_VISITED_HUBS + 8;
    for i in 0..count {
        let hub = format!("Visited{i}");
        taskhub::client::Client::new(app.store_elsewhere(&hub), None)
            .start(
                "HelloSequence",
                Some(taskhub::model::InstanceId::parse("one").unwrap()),
                Value::Null,
            )
            .await
            .unwrap();
        let r = app
            .get(&app.v2(&format!("/instances/one?taskHub={hub}")))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{hub}");
    }
    assert_eq!(
        app.runtime.visited_hubs(),
        taskhub::runtime::MAX_VISITED_HUBS
    );
}

/// `samples = false`: a server open to others runs no code it was not asked to run.
#[tokio::test]
async fn a_server_without_the_samples_does_not_start_them() {
    let app = spawn_with(|c| c.samples = false).await;
    let r = app.post(&app.v2("/orchestrators/HelloSequence")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = json_body(r).await;
    assert!(
        body["ExceptionMessage"]
            .as_str()
            .unwrap()
            .contains("HelloSequence"),
        "{body}"
    );
}

/// A sample's input is bounded: `FanOutFanIn` with ten million branches fails with the reason
/// instead of taking the server's memory.
#[tokio::test]
async fn sample_inputs_beyond_their_bounds_fail_the_instance_with_the_reason() {
    let app = spawn_app().await;
    let id = app.start("FanOutFanIn", &json!(10_000_000)).await;
    let status = app.until_status(&id, "Failed").await;
    assert!(
        status["output"]
            .to_string()
            .contains("this sample takes at most 1000"),
        "{status}"
    );
}

/// Probes carry no key; they answer on a keyed server too, and say which hubs are ready.
#[tokio::test]
async fn probes_answer_without_the_key() {
    let app = spawn_with(|c| {
        c.access_key = Some("the-primary-key-0123456789".into());
        c.task_hubs = vec!["SecondHub".into()];
    })
    .await;
    let r = app.get(&app.url("/healthz")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_body(r).await, json!({"status": "ok"}));
    let r = app.get(&app.url("/readyz")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        json_body(r).await,
        json!({"status": "ready", "hubs": {"DurableFunctionsHub": "ok", "SecondHub": "ok"}})
    );
    // Everything else still needs the key.
    assert_eq!(
        app.get(&app.v2("/instances")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// The value of the first sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `GET /metrics` counts what happened, by route template and orchestration name, in the
/// Prometheus text format; it needs the key like the API.
#[tokio::test]
async fn metrics_count_requests_instances_and_commits() {
    const KEY: &str = "the-primary-key-0123456789";
    let app = spawn_with(|c| c.access_key = Some(KEY.into())).await;
    let keyed = |path: &str| {
        format!(
            "{}{}code={KEY}",
            app.url(path),
            if path.contains('?') { "&" } else { "?" }
        )
    };
    let r = app
        .post(&keyed("/api/orchestrators/HelloSequence/wait?timeout=10"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .get(&keyed("/runtime/webhooks/durabletask/instances/nobody"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    assert_eq!(
        app.get(&app.url("/metrics")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app.get(&keyed("/metrics")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let at_least_one = |metric: &str, labels: &[&str]| {
        let v = sample(&text, metric, labels)
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in:\n{text}"));
        assert!(v >= 1.0, "{metric} {labels:?} = {v}");
    };
    at_least_one(
        "taskhub_http_requests_total",
        &[
            "route=\"/runtime/webhooks/durabletask/instances/{instanceId}\"",
            "method=\"GET\"",
            "status=\"404\"",
        ],
    );
    at_least_one(
        "taskhub_http_request_duration_seconds_count",
        &["route=\"/api/orchestrators/{functionName}/wait\""],
    );
    at_least_one(
        "taskhub_instances_started_total",
        &["name=\"HelloSequence\""],
    );
    at_least_one(
        "taskhub_instances_finished_total",
        &["name=\"HelloSequence\"", "status=\"Completed\""],
    );
    at_least_one("taskhub_episode_duration_seconds_count", &[]);
    at_least_one("taskhub_sqlite_commit_duration_seconds_count", &[]);
    at_least_one("taskhub_sqlite_commit_batch_size_count", &[]);
    assert!(
        sample(&text, "taskhub_grpc_workers_connected", &[]).is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "taskhub_work_items_waiting", &["kind=\"activity\""]).is_some(),
        "{text}"
    );
}
