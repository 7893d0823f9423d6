//! Where generated URLs point: the origin the caller used (or the one a proxy forwarded), the
//! dialect's prefix, and the hub query of the request (spec §7).

use std::sync::Arc;

use axum::http::{header, HeaderMap, Uri};

use crate::api::payload::{CheckStatusV1, CheckStatusV2};
use crate::api::urls::{hub_query, ManagementUrls};

use super::keys::Keys;
use super::Dialect;

/// `{scheme}://{host}` as the caller saw it. We serve plain HTTP, so the scheme is `http` unless
/// a trusted proxy says otherwise: `X-Forwarded-Host` and `X-Forwarded-Proto` are used only when
/// enabled and only when both are present (as the extension's `useForwardedHost` does).
pub fn origin(headers: &HeaderMap, uri: &Uri, use_forwarded_host: bool) -> String {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if use_forwarded_host {
        if let (Some(host), Some(proto)) = (first("x-forwarded-host"), first("x-forwarded-proto")) {
            return format!("{proto}://{host}");
        }
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    let scheme = uri.scheme_str().unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Builds the management URLs of instances in one request's hub and dialect. When the server has
/// keys, each instance's URLs carry a link code for that instance, never a key.
#[derive(Clone, Debug)]
pub struct UrlBuilder {
    base: String,
    hub: String,
    connection: String,
    dialect: Dialect,
    keys: Option<Arc<Keys>>,
}

impl UrlBuilder {
    pub fn new(
        origin: &str,
        dialect: Dialect,
        hub: &str,
        connection: &str,
        keys: Option<Arc<Keys>>,
    ) -> Self {
        Self {
            base: format!("{origin}{}", dialect.prefix()),
            hub: hub.to_string(),
            connection: connection.to_string(),
            dialect,
            keys,
        }
    }

    pub fn urls(&self, instance_id: &str) -> ManagementUrls {
        let code = self
            .keys
            .as_ref()
            .map(|k| k.link_code(&self.hub, &self.connection, instance_id));
        let query = hub_query(&self.hub, &self.connection, code.as_deref());
        ManagementUrls::new(&self.base, &query, instance_id)
    }

    /// The 202 body in this dialect's shape.
    pub fn check_status_body(&self, instance_id: &str) -> serde_json::Value {
        let urls = self.urls(instance_id);
        let body = match self.dialect {
            Dialect::V1 => serde_json::to_value(CheckStatusV1::from(urls)),
            Dialect::V2 => serde_json::to_value(CheckStatusV2::from(urls)),
        };
        body.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_from_host_or_forwarded_headers() {
        let uri: Uri = "/x".parse().unwrap();
        let h = headers(&[
            ("host", "localhost:7071"),
            ("x-forwarded-host", "api.example.com, proxy"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(origin(&h, &uri, false), "http://localhost:7071");
        assert_eq!(origin(&h, &uri, true), "https://api.example.com");
        // Both forwarded headers are needed.
        let h = headers(&[("host", "h:1"), ("x-forwarded-host", "api.example.com")]);
        assert_eq!(origin(&h, &uri, true), "http://h:1");
    }

    #[test]
    fn check_status_bodies_per_dialect() {
        let v2 = UrlBuilder::new("http://h", Dialect::V2, "Hub", "Storage", None);
        let body = v2.check_status_body("a b");
        assert_eq!(
            body["statusQueryGetUri"],
            "http://h/runtime/webhooks/durabletask/instances/a%20b?taskHub=Hub&connection=Storage"
        );
        assert!(body.get("rewindPostUri").is_none());
        let config = crate::config::Config {
            access_key: Some("k-0123456789abcdef".into()),
            ..crate::config::Config::default()
        };
        let keys = Arc::new(Keys::from_config(&config).unwrap());
        let v1 = UrlBuilder::new(
            "http://h",
            Dialect::V1,
            "Hub",
            "Storage",
            Some(keys.clone()),
        );
        let body = v1.check_status_body("x");
        assert_eq!(
            body["rewindPostUri"],
            format!(
                "http://h/admin/extensions/DurableTaskExtension/instances/x/rewind?reason={{text}}&taskHub=Hub&connection=Storage&code={}",
                keys.link_code("Hub", "Storage", "x")
            )
        );
        assert!(body.get("restartPostUri").is_none());
    }
}
