//! The management URLs of one instance (spec §7). The caller supplies the base
//! (`{scheme}://{host}{prefix}`, no trailing slash) and the hub query; this module only
//! assembles, so the order and encoding rules live in one place.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is escaped, like .NET's
/// `Uri.EscapeDataString`: a space becomes `%20`, never `+` (the bug of spec §14.8).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// `taskHub=…&connection=…[&code=…]`, in that order.
pub fn hub_query(hub: &str, connection: &str, code: Option<&str>) -> String {
    let mut q = format!(
        "taskHub={}&connection={}",
        encode_component(hub),
        encode_component(connection)
    );
    if let Some(code) = code {
        q.push_str("&code=");
        q.push_str(&encode_component(code));
    }
    q
}

/// The nine URLs of the webhook payload. `{eventName}` and `{text}` are literal placeholders
/// for the caller to fill in, exactly as Durable Functions emits them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementUrls {
    pub id: String,
    pub status_query_get_uri: String,
    pub send_event_post_uri: String,
    pub terminate_post_uri: String,
    pub rewind_post_uri: String,
    pub purge_history_delete_uri: String,
    pub restart_post_uri: String,
    pub suspend_post_uri: String,
    pub resume_post_uri: String,
}

impl ManagementUrls {
    /// `base` is origin + prefix; `query` is [`hub_query`]'s result.
    pub fn new(base: &str, query: &str, instance_id: &str) -> Self {
        let inst = format!("{base}/instances/{}", encode_component(instance_id));
        Self {
            id: instance_id.to_string(),
            status_query_get_uri: format!("{inst}?{query}"),
            send_event_post_uri: format!("{inst}/raiseEvent/{{eventName}}?{query}"),
            terminate_post_uri: format!("{inst}/terminate?reason={{text}}&{query}"),
            rewind_post_uri: format!("{inst}/rewind?reason={{text}}&{query}"),
            purge_history_delete_uri: format!("{inst}?{query}"),
            restart_post_uri: format!("{inst}/restart?{query}"),
            suspend_post_uri: format!("{inst}/suspend?reason={{text}}&{query}"),
            resume_post_uri: format!("{inst}/resume?reason={{text}}&{query}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_extensions_test_expectation() {
        let q = hub_query("SampleHubVS", "Storage", Some("mykey"));
        let urls = ManagementUrls::new(
            "http://localhost:7071/admin/extensions/DurableTaskExtension",
            &q,
            "7b59154ae666471993659902ed0ba742",
        );
        assert_eq!(
            urls.status_query_get_uri,
            "http://localhost:7071/admin/extensions/DurableTaskExtension/instances/7b59154ae666471993659902ed0ba742?taskHub=SampleHubVS&connection=Storage&code=mykey"
        );
        assert_eq!(
            urls.terminate_post_uri,
            "http://localhost:7071/admin/extensions/DurableTaskExtension/instances/7b59154ae666471993659902ed0ba742/terminate?reason={text}&taskHub=SampleHubVS&connection=Storage&code=mykey"
        );
        assert!(urls
            .send_event_post_uri
            .contains("/raiseEvent/{eventName}?taskHub="));
    }

    #[test]
    fn ids_and_values_are_escaped_with_percent_20() {
        let q = hub_query("My Hub", "Storage", Some("a+b/c="));
        assert_eq!(q, "taskHub=My%20Hub&connection=Storage&code=a%2Bb%2Fc%3D");
        let urls =
            ManagementUrls::new("http://h/runtime/webhooks/durabletask", &q, "id with space");
        assert!(urls
            .status_query_get_uri
            .starts_with("http://h/runtime/webhooks/durabletask/instances/id%20with%20space?"));
        assert_eq!(urls.id, "id with space");
    }

    #[test]
    fn no_code_means_no_code_parameter() {
        assert_eq!(hub_query("H", "C", None), "taskHub=H&connection=C");
    }
}
