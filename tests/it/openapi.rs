//! The OpenAPI description served at `/api/v1/openapi.json`: it parses with an independent
//! OpenAPI 3.1 parser (`oas3`), and every operation it describes is served by the running
//! API router, with the method it names. (The other direction, every served route being
//! described, holds by construction: `web::api::routes` registers each route together with
//! its description, and a unit test there refuses a route added any other way.)

use serde_json::Value;

use crate::support::TestApp;

#[tokio::test]
async fn the_openapi_description_parses_and_matches_the_served_routes() {
    let app = TestApp::start().await;
    let r = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("an OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    assert_eq!(spec.servers[0].url, "/api/v1");

    // Every schema a description refers to is defined.
    let raw: Value = serde_json::from_str(&text).unwrap();
    let schemas = raw["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let name = reference.split('"').next().unwrap();
        let name = name.strip_prefix("#/components/schemas/").unwrap_or(name);
        assert!(schemas.contains_key(name), "undefined schema {name}");
    }

    // The live stream is described as what it sends; routing fields are documented.
    let stream = &raw["paths"]["/webhooks/{id}/events/stream"]["get"]["responses"]["200"];
    assert!(
        stream["content"]["text/event-stream"].is_object(),
        "{stream}"
    );
    for (schema, field) in [
        ("TargetIn", "filter"),
        ("TargetIn", "transform"),
        ("TargetIn", "paused"),
        ("TargetOut", "filter"),
        ("WebhookIn", "dedupe"),
        ("WebhookOut", "dedupe"),
        ("DeliveryOut", "reason"),
        ("ResultOut", "request"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field} undescribed"
        );
    }

    let operations: Vec<_> = spec.operations().collect();
    assert!(operations.len() >= 22, "{} operations", operations.len());
    let unknown = "00000000-0000-7000-8000-000000000000";
    for (path, method, _) in &operations {
        let concrete: String = path
            .split('/')
            .map(|part| if part.starts_with('{') { unknown } else { part })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
        let mut request = app.api(method.clone(), &concrete);
        if method == reqwest::Method::POST || method == reqwest::Method::PATCH {
            request = request
                .header("content-type", "application/json")
                .body("{}");
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        // The router's fallback (no such route) or a 405 would mean the description names
        // an operation the API does not serve.
        assert!(
            status != 405 && !body.contains("no such route"),
            "{method} {path}: {status} {body}"
        );
    }
    app.stop().await;
}
