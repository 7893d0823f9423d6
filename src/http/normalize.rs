//! Path normalisation before routing. The real API matches its literal segments
//! case-insensitively (`/Instances/`, `/Orchestrators/`) and trims `/` from both ends; axum's
//! router is exact. So literal segments are rewritten to their canonical spelling — only at the
//! positions where they are literals, never inside an instance id or a function name.

/// The two prefixes, canonical spelling first.
pub const V2_PREFIX: &str = "/runtime/webhooks/durabletask";
pub const V1_PREFIX: &str = "/admin/extensions/DurableTaskExtension";

const OPERATIONS: [&str; 6] = [
    "raiseEvent",
    "terminate",
    "rewind",
    "restart",
    "suspend",
    "resume",
];

/// The canonical form of `path`, or `None` when it is already canonical.
pub fn canonical_path(path: &str) -> Option<String> {
    let trimmed = path.trim_matches('/');
    let mut segs: Vec<String> = trimmed.split('/').map(str::to_string).collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let is = |i: usize, word: &str| lower.get(i).is_some_and(|s| s == word);

    let set = |segs: &mut Vec<String>, i: usize, word: &str| segs[i] = word.to_string();
    if is(0, "runtime") && is(1, "webhooks") && is(2, "durabletask") {
        set(&mut segs, 0, "runtime");
        set(&mut segs, 1, "webhooks");
        set(&mut segs, 2, "durabletask");
        management(&mut segs, &lower, 3);
    } else if is(0, "admin") && is(1, "extensions") && is(2, "durabletaskextension") {
        set(&mut segs, 0, "admin");
        set(&mut segs, 1, "extensions");
        set(&mut segs, 2, "DurableTaskExtension");
        management(&mut segs, &lower, 3);
    } else if is(0, "api") && is(1, "orchestrators") {
        set(&mut segs, 0, "api");
        user_route(&mut segs, &lower, 1);
    } else if is(0, "orchestrators") {
        user_route(&mut segs, &lower, 0);
    }
    let canonical = format!("/{}", segs.join("/"));
    (canonical != path).then_some(canonical)
}

/// `orchestrators/…` or `instances/{id}/{operation}/…` after a prefix.
fn management(segs: &mut [String], lower: &[String], at: usize) {
    match lower.get(at).map(String::as_str) {
        Some("orchestrators") => segs[at] = "orchestrators".into(),
        Some("instances") => {
            segs[at] = "instances".into();
            if let Some(op) = lower.get(at + 2) {
                if let Some(canon) = OPERATIONS.iter().find(|o| o.eq_ignore_ascii_case(op)) {
                    segs[at + 2] = canon.to_string();
                }
            }
        }
        _ => {}
    }
}

/// `orchestrators/{name}[/wait]`.
fn user_route(segs: &mut [String], lower: &[String], at: usize) {
    segs[at] = "orchestrators".into();
    if lower.len() == at + 3 && lower[at + 2] == "wait" {
        segs[at + 2] = "wait".into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_canonicalised_ids_untouched() {
        assert_eq!(
            canonical_path("/Runtime/Webhooks/DurableTask/Instances/ABC/Terminate").as_deref(),
            Some("/runtime/webhooks/durabletask/instances/ABC/terminate")
        );
        assert_eq!(
            canonical_path("/runtime/webhooks/durabletask/instances/Instances/RAISEEVENT/Approval")
                .as_deref(),
            Some("/runtime/webhooks/durabletask/instances/Instances/raiseEvent/Approval")
        );
        assert_eq!(
            canonical_path("/admin/extensions/durabletaskextension/Orchestrators/Hello").as_deref(),
            Some("/admin/extensions/DurableTaskExtension/orchestrators/Hello")
        );
        assert_eq!(
            canonical_path("/API/Orchestrators/Hello/WAIT").as_deref(),
            Some("/api/orchestrators/Hello/wait")
        );
        // An instance called "wait" under a name is left alone only where it is not literal.
        assert_eq!(
            canonical_path("/orchestrators/Wait/Wait/x").as_deref(),
            None
        );
    }

    #[test]
    fn trailing_slashes_are_trimmed_and_canonical_paths_unchanged() {
        assert_eq!(
            canonical_path("/runtime/webhooks/durabletask/instances/").as_deref(),
            Some("/runtime/webhooks/durabletask/instances")
        );
        assert_eq!(
            canonical_path("/runtime/webhooks/durabletask/instances"),
            None
        );
        assert_eq!(canonical_path("/api/orchestrators/Hello"), None);
        assert_eq!(canonical_path("/"), None);
    }
}
